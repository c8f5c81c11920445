"""The tree of nodes: materialised paths, node lookup with the caller's role, and the plain
record a node is handed out as.

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
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .errors import Forbidden, NotFound
from .models import FileVersion, Node, Share

ROOT_PATH = "/"
ROLES = {"viewer": 1, "editor": 2, "owner": 3}


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
    chain = ancestor_ids(s, node) + [node.id]
    best = None
    for (r,) in s.execute(sa.select(Share.role).where(Share.node_id.in_(chain), Share.grantee_id == user_id)):
        if best is None or ROLES[r] > ROLES[best]:
            best = r
    return best


def get_node(s: Session, user_id: int, node_id: int, need: str = "viewer",
             trashed: bool = False) -> tuple[Node, str]:
    """The node and the caller's role on it. What the caller may not see is NotFound (no
    existence oracle); what they see but may not change is Forbidden."""
    node = s.get(Node, node_id) if isinstance(node_id, int) else None
    if node is None or (node.deleted_at is not None) != trashed:
        raise NotFound(f"node {node_id} not found")
    r = role_of(s, user_id, node)
    if r is None or (trashed and r != "owner"):
        raise NotFound(f"node {node_id} not found")
    if ROLES[r] < ROLES[need]:
        raise Forbidden(f"{r} may not do this on node {node_id}")
    return node, r


def child(s: Session, parent_id: int, name: str) -> Node | None:
    """The live node named ``name`` in folder ``parent_id``, if any."""
    return s.execute(sa.select(Node).where(Node.parent_id == parent_id, Node.live_name == name)).scalar_one_or_none()


def node_info(s: Session, node: Node, role: str) -> NodeInfo:
    """``node`` as a :class:`NodeInfo` seen with ``role``."""
    v = s.get(FileVersion, node.current_version_id) if node.current_version_id else None
    return info_of(node, v, role)


def info_of(node: Node, v: FileVersion | None, role: str) -> NodeInfo:
    """``node`` with its current version ``v`` (already read) as a :class:`NodeInfo`."""
    return NodeInfo(node.id, node.kind, node.name, node.parent_id, node.owner_id,
                    v.size if v else (None if node.kind == "folder" else 0),
                    v.sha256.hex() if v else None, v.id if v else None,
                    node.created_at, node.updated_at, node.deleted_at, role)
