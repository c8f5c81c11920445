"""GC of blocks and of what uploads leave behind: sessions expired, tails removed, blocks
marked and swept, each change guarded again in the statement that makes it.

- a block is marked only while ``refcount = 0``, no ref to it exists and no active upload
  session pins it; it is swept only with the same guard plus ``gc_marked_at < cutoff``;
- the sweep cutoff is ``now - grace``, moved back to the start of the oldest upload still in
  flight (its ``open`` pack), so a block an in-flight upload found as a dedup hit (and will
  take a ref on at commit) is never swept under it, whatever the grace period.

``honour_pins`` and ``honour_inflight`` exist so the safety tests can switch one protection
off and show that the loss is then detected (a negative control); nothing else turns them off.
"""

from __future__ import annotations

import datetime as dt
import json
from collections import Counter
from dataclasses import dataclass, field
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import pack as packfmt
from . import quota
from .batching import BATCH, batches
from .errors import BlockdriveError
from .models import Block, Pack, UploadChunk, UploadPin, UploadSession, VersionBlock
from .packlife import refresh_live_bytes
from .packstore import PackStore
from .states import PackState, UploadState


@dataclass(frozen=True)
class Safety:
    """Protections a negative-control test may switch off. Production never does."""

    honour_pins: bool = True
    honour_inflight: bool = True


SAFE = Safety()


# ---- guards ----------------------------------------------------------------------------------

def _pinned(safety: Safety):
    if not safety.honour_pins:
        return sa.false()
    return sa.exists().where(UploadPin.block_id == Block.id, UploadPin.session_id == UploadSession.id,
                             UploadSession.state == UploadState.ACTIVE)


def _referenced():
    return sa.exists().where(VersionBlock.block_id == Block.id)


def _dead_guard(safety: Safety):
    """A block no one can be using: no refcount, no ref row, no active pin."""
    return sa.and_(Block.refcount == 0, sa.not_(_referenced()), sa.not_(_pinned(safety)))


# ---- GC: sessions, mark, sweep ---------------------------------------------------------------

def expire_upload_sessions(sm: sessionmaker[Session], at: dt.datetime) -> dict:
    """Sessions past ``expires_at`` end, giving back the pending bytes they held; the pins of
    every ended session are released."""
    expired = 0
    while True:
        with sm() as s, s.begin():
            rows = s.execute(sa.select(UploadSession.id, UploadSession.user_id, UploadSession.reserved_bytes)
                             .where(UploadSession.state == UploadState.ACTIVE, UploadSession.expires_at < at)
                             .limit(BATCH).with_for_update()).all()
            if not rows:
                break
            # Guarded again on the state: a session finished meanwhile keeps its own accounting.
            s.execute(sa.update(UploadSession).where(UploadSession.id.in_([r.id for r in rows]),
                                                     UploadSession.state == UploadState.ACTIVE)
                      .values(state=UploadState.EXPIRED, reserved_bytes=0).execution_options(synchronize_session=False))
            held: Counter = Counter()
            for r in rows:
                held[r.user_id] += r.reserved_bytes or 0
            for uid, n in held.items():
                quota.release(s, uid, n)
            expired += len(rows)
    released = 0
    while True:
        with sm() as s, s.begin():
            rows = s.execute(sa.select(UploadPin.session_id, UploadPin.block_id)
                             .join(UploadSession, UploadSession.id == UploadPin.session_id)
                             .where(UploadSession.state != UploadState.ACTIVE).limit(BATCH)).all()
            if not rows:
                break
            for sid, block_id in rows:
                s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid, UploadPin.block_id == block_id))
            released += len(rows)
    with sm() as s, s.begin():
        # The block list of an ended session is read by nothing (finish deletes its own).
        ended = sa.select(UploadSession.id).where(UploadSession.state != UploadState.ACTIVE)
        dropped = s.execute(sa.delete(UploadChunk).where(UploadChunk.session_id.in_(ended))
                            .execution_options(synchronize_session=False)).rowcount
    return {"sessions_expired": expired, "pins_released": released, "chunk_rows_dropped": dropped}


