"""The tree of nodes: materialised paths, node lookup with the caller's role, the plain record
a node is handed out as, and the limits on a tree's shape (:class:`TreeLimits`: new nodes,
moves, the per-owner lock).

Every module that acts on a node finds it with :func:`get_node`, which is also the one
permission check: a node is visible to its owner and to whoever holds a share on it or on a
folder above it (the best such share counts).

Materialised paths: how a node's ancestors are written in ``nodes.path``.

A path lists the ids of a node's ancestors, root first, each followed by "/": "/" for a
root, "/1/5/" for a node whose parent is 5 whose parent is the root 1. So

- the ancestors of a node are read from its own row, without a query;
- its depth is the number of ids in the path (a root is at depth 0);
- its descendants are the rows whose path starts with ``path + id + "/"``: one range of the
  path index, written as two comparisons (``LIKE`` uses no index on SQLite's default
  collation). Paths hold only digits and "/", and "0" is the character right after "/", so
  the strings that start with a prefix ending in "/" are exactly those at or above the prefix
  and below the prefix with its last "/" replaced by "0".

Names in a folder (:func:`child`, :func:`check_name_free`, :func:`live_columns`): a live
name is looked up in its NFC form, and no two live names in one folder are equal under case
folding (``Report.txt`` and ``report.txt`` would be one file on Windows and macOS). The
check reads the ``live_fold`` index; its unique key refuses what a concurrent writer slips
past the check.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Iterable, Mapping

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .clock import now
from .db import execute_core, get_row
from .errors import Conflict, Forbidden, LimitExceeded, NotFound
from .models import FileVersion, Node, Share, User
from .models.nodes import PATH_MAX
from .names import fold_key, normal
from .states import Role

ROOT_PATH = "/"
ROLES = {role: role.rank for role in Role}  # a role's rank, by its name


@dataclass(frozen=True)
class NodeInfo:
    """A node as handed out of storage: its current version's size and hash, and the role
    of whoever asked."""

    id: int
    kind: str
    name: str
    parent_id: int | None
    owner_id: int
    size: int | None
    sha256: str | None
    version_id: int | None
    created_at: dt.datetime
    updated_at: dt.datetime
    deleted_at: dt.datetime | None
    role: str
    # a file's modification time as its uploader gave it (else when its version was made)
    mtime: dt.datetime | None = None
    # how many times this node or anything below it has changed (see Node.changes)
    changes: int = 0
    path: str | None = None  # the ids of its ancestors (see the module's docstring)

    @property
    def etag(self) -> str | None:
        return self.sha256


def ancestors(path: str) -> list[int]:
    """The ids in ``path``, root first."""
    return [int(part) for part in path.split("/") if part]


def path_of(ancestor_ids: list[int]) -> str:
    return ROOT_PATH + "".join(f"{i}/" for i in ancestor_ids)


def child_path(parent_path: str, parent_id: int) -> str:
    """The path of a node whose parent has id ``parent_id`` and path ``parent_path``."""
    return f"{parent_path}{parent_id}/"


def depth(path: str) -> int:
    return path.count("/") - 1


def under(column, prefix: str):
    """SQL: ``column`` starts with ``prefix`` (which ends in "/"), as an index range."""
    return sa.and_(column >= prefix, column < prefix[:-1] + "0")


def depth_sql(column):
    """SQL: the depth of the node whose path is ``column`` (ids = slashes - 1)."""
    return sa.func.length(column) - sa.func.length(sa.func.replace(column, "/", "")) - 1


# ---- nodes and roles ------------------------------------------------------------------------

def ancestor_ids(s: Session, node: Node) -> list[int]:
    """Ids of the folders above ``node``, root first. From its path; a row written without
    one (older code) is walked parent by parent, in a loop that stops at a cycle."""
    if node.path is not None:
        return ancestors(node.path)
    chain: list[int] = []
    cur = node
    while cur is not None and cur.parent_id is not None and cur.parent_id not in chain:
        chain.append(cur.parent_id)
        cur = s.get(Node, cur.parent_id)
    return chain[::-1]


def node_path(s: Session, node: Node) -> str:
    """``node``'s path, from its row or, for a row written without one, its ancestors."""
    return node.path if node.path is not None else path_of(ancestor_ids(s, node))


