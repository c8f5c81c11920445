"""What WebDAV keeps beside the tree, in the database so that every worker of every server sees
the same: locks (LOCK/UNLOCK) and dead properties (PROPPATCH). Plain functions over a
Session; the caller owns the transaction (``Drive.tx``). No HTTP and no WebDAV library here.

The id namespace. A lock is taken on a *root*, a string naming the locked node by its ids:
``"/.ids"``, then the ids of the node's ancestors, root first, then its own id, each after a
"/": ``"/.ids/1/5/9"`` is node 9 in folder 5 in the root folder 1. A node keeps its root
while it stays where it is, whoever reaches it (its owner, or someone it is shared with
through a folder above it), so a lock taken through a share holds for the owner too. Then

- the locks on the folders above a node are those whose root is a prefix of the node's root
  ending at a "/" (:func:`ancestor_roots`), found by equality on the root index;
- the locks below it are those whose root starts with its root and "/": one range of the
  root index (:func:`storage.tree.under`), with no ``LIKE``;
- the node a root names is its last id (:func:`node_of`), and the tree it lies in its first
  (whose row :func:`hold_tree` locks to serialise taking locks in that tree).

Expiry: ``expires_at`` NULL is a lock that never expires. A lock whose ``expires_at`` has
passed (by :func:`storage.clock.now`) is invisible to every read here, and is deleted by
:func:`get_lock` when asked for, by :func:`purge_expired_locks`, and by the next lock taken in
its tree.

Dead properties belong to a node id, not to a path: they follow the node through moves and
the trash, and are deleted with the node's row. Their values are the XML text the client sent.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .clock import now
from .errors import LimitExceeded
from .models import DavLock, DavProp, Node
from .models.nodes import PATH_MAX
from .tree import under

IDS = "/.ids"
_ROOT_RE = re.compile(r"/\.ids(/[0-9]+)+")
SCOPES = ("exclusive", "shared")
DEPTHS = ("0", "infinity")
# What one node's dead properties may hold: a name fits its column; a value fits a MySQL TEXT
# (the same bound on every engine); all of a node's values together stay small, so a client
# cannot make the server keep unbounded bytes that no quota counts.
MAX_PROP_NAME = 255
MAX_PROP_VALUE_BYTES = 65535
MAX_NODE_PROPS_BYTES = 1024 * 1024
PURGE_BATCH = 500  # expired locks deleted per statement


@dataclass(frozen=True)
class LockRecord:
    """A lock as stored: ``timeout`` is the lifetime granted in seconds (-1: infinite),
    ``expires_at`` when it ends (None: never); ``owner`` is the client's ``<owner>`` XML."""

    token: str
    root: str
    user_id: int | None
    principal: str
    scope: str
    kind: str
    depth: str
    timeout: int
    owner: str
    expires_at: dt.datetime | None


# ---- the id namespace -----------------------------------------------------------------------

def id_root(ancestor_ids: Sequence[int], node_id: int) -> str:
    """The root naming node ``node_id`` whose ancestors are ``ancestor_ids`` (root first)."""
    return IDS + "".join(f"/{i}" for i in (*ancestor_ids, node_id))


def root_ids(root: str) -> list[int]:
    """The ids in a root of the id namespace, tree root first (a trailing "/" is ignored);
    ValueError for anything else."""
    root = root.rstrip("/")
    if not _ROOT_RE.fullmatch(root):
        raise ValueError(f"not a root of the id namespace ({IDS}/<id>/...): {root!r}")
    return [int(part) for part in root[len(IDS) + 1:].split("/")]


def node_of(root: str) -> int:
    """The id of the node ``root`` names: its last id."""
    return root_ids(root)[-1]


def tree_root(root: str) -> str:
    """The root of the tree root folder ``root`` lies in: ``"/.ids/1/5/9"`` gives ``"/.ids/1"``."""
    return id_root([], root_ids(root)[0])


def normal_root(root: str) -> str:
    """``root`` with one leading "/" and no trailing one ("/" stays "/")."""
    return "/" + root.strip("/")


def ancestor_roots(root: str) -> list[str]:
    """Every root above ``root``, nearest first, ending with "/": ``"/.ids/1/5"`` gives
    ``["/.ids/1", "/.ids", "/"]``."""
    parts = normal_root(root).strip("/").split("/")
    return ["/" + "/".join(parts[:i]) for i in range(len(parts) - 1, 0, -1)] + (["/"] if parts != [""] else [])


# ---- locks ----------------------------------------------------------------------------------

def _record(row: DavLock) -> LockRecord:
    return LockRecord(row.token, row.root, row.user_id, row.principal, row.scope, row.kind, row.depth,
                      row.timeout, row.owner, row.expires_at)