def remove_stale_tails(sm: sessionmaker[Session], store: PackStore) -> int:
    """Delete the tus tails (``uploads/<session>/<end>.tail``) no append will read: those of
    ended or vanished sessions, and those of an active session that end at or before its
    offset and are not its current tail (left when an append died after moving the offset,
    or by an append resent after a crash). A tail ending after the offset may be an append
    in flight and stays until its session ends. Keys are listed before sessions are read,
    and a tail is written only after its session row exists."""
    keys = [k for k, _ in store.hot.list("uploads")]
    if not keys:
        return 0
    with sm() as s:
        sessions = {r.id: r for r in s.execute(sa.select(UploadSession.id, UploadSession.state,
                                                         UploadSession.offset, UploadSession.meta))}
    n = 0
    for key in keys:
        parts = key.split("/")
        if len(parts) != 3 or not parts[2].endswith(".tail"):
            continue
        us = sessions.get(parts[1])
        try:
            end = int(parts[2].removesuffix(".tail"))
        except ValueError:
            continue
        if us is None or us.state != UploadState.ACTIVE or (
                end <= us.offset and key != json.loads(us.meta or "{}").get("tail")):
            try:
                store.hot.delete(key)
                n += 1
            except BlockdriveError:  # retried by the next run
                pass
    return n


def mark_blocks(sm: sessionmaker[Session], block_ids: Iterable[bytes], at: dt.datetime,
                safety: Safety = SAFE) -> int:
    """Mark candidate blocks for GC; each is re-checked by the guard in the UPDATE itself."""
    n = 0
    for part in batches(list(block_ids)):
        with sm() as s, s.begin():
            n += s.execute(sa.update(Block).where(Block.id.in_(part), Block.gc_marked_at.is_(None),
                                                  _dead_guard(safety))
                           .values(gc_marked_at=at).execution_options(synchronize_session=False)).rowcount
    return n


def sweep_cutoff(sm: sessionmaker[Session], at: dt.datetime, grace_seconds: float,
                 open_grace_seconds: float, safety: Safety = SAFE) -> dt.datetime:
    """Blocks marked before this may be swept: ``at - grace``, but never later than the start
    of an upload still in flight (an ``open`` pack younger than the open-pack grace): that
    upload may have found a block as a dedup hit before it was marked."""
    cutoff = at - dt.timedelta(seconds=grace_seconds)
    if safety.honour_inflight:
        with sm() as s:
            oldest = s.execute(sa.select(sa.func.min(Pack.created_at)).where(
                Pack.state == PackState.OPEN, Pack.created_at >= at - dt.timedelta(seconds=open_grace_seconds))).scalar()
        if oldest is not None and oldest < cutoff:
            cutoff = oldest
    return cutoff


@dataclass
class SweepResult:
    blocks: int = 0
    bytes: int = 0
    packs: set = field(default_factory=set)


def sweep_blocks(sm: sessionmaker[Session], block_ids: Iterable[bytes], cutoff: dt.datetime,
                 safety: Safety = SAFE) -> SweepResult:
    """Delete marked blocks past the cutoff: one guarded DELETE per batch of candidates
    (``refcount = 0 AND gc_marked_at < cutoff`` and no ref, no pin), so a block revived
    since the plan (a dedup hit took a ref, clearing its mark) stays."""
    out = SweepResult()
    for part in batches(list(block_ids)):
        with sm() as s, s.begin():
            before = {r.id: (r.pack_id, r.stored_size) for r in s.execute(
                sa.select(Block.id, Block.pack_id, Block.stored_size).where(Block.id.in_(part)))}
            s.execute(sa.delete(Block).where(Block.id.in_(part), Block.gc_marked_at < cutoff,
                                             _dead_guard(safety))
                      .execution_options(synchronize_session=False))
            left = {r[0] for r in s.execute(sa.select(Block.id).where(Block.id.in_(list(before))))}
            gone = [block_id for block_id in before if block_id not in left]
            for block_id in gone:
                pack_id, stored = before[block_id]
                out.bytes += packfmt.RECORD_HEADER + stored
                out.packs.add(pack_id)
            out.blocks += len(gone)
            refresh_live_bytes(s, {before[b][0] for b in gone})
    return out