def role_of(s: Session, user_id: int, node: Node) -> str | None:
    """The caller's role on ``node``: owner, or the best share on the node or any folder
    above it, found in one query (the ancestors are read from the node's path)."""
    if node.owner_id == user_id:
        return "owner"
    return _best_share(s, user_id, ancestor_ids(s, node) + [node.id])


def _best_share(s: Session, user_id: int, node_ids: list[int]) -> str | None:
    """The best role the shares of ``node_ids`` give ``user_id``, None without one."""
    best = None
    for (r,) in s.execute(sa.select(Share.role).where(Share.node_id.in_(node_ids), Share.grantee_id == user_id)):
        if best is None or ROLES[r] > ROLES[best]:
            best = r
    return best


def check_may_remove(s: Session, user_id: int, node: Node) -> None:
    """Raise Forbidden unless ``user_id`` may delete, trash, move or rename ``node``: its
    owner may; an editor may only inside what was shared with them, never the shared node
    itself (that would take it away from its owner). They leave a share instead."""
    if node.owner_id == user_id:
        return
    above = _best_share(s, user_id, ancestor_ids(s, node))
    if above is None or ROLES[above] < ROLES[Role.EDITOR]:
        raise Forbidden(f"{node.name!r} is shared with you: only its owner may delete, move or rename it "
                        "(you may change what is inside it, or leave the share)")


def get_node(s: Session, user_id: int, node_id: int, need: str = "viewer",
             trashed: bool = False) -> tuple[Node, str]:
    """The node and the caller's role on it. What the caller may not see is NotFound (no
    existence oracle); what they see but may not change is Forbidden."""
    node = get_row(s, Node, node_id) if isinstance(node_id, int) else None
    if node is None or (node.deleted_at is not None) != trashed:
        raise NotFound(f"node {node_id} not found")
    r = role_of(s, user_id, node)
    if r is None or (trashed and r != "owner"):
        raise NotFound(f"node {node_id} not found")
    if ROLES[r] < ROLES[need]:
        raise Forbidden(f"{r} may not do this on node {node_id}")
    return node, r


# Statements of every write, built once: building one costs more than running it.
# The folder is named in each alternative, not once outside them: each is then a lookup on
# one of the folder's unique keys (SQLite's MULTI-INDEX OR, MySQL's index merge), where the
# factored form reads every child of the folder and a put into a big folder slows with it.
_LIVE_CHILD = sa.select(Node).where(sa.or_(
    sa.and_(Node.parent_id == sa.bindparam("pid"), Node.live_name == sa.bindparam("normal")),
    sa.and_(Node.parent_id == sa.bindparam("pid"), Node.live_name == sa.bindparam("name")),
    sa.and_(Node.parent_id == sa.bindparam("pid"), Node.live_fold == sa.bindparam("fold"))))
_LIVE_CHILDREN = sa.select(Node).where(sa.or_(
    sa.and_(Node.parent_id == sa.bindparam("pid"), Node.live_name.in_(sa.bindparam("names", expanding=True))),
    sa.and_(Node.parent_id == sa.bindparam("pid"), Node.live_fold.in_(sa.bindparam("folds", expanding=True)))))
_TOUCH = (sa.update(Node).where(Node.id.in_(sa.bindparam("ids", expanding=True))).values(changes=Node.changes + 1)
          .execution_options(synchronize_session=False))
_LOCK_OWNER = sa.select(User.id).where(User.id == sa.bindparam("uid")).with_for_update()
_NODE_PATH = sa.select(Node.path).where(Node.id == sa.bindparam("nid"))
_RESERVE = sa.update(User).where(User.id == sa.bindparam("uid")).values(node_count=User.node_count + sa.bindparam("n")) \
    .execution_options(synchronize_session=False)
