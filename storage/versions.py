"""Committing a version: the one path by which a file gets new content.

Every door that makes a version (a PUT, the end of a resumable upload, a block-API commit, a
batch of commits, restoring or copying a version) ends here, inside the caller's transaction:

1. :func:`check_preconditions`: If-Match (the version id or content hash the caller last saw)
   and If-None-Match (the file must not exist yet), checked against what was read;
2. :func:`commit_version` charges the version to the folder's owner (:func:`storage.quota.settle`,
   giving back what the uploader's reservation held) and calls :func:`write_versions`, which
3. takes one ref per entry of each version's block list (:class:`Ref`), creates the nodes of
   new files, inserts the versions and their ``version_blocks`` rows, and moves each node to
   its new version only if it is still at the version that was read, so a concurrent writer
   fails loudly instead of losing an update.

A batch charges its owners itself (one guarded UPDATE per owner) and then writes all its
versions with :func:`write_versions`: one multi-row INSERT per table rather than a round trip
per file.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, NamedTuple, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from . import changes, quota
from .blockstore import BlockStore
from .clock import now
from .db import execute_core, get_row
from .errors import PreconditionFailed
from .models import FileVersion, Node, VersionBlock
from .tree import TreeLimits, live_columns, touch

if TYPE_CHECKING:
    from .drive import Drive


class Ref(NamedTuple):
    """A version's use of a block: the block's id (the SHA-256 of its raw bytes) and its raw
    size. A version's refs, in order, tile its content from byte 0."""

    block_id: bytes
    size: int


def placed(refs: Sequence[Ref]) -> Iterator[tuple[int, Ref, int]]:
    """``(seq, ref, offset)`` of each ref: where it lies in the version's content."""
    off = 0
    for seq, ref in enumerate(refs):
        yield seq, ref, off
        off += ref.size


def version_refs(s: Session, version: FileVersion) -> list[Ref]:
    """The refs of a stored version, in order. Each block's size is the distance to the next
    block's offset (the last one's, to the end of the version): the rows tile the content."""
    rows = s.execute(sa.select(VersionBlock.block_id, VersionBlock.offset)
                     .where(VersionBlock.version_id == version.id).order_by(VersionBlock.seq)).all()
    ends = [off for _, off in rows[1:]] + [version.size]
    return [Ref(bid, end - off) for (bid, off), end in zip(rows, ends)]


def check_preconditions(name: str, node: Node | None, current: FileVersion | None,
                        if_match: int | str | None, if_none_match: bool) -> None:
    """Refuse a write whose caller saw another state of ``name``: ``if_none_match`` wants no
    file there; ``if_match`` (a version id or a content sha256) wants ``current`` to be the
    version the caller last saw. ``current`` is ``node``'s current version, if any."""
    cur_id = current.id if current is not None else None
    cur_sha = current.sha256.hex() if current is not None else None
    if if_none_match and node is not None:
        raise PreconditionFailed(f"{name!r} already exists (version {cur_id or 'none'}, "
                                 f"sha256 {cur_sha or 'none'})", current=cur_id, current_sha256=cur_sha)
    if if_match is not None and (current is None or str(if_match) not in (str(cur_id), cur_sha)):
        raise PreconditionFailed(f"{name!r} has changed (now version {cur_id or 'none'}, expected {if_match})",
                                 current=cur_id, current_sha256=cur_sha, expected=if_match)


@dataclass(frozen=True)
class NewVersion:
    """One version to write: of ``node``, or of a new file ``name`` in folder ``parent``
    when ``node`` is None."""

    parent: Node | None
    node: Node | None
    name: str
    refs: Sequence[Ref]
    size: int
    sha256: bytes
    mtime: dt.datetime | None = None  # the file's modification time, as the client gave it

    @property
    def owner_id(self) -> int:
        return self.node.owner_id if self.node is not None else self.parent.owner_id


# Statements of every version written, built once: building one costs more than running it.
_INSERT_REFS = sa.insert(VersionBlock.__table__)
# A node moves to its new version only if it is still at the one read (``old``, or none).
_MOVE = sa.update(Node).values(current_version_id=sa.bindparam("vid"), updated_at=sa.bindparam("t"))
_MOVE_FRESH = _MOVE.where(Node.id == sa.bindparam("nid"), Node.current_version_id.is_(None))
_MOVE_KEPT = _MOVE.where(Node.id == sa.bindparam("nid"), Node.current_version_id == sa.bindparam("old"))


def commit_version(s: Session, drive: Drive, user_id: int, new: NewVersion, held: int = 0) -> tuple[Node, int]:
    """Charge ``new`` to its owner, releasing ``held`` pending bytes of ``user_id`` (the
    uploader's reservation turns into the version it promised), then write it. Returns the
    node (made for a new file) and the version's id."""
    quota.settle(s, new.owner_id, quota.version_charge(new.size, len(new.refs), drive.floor),
                 user_id, held, drive.floor)
    ((node_id, version_id),) = write_versions(s, drive.limits, user_id, [new])
    return (new.node if new.node is not None else get_row(s, Node, node_id)), version_id