def _live(t: dt.datetime):
    return sa.or_(DavLock.expires_at.is_(None), DavLock.expires_at >= t)


def expiry(timeout: int, t: dt.datetime | None = None) -> dt.datetime | None:
    """When a lock granted ``timeout`` seconds from ``t`` (default now) ends; None for -1."""
    return None if timeout < 0 else (t or now()) + dt.timedelta(seconds=timeout)


def create_lock(s: Session, *, token: str, root: str, user_id: int | None, principal: str, scope: str,
                depth: str, timeout: int, owner: str, expires_at: dt.datetime | None,
                kind: str = "write") -> LockRecord:
    """Store a new lock on ``root`` (a root of the id namespace). Conflicts are the caller's
    to rule out, in the same transaction, after :func:`hold_tree`."""
    root = normal_root(root)
    root_ids(root)
    if len(root) > PATH_MAX:
        raise ValueError(f"a lock root is at most {PATH_MAX} characters")
    if scope not in SCOPES or depth not in DEPTHS or kind != "write":
        raise ValueError(f"not a lock: scope {scope!r}, depth {depth!r}, type {kind!r}")
    row = DavLock(token=token, root=root, user_id=user_id, principal=principal, scope=scope, kind=kind,
                  depth=depth, timeout=int(timeout), owner=owner, expires_at=expires_at)
    s.add(row)
    s.flush()
    return _record(row)


def get_lock(s: Session, token: str) -> LockRecord | None:
    """The live lock ``token``; None if there is none. An expired one is deleted on the way."""
    row = s.get(DavLock, token)
    if row is None:
        return None
    if row.expires_at is not None and row.expires_at < now():
        s.execute(sa.delete(DavLock).where(DavLock.token == token, DavLock.expires_at < now())
                  .execution_options(synchronize_session=False))
        s.expunge(row)
        return None
    return _record(row)


def refresh_lock(s: Session, token: str, *, timeout: int, expires_at: dt.datetime | None) -> LockRecord | None:
    """Give the live lock ``token`` a new lifetime; None (and nothing changed) if it is gone."""
    done = s.execute(sa.update(DavLock).where(DavLock.token == token, _live(now()))
                     .values(timeout=int(timeout), expires_at=expires_at)
                     .execution_options(synchronize_session=False)).rowcount
    if not done:
        return None
    row = s.get(DavLock, token, populate_existing=True)
    return _record(row)


def delete_lock(s: Session, token: str) -> bool:
    """Delete the lock ``token``. True if it was live; an expired one goes too, but counts as
    not there."""
    row = s.execute(sa.select(DavLock.expires_at).where(DavLock.token == token)).first()
    if row is None:
        return False
    s.execute(sa.delete(DavLock).where(DavLock.token == token).execution_options(synchronize_session=False))
    return row.expires_at is None or row.expires_at >= now()


def locks_at(s: Session, root: str, *, on_root: bool = True, ancestors: bool = False,
             descendants: bool = False) -> list[LockRecord]:
    """The live locks on ``root`` itself, on the roots above it and/or on those below it (any
    depth), in one query; oldest roots first. ``root`` may be any path ("/" included)."""
    root = normal_root(root)
    exact = ([root] if on_root else []) + (ancestor_roots(root) if ancestors else [])
    where = []
    if exact:
        where.append(DavLock.root.in_(exact))
    if descendants:
        where.append(under(DavLock.root, root.rstrip("/") + "/"))
    if not where:
        return []
    rows = s.execute(sa.select(DavLock).where(sa.or_(*where), _live(now()))
                     .order_by(DavLock.root, DavLock.token)).scalars()
    return [_record(r) for r in rows]


def hold_tree(s: Session, root: str) -> None:
    """Serialise the taking of locks in the tree ``root`` lies in, until the transaction ends:
    locks that can conflict share their tree root (the first id of their roots), and this
    holds that node's row. A check for conflicts made after this and the new lock's insert
    are then one step for every other transaction that holds the same tree (on MySQL, a
    row lock; SQLite's BEGIN IMMEDIATE already serialises every writer)."""
    top = root_ids(root)[0]
    s.execute(sa.select(Node.id).where(Node.id == top).with_for_update()).first()