_RESERVE_UNDER = _RESERVE.where(User.node_count + sa.bindparam("n") <= sa.bindparam("most"))


def child(s: Session, parent_id: int, name: str) -> Node | None:
    """The live node named ``name`` (in any Unicode normal form) in folder ``parent_id``, if any."""
    return s.execute(sa.select(Node).where(Node.parent_id == parent_id, Node.live_name == normal(name))
                     ).scalar_one_or_none()


def live_child(s: Session, parent_id: int, name: str) -> Node | None:
    """:func:`child` and, when there is none, :func:`check_name_free` in one query: the live
    node named ``name`` (NFC, validated) in folder ``parent_id``, or None when the name is
    free. Raises Conflict when another live name there equals it under case folding (or, for
    a name kept from before the case rule, without a fold, is the same name)."""
    n = normal(name)
    rows = s.execute(_LIVE_CHILD, {"pid": parent_id, "normal": n, "name": name, "fold": fold_key(name)}).scalars().all()
    return _live_or_free(name, n, rows)


def live_children(s: Session, parent_id: int, names: Iterable[str]) -> dict[str, Node | None]:
    """:func:`live_child` of each of ``names`` (distinct under case folding) in folder
    ``parent_id``, in one query for up to 500 names."""
    names = list(names)
    if len(names) == 1:
        return {names[0]: live_child(s, parent_id, names[0])}
    out: dict[str, Node | None] = {}
    for i in range(0, len(names), 500):
        part = names[i:i + 500]
        keys = {name: (normal(name), fold_key(name)) for name in part}
        rows = s.execute(_LIVE_CHILDREN, {"pid": parent_id, "names": sorted({w for name, (n, _) in keys.items() for w in (n, name)}),
                                          "folds": sorted({f for _, f in keys.values()})}).scalars().all()
        for name, (n, f) in keys.items():
            out[name] = _live_or_free(name, n, [r for r in rows if r.live_name in (n, name) or r.live_fold == f])
    return out


def _live_or_free(name: str, n: str, rows: list[Node]) -> Node | None:
    """Of the live nodes whose name is ``name``, its NFC form ``n`` or its fold, the one named
    ``n``; None for none; Conflict when only others are there."""
    for row in rows:
        if row.live_name == n:
            return row
    if rows:
        raise name_taken(name, rows[-1].name)
    return None


def live_columns(name: str) -> dict[str, str]:
    """The columns that make a node named ``name`` (NFC, validated) live in its folder."""
    return {"live_name": name, "live_fold": fold_key(name)}


def name_taken(name: str, other: str, where: str = "this folder") -> Conflict:
    """The Conflict for ``name`` (NFC) meeting the live name ``other`` in a folder."""
    if other == name:
        return Conflict(f"{name!r} already exists in {where}", clashes_with=other)
    return Conflict(f"{name!r} differs from {other!r}, already in {where}, only in case: one folder cannot "
                    "hold both (Windows and macOS would see one file)", clashes_with=other)