def write_versions(s: Session, limits: TreeLimits, user_id: int,
                   versions: Sequence[NewVersion]) -> list[tuple[int, int]]:
    """Write ``versions`` (already charged) made by ``user_id``: refs, new nodes, versions,
    their block lists, and each node moved to its new version. Returns ``(node id, version
    id)`` of each, in order. Raises PreconditionFailed when a node changed since it was read
    and LimitExceeded past the owner's node or depth limits; either rolls back the whole."""
    if not versions:
        return []
    BlockStore.add_refs(s, Counter(r.block_id for v in versions for r in v.refs))
    t = now()
    node_id = {i: v.node.id for i, v in enumerate(versions) if v.node is not None}
    new = [(i, v) for i, v in enumerate(versions) if v.node is None]
    paths = new_node_paths(limits, s, [v.parent for _, v in new])
    node_id.update(zip((i for i, _ in new), insert_rows(s, Node, [
        dict(owner_id=v.parent.owner_id, parent_id=v.parent.id, kind="file", name=v.name, **live_columns(v.name),
             path=paths[v.parent.id], created_at=t, updated_at=t) for _, v in new], ("parent_id", "live_name"))))
    version_id = dict(enumerate(insert_rows(s, FileVersion, [
        dict(node_id=node_id[i], size=v.size, sha256=v.sha256, created_at=t, created_by=user_id,
             nblocks=len(v.refs), mtime=v.mtime) for i, v in enumerate(versions)], ("node_id",))))
    rows = [dict(version_id=version_id[i], seq=seq, block_id=ref.block_id, offset=off)
            for i, v in enumerate(versions) for seq, ref, off in placed(v.refs)]
    if rows:
        execute_core(s, _INSERT_REFS, rows)
    # Conditional on the version we read: a concurrent writer makes this fail loudly rather
    # than lose an update. One executemany per kind of guard where the driver counts rows
    # per statement.
    conn = s.connection()
    fresh = [{"nid": node_id[i], "vid": version_id[i]} for i, v in enumerate(versions)
             if v.node is None or v.node.current_version_id is None]
    kept = [{"nid": node_id[i], "vid": version_id[i], "old": v.node.current_version_id}
            for i, v in enumerate(versions) if v.node is not None and v.node.current_version_id is not None]
    for params, stmt in ((fresh, _MOVE_FRESH), (kept, _MOVE_KEPT)):
        if not params:
            continue
        for p in params:
            p["t"] = t
        groups = [params] if conn.dialect.supports_sane_multi_rowcount else [[p] for p in params]
        for g in groups:
            if conn.execute(stmt, g).rowcount != len(g):
                if len(versions) == 1:
                    raise PreconditionFailed(f"node {node_id[0]} changed while this version was written")
                raise PreconditionFailed("a file changed while this batch was written; retry")
    touch(s, [(v.node.path if v.node is not None else paths[v.parent.id], node_id[i])
              for i, v in enumerate(versions)])
    for i, v in enumerate(versions):
        if v.node is not None:  # what the guarded UPDATE wrote, without marking the row dirty
            set_committed_value(v.node, "current_version_id", version_id[i])
            set_committed_value(v.node, "updated_at", t)
    # the change feed: a new file is created with its first version, a file's next is a version
    made = [dict(version_id=version_id[i], size=v.size, sha256=v.sha256, mtime=v.mtime or t)
            for i, v in enumerate(versions)]
    changes.record(s, [changes.entry(changes.ChangeKind.VERSION, v.node, **made[i]) if v.node is not None else
                       changes.created(node_id[i], "file", v.parent, v.name, paths[v.parent.id], **made[i])
                       for i, v in enumerate(versions)])
    return [(node_id[i], version_id[i]) for i in range(len(versions))]


@functools.cache
def _insert_returning(model, key: tuple[str, ...]):
    """The INSERT ... RETURNING of :func:`insert_rows`, built once per table and key."""
    return sa.insert(model.__table__).returning(model.id, *(getattr(model, k) for k in key))


def new_node_paths(limits: TreeLimits, s: Session, parents: Sequence[Node]) -> dict[int, str]:
    """Count one new node per entry of ``parents`` against its owner's node limit, then the
    path of a new node in each parent (the checks :meth:`storage.tree.TreeLimits.new_node`
    makes, once per owner and per folder rather than per node)."""
    for owner_id, n in Counter(p.owner_id for p in parents).items():
        limits.reserve_nodes(s, owner_id, n)
    return {p.id: limits.child_path(s, p) for p in {p.id: p for p in parents}.values()}


def insert_rows(s: Session, model, rows: list[dict], key: tuple[str, ...]) -> list[int]:
    """Insert ``rows`` and return their ids in order: one multi-row INSERT ... RETURNING where
    the database has it (SQLite, MariaDB >= 10.5), ORM objects elsewhere. The returned ids
    are matched to the rows by ``key``, columns unique within ``rows``, rather than by
    position: asking the database for the order would cost one INSERT per row."""
    if not rows:
        return []
    if s.connection().dialect.insert_executemany_returning:
        got = {tuple(r[1:]): r[0] for r in s.execute(_insert_returning(model, key), rows)}
        return [got[tuple(r[k] for k in key)] for r in rows]
    objs = [model(**r) for r in rows]
    s.add_all(objs)
    s.flush()
    return [o.id for o in objs]
