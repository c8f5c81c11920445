"""Repairs made from a job's plan: counters recounted under their row's lock (refcounts,
used and pending bytes, node counts), and refs moved to another copy of the same content
(a version to its identical twin's blocks, a block to another stored copy of it). Each step
re-checks, inside its own transaction, what the plan saw on a possibly stale snapshot."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import quota
from .batching import batches
from .blockindex import add_refs, drop_refs
from .clock import now
from .models import Block, FileVersion, Node, Pack, User, VersionBlock
from .packlife import refresh_live_bytes, retire_empty_packs
from .states import PackState


@dataclass(frozen=True)
class Repair:
    kind: str  # refcount | usage | node_count
    key: str
    old: int
    new: int


def repair_refcounts(sm: sessionmaker[Session], block_ids: Iterable[bytes]) -> list[Repair]:
    """Set each candidate's refcount to its count of refs, recounted under the row's lock
    (the plan's snapshot may be stale). A decrease to zero leaves the block to GC's mark and
    sweep, with its grace period; nothing is deleted here."""
    out = []
    for part in batches(list(block_ids), 100):
        with sm() as s, s.begin():
            for block_id in part:
                row = s.execute(sa.select(Block.refcount).where(Block.id == block_id).with_for_update()).first()
                if row is None:
                    continue
                counted = s.execute(sa.select(sa.func.count()).select_from(VersionBlock)
                                    .where(VersionBlock.block_id == block_id)).scalar_one()
                if counted != row.refcount:
                    values = {"refcount": counted}
                    if counted > 0:
                        values["gc_marked_at"] = None
                    s.execute(sa.update(Block).where(Block.id == block_id).values(**values)
                              .execution_options(synchronize_session=False))
                    out.append(Repair("refcount", block_id.hex(), row.refcount, counted))
    return out


def repair_usage(sm: sessionmaker[Session], user_ids: Iterable[int],
                 floor: int = quota.BLOCK_FLOOR) -> list[Repair]:
    """Set each candidate's used_bytes (every version their files keep) and pending_bytes
    (what their active upload sessions hold), recounted under the user's row lock."""
    out = []
    for part in batches(list(user_ids), 100):
        with sm() as s, s.begin():
            for uid in part:
                row = s.execute(sa.select(User.used_bytes, User.pending_bytes, User.email)
                                .where(User.id == uid).with_for_update()).first()
                if row is None:
                    continue
                used, pending = quota.counted_usage(s, uid, floor)
                if (used, pending) != (row.used_bytes, row.pending_bytes):
                    s.execute(sa.update(User).where(User.id == uid).values(used_bytes=used, pending_bytes=pending)
                              .execution_options(synchronize_session=False))
                if used != row.used_bytes:
                    out.append(Repair("usage", row.email, row.used_bytes, used))
                if pending != row.pending_bytes:
                    out.append(Repair("pending", row.email, row.pending_bytes, pending))
    return out


def node_count_drift(sm: sessionmaker[Session]) -> list[int]:
    """Users whose ``node_count`` differs from the nodes they own below their root."""
    with sm() as s:
        owned = dict(s.execute(sa.select(Node.owner_id, sa.func.count()).where(Node.parent_id.is_not(None))
                               .group_by(Node.owner_id)).all())
        return [uid for uid, recorded in s.execute(sa.select(User.id, User.node_count))
                if recorded != int(owned.get(uid) or 0)]


def repair_node_counts(sm: sessionmaker[Session], user_ids: Iterable[int]) -> list[Repair]:
    """Set each user's ``node_count`` to their nodes, recounted under their row's lock (the
    lock node creation takes too, so no node is made between the count and the write)."""
    out = []
    for part in batches(list(user_ids), 100):
        with sm() as s, s.begin():
            for uid in part:
                row = s.execute(sa.select(User.node_count, User.email).where(User.id == uid).with_for_update()).first()
                if row is None:
                    continue
                counted = s.execute(sa.select(sa.func.count()).select_from(Node)
                                    .where(Node.owner_id == uid, Node.parent_id.is_not(None))).scalar_one()
                if counted != row.node_count:
                    s.execute(sa.update(User).where(User.id == uid).values(node_count=counted)
                              .execution_options(synchronize_session=False))
                    out.append(Repair("node_count", row.email, row.node_count, counted))
    return out


def merge_version_refs(sm: sessionmaker[Session], version_id: int, canonical_id: int) -> int:
    """Make ``version_id`` use the blocks of ``canonical_id`` (the same content: equal size
    and SHA-256), in one transaction; its old blocks lose a ref each and go to GC. Returns
    the refs changed (0 if either version changed or vanished meanwhile)."""
    with sm() as s, s.begin():
        a = s.get(FileVersion, version_id, with_for_update=True)
        c = s.get(FileVersion, canonical_id)
        if a is None or c is None or a.size != c.size or a.sha256 != c.sha256 or a.id == c.id:
            return 0
        old = [r.block_id for r in s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == a.id))]
        new = s.execute(sa.select(VersionBlock.seq, VersionBlock.block_id, VersionBlock.offset)
                        .where(VersionBlock.version_id == c.id).order_by(VersionBlock.seq)).all()
        if Counter(old) == Counter(b for _, b, _ in new):
            return 0
        add_refs(s, Counter(b for _, b, _ in new))
        s.execute(sa.delete(VersionBlock).where(VersionBlock.version_id == a.id))
        if new:
            s.execute(sa.insert(VersionBlock), [dict(version_id=a.id, seq=q, block_id=b, offset=o) for q, b, o in new])
        drop_refs(s, Counter(old))
        return len(new)


@dataclass(frozen=True)
class Repoint:
    """Point block ``block_id`` at another stored copy of it (same SHA-256, checked)."""

    block_id: bytes
    from_pack: str
    from_offset: int
    to_pack: str
    to_offset: int
    codec: int
    stored_size: int


def repoint_blocks(sm: sessionmaker[Session], repoints: Sequence[Repoint], at: dt.datetime | None = None) -> dict:
    """Make each block's row name another copy of it, in transactions of ``BATCH`` blocks.
    A row moves only if it still names the copy the plan saw and the new copy's pack is
    still sealed; packs left with no block start retiring (their files go after the grace
    period, like compaction's). Returns the blocks moved and the packs retired."""
    at = at or now()
    stmt = (sa.update(Block).where(Block.id == sa.bindparam("block_id"), Block.pack_id == sa.bindparam("old"),
                                   Block.offset_in_pack == sa.bindparam("old_off"),
                                   sa.exists().where(Pack.id == sa.bindparam("new"), Pack.state == PackState.SEALED))
            .values(pack_id=sa.bindparam("new"), offset_in_pack=sa.bindparam("off"),
                    codec=sa.bindparam("codec"), stored_size=sa.bindparam("stored"))
            .execution_options(synchronize_session=False))
    moved = retired = 0
    for part in batches(list(repoints)):
        with sm() as s, s.begin():
            moved += s.connection().execute(stmt, [
                {"block_id": r.block_id, "old": r.from_pack, "old_off": r.from_offset, "new": r.to_pack,
                 "off": r.to_offset, "codec": r.codec, "stored": r.stored_size} for r in part]).rowcount
            touched = {r.from_pack for r in part} | {r.to_pack for r in part}
            refresh_live_bytes(s, touched)
            retired += retire_empty_packs(s, {r.from_pack for r in part}, at)
    return {"moved": moved, "retired": retired}