def clashes(s: Session, names: set[tuple[int, str]], node_id: int | None = None) -> dict[tuple[int, str], str]:
    """For each ``(folder id, name)`` (NFC) in ``names``, the live name already in that folder
    (other than node ``node_id``) that is ``name`` or equal to it under case folding, when
    there is one: a query per 500 folders and 500 names, not one per name. A name kept from
    before the case rule has no fold (see Node), so names are matched exactly as well."""
    by_fold: dict[tuple[int, str], list[str]] = {}
    for pid, name in names:
        by_fold.setdefault((pid, fold_key(name)), []).append(name)
    pids = sorted({pid for pid, _ in names})
    # (fold, name) pairs: each column is compared with values of its own (on MySQL an ASCII
    # column may not be compared with other characters)
    words = sorted({(fold_key(name), name) for _, name in names})
    out: dict[tuple[int, str], str] = {}
    for i in range(0, len(pids), 500):
        for j in range(0, len(words), 500):
            part = words[j:j + 500]
            # One select per key, as in _LIVE_CHILD: with (fold OR name) under the folders,
            # SQLite reads every child of each folder.
            by_key = [sa.select(Node.parent_id, Node.live_fold, Node.name).where(Node.parent_id.in_(pids[i:i + 500]), cond)
                      for cond in (Node.live_fold.in_([f for f, _ in part]), Node.live_name.in_([n for _, n in part]))]
            if node_id is not None:
                by_key = [q.where(Node.id != node_id) for q in by_key]
            for pid, fold, other in s.execute(sa.union_all(*by_key)):
                for mine in (other, *by_fold.get((pid, fold), ())):
                    if (pid, mine) in names:
                        out[(pid, mine)] = other
    return out


def check_name_free(s: Session, parent_id: int, name: str, node_id: int | None = None,
                    where: str = "this folder") -> None:
    """Raise Conflict when folder ``parent_id`` holds a live node other than ``node_id``
    named ``name`` (NFC) or a name equal to it under case folding. Renaming a node to
    another case of its own name passes (``node_id`` is that node)."""
    other = clashes(s, {(parent_id, name)}, node_id).get((parent_id, name))
    if other is not None:
        raise name_taken(name, other, where)


def node_info(s: Session, node: Node, role: str) -> NodeInfo:
    """``node`` as a :class:`NodeInfo` seen with ``role``."""
    v = get_row(s, FileVersion, node.current_version_id) if node.current_version_id else None
    return info_of(node, v, role)


def info_of(node: Node, v: FileVersion | None, role: str) -> NodeInfo:
    """``node`` with its current version ``v`` (already read) as a :class:`NodeInfo`."""
    return NodeInfo(node.id, node.kind, node.name, node.parent_id, node.owner_id,
                    v.size if v else (None if node.kind == "folder" else 0),
                    v.sha256.hex() if v else None, v.id if v else None,
                    node.created_at, node.updated_at, node.deleted_at, role,
                    (v.mtime or v.created_at) if v else node.updated_at, node.changes or 0, node.path)


def touch(s: Session, nodes: Iterable[tuple[str | None, int]]) -> None:
    """Count a change of each ``(path, id)`` node on it and on every folder above it: a
    folder's ``changes`` (its WebDAV etag) moves whenever anything below it changes, so a
    sync client finds what changed by walking down only the folders whose etag moved."""
    ids: set[int] = set()
    for path, nid in nodes:
        ids.update(ancestors(path or ROOT_PATH))
        ids.add(nid)
    ordered = sorted(ids)  # one lock order for every writer: ancestors of a tree, root first
    for i in range(0, len(ordered), 500):
        execute_core(s, _TOUCH, {"ids": ordered[i:i + 500]})


# ---- the shape of an owner's tree -----------------------------------------------------------

def lock_owner(s: Session, owner_id: int) -> None:
    """Serialise changes to the shape of one owner's tree: moves, restores and node creation
    all hold the owner's row until they commit, so a path read after this is the committed
    one and stays so (READ COMMITTED reads the latest commit per statement; SQLite's BEGIN
    IMMEDIATE serialises all writers anyway)."""
    execute_core(s, _LOCK_OWNER, {"uid": owner_id}).scalar_one()