def purge_expired_locks(s: Session, *, within: str | None = None) -> int:
    """Delete locks that have expired, all of them or those at and below the root ``within``,
    in batches; returns how many."""
    t = now()
    cond = [DavLock.expires_at < t]
    if within is not None:
        within = normal_root(within)
        cond.append(sa.or_(DavLock.root == within, under(DavLock.root, within.rstrip("/") + "/")))
    total = 0
    while True:
        tokens = s.execute(sa.select(DavLock.token).where(*cond).limit(PURGE_BATCH)).scalars().all()
        if not tokens:
            return total
        s.execute(sa.delete(DavLock).where(DavLock.token.in_(tokens), DavLock.expires_at < t)
                  .execution_options(synchronize_session=False))
        total += len(tokens)


def delete_all_locks(s: Session) -> int:
    """Delete every lock (live or not); returns how many."""
    return s.execute(sa.delete(DavLock).execution_options(synchronize_session=False)).rowcount


# ---- dead properties ------------------------------------------------------------------------

def check_prop(name: str, value: str) -> None:
    """Refuse a property whose name or value is past what one property may hold."""
    if not name or len(name) > MAX_PROP_NAME:
        raise LimitExceeded(f"a property name is 1 to {MAX_PROP_NAME} characters", limit="prop_name",
                            max=MAX_PROP_NAME)
    if len(value.encode("utf-8")) > MAX_PROP_VALUE_BYTES:
        raise LimitExceeded(f"a property value is at most {MAX_PROP_VALUE_BYTES} bytes", limit="prop_value",
                            max=MAX_PROP_VALUE_BYTES)


def prop_names(s: Session, node_id: int) -> list[str]:
    """The names of node ``node_id``'s dead properties, sorted."""
    return list(s.execute(sa.select(DavProp.name).where(DavProp.node_id == node_id)
                          .order_by(DavProp.name)).scalars())


def nodes_with_props(s: Session, folder_id: int) -> set[int]:
    """Which of folder ``folder_id`` and its children have dead properties: one query for a
    whole listing, which then asks only about those (usually none)."""
    return set(s.execute(sa.select(DavProp.node_id).distinct().join(Node, Node.id == DavProp.node_id)
                         .where(sa.or_(Node.parent_id == folder_id, Node.id == folder_id))).scalars())


def get_prop(s: Session, node_id: int, name: str) -> str | None:
    """The value of property ``name`` of node ``node_id``; None if it has none."""
    return s.execute(sa.select(DavProp.value).where(DavProp.node_id == node_id, DavProp.name == name)).scalar()


def set_prop(s: Session, node_id: int, name: str, value: str) -> None:
    """Set property ``name`` of node ``node_id`` (a new one, or over the old value). Past the
    bounds of one property, or of all of one node's, is LimitExceeded (the node's others are
    measured as the engine measures text: characters on SQLite, bytes on MySQL)."""
    check_prop(name, value)
    others = s.execute(sa.select(sa.func.coalesce(sa.func.sum(sa.func.length(DavProp.value)), 0))
                       .where(DavProp.node_id == node_id, DavProp.name != name)).scalar_one()
    if int(others) + len(value) > MAX_NODE_PROPS_BYTES:
        raise LimitExceeded(f"the properties of one file or folder hold at most {MAX_NODE_PROPS_BYTES} bytes",
                            limit="node_props", max=MAX_NODE_PROPS_BYTES)
    done = s.execute(sa.update(DavProp).where(DavProp.node_id == node_id, DavProp.name == name)
                     .values(value=value).execution_options(synchronize_session=False)).rowcount
    if not done:
        # a concurrent insert of the same name fails this one on the key; Drive.tx runs it again
        s.execute(sa.insert(DavProp).values(node_id=node_id, name=name, value=value))


def remove_prop(s: Session, node_id: int, name: str) -> bool:
    """Remove property ``name`` of node ``node_id``; True if it had it."""
    return bool(s.execute(sa.delete(DavProp).where(DavProp.node_id == node_id, DavProp.name == name)
                          .execution_options(synchronize_session=False)).rowcount)


def remove_props(s: Session, node_id: int) -> int:
    """Remove every dead property of node ``node_id``; returns how many."""
    return s.execute(sa.delete(DavProp).where(DavProp.node_id == node_id)
                     .execution_options(synchronize_session=False)).rowcount


def copy_props(s: Session, src_id: int, dst_id: int) -> int:
    """Make node ``dst_id``'s dead properties a copy of ``src_id``'s (those ``dst_id`` had
    go); returns how many were copied."""
    if src_id == dst_id:
        return len(prop_names(s, src_id))
    remove_props(s, dst_id)
    return s.execute(sa.insert(DavProp).from_select(
        ["node_id", "name", "value"],
        sa.select(sa.literal(dst_id, sa.BigInteger), DavProp.name, DavProp.value).where(DavProp.node_id == src_id))
    ).rowcount