class TreeLimits:
    """New nodes and moves within the configured limits (``limits.max_depth``,
    ``limits.max_nodes_per_user``, ``limits.max_nodes_per_copy``), read from the
    configuration at each check."""

    def __init__(self, config: Mapping):
        self.config = config

    def new_node(self, s: Session, parent: Node, kind: str, name: str, *, reserved: bool = False) -> Node:
        """A live node named ``name`` in folder ``parent``, owned by the folder's owner. It
        counts against the owner's node limit (unless the caller ``reserved`` it already,
        with :meth:`reserve_nodes`) and may not lie deeper than ``limits.max_depth``."""
        if not reserved:
            self.reserve_nodes(s, parent.owner_id, 1)
        node = self.node_row(parent, kind, name, self.child_path(s, parent))
        s.add(node)
        s.flush()
        touch(s, [(node.path, node.id)])
        return node

    def node_row(self, parent: Node, kind: str, name: str, path: str) -> Node:
        self.check_depth(depth(path), len(path))
        t = now()
        return Node(owner_id=parent.owner_id, parent_id=parent.id, kind=kind, name=name,
                    path=path, created_at=t, updated_at=t, **live_columns(name))

    def limit(self, key: str) -> int:
        return int(self.config["limits"][key])

    def check_depth(self, depth: int, longest_path: int = 0) -> None:
        """Refuse a tree that would reach ``depth`` levels below a root, or store a path
        longer than the column holds."""
        most = self.limit("max_depth")
        if depth > most:
            raise LimitExceeded(f"folders may nest at most {most} levels deep (limits.max_depth); "
                                f"this would make {depth}", limit="max_depth", max=most)
        if longest_path > PATH_MAX:
            raise LimitExceeded(f"this would nest folders deeper than their ids can be stored ({PATH_MAX} "
                                f"characters of path; limits.max_depth is {most})", limit="max_depth", max=most)

    def child_path(self, s: Session, parent: Node) -> str:
        """The path of a new node in folder ``parent``, checked against the depth limit. The
        parent's path is read afresh: a move committed since ``parent`` was loaded may have
        changed it (node creation holds the owner's row, see :meth:`reserve_nodes`, so no
        move runs between this read and the commit)."""
        ppath = execute_core(s, _NODE_PATH, {"nid": parent.id}).scalar_one()
        if ppath is None:
            ppath = path_of(ancestor_ids(s, parent))
        path = child_path(ppath, parent.id)
        self.check_depth(depth(path), len(path))
        return path

    def reserve_nodes(self, s: Session, owner_id: int, n: int) -> None:
        """Count ``n`` more nodes (fewer if negative) against ``owner_id``'s node limit, in
        one guarded UPDATE of their row. That row is also the lock every change to the
        shape of the owner's tree takes first (see :func:`lock_owner`)."""
        most = self.limit("max_nodes_per_user")
        stmt, params = (_RESERVE_UNDER, {"uid": owner_id, "n": n, "most": most}) if n > 0 else \
            (_RESERVE, {"uid": owner_id, "n": n})
        if execute_core(s, stmt, params).rowcount == 0 and n > 0:
            raise LimitExceeded(f"a user may own at most {most} files and folders, trash included "
                                f"(limits.max_nodes_per_user); this needs {n} more", limit="max_nodes_per_user",
                                max=most)

    def reparent(self, s: Session, node: Node, parent: Node) -> None:
        """Put ``node`` (and its subtree, live and trashed) under ``parent``: the depth is
        checked for the deepest node that moves, and every path below is rewritten in one
        UPDATE over the subtree's index range. The caller holds the owner's lock."""
        old = node_path(s, node)
        new = self.child_path(s, parent)
        old_prefix, new_prefix = child_path(old, node.id), child_path(new, node.id)
        deepest, longest = s.execute(sa.select(sa.func.max(depth_sql(Node.path)),
                                               sa.func.max(sa.func.length(Node.path)))
                                     .where(under(Node.path, old_prefix))).one()
        if deepest is not None:
            self.check_depth(int(deepest) - depth(old) + depth(new),
                             int(longest) - len(old_prefix) + len(new_prefix))
        if old != new:
            s.execute(sa.update(Node).where(under(Node.path, old_prefix))
                      .values(path=sa.literal(new_prefix) + sa.func.substr(Node.path, len(old_prefix) + 1))
                      .execution_options(synchronize_session=False))
        node.parent_id, node.path = parent.id, new
