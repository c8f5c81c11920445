"""The storage side of the maintenance jobs: every change a job makes goes through here.

The jobs (``jobs/``) decide *what* to do from a snapshot of the metadata; the functions here
*do* it, each in small transactions, and each re-checks its guard inside the statement that
changes the row, so a decision made on a stale snapshot can never remove anything live:

- a block is marked only while ``refcount = 0``, no ref to it exists and no active upload
  session pins it; it is swept only with the same guard plus ``gc_marked_at < cutoff``;
- the sweep cutoff is ``now - grace``, moved back to the start of the oldest upload still in
  flight (its ``open`` pack), so a block an in-flight upload found as a dedup hit (and will
  take a ref on at commit) is never swept under it, whatever the grace period;
- a pack moves ``open|sealed -> retiring -> deleted``; its file is deleted only after its row
  says ``deleted``, which happens only when no block row points to it and it has been
  retiring for the grace period ("a pack must leave the index before it is deleted").

``honour_pins`` and ``honour_inflight`` exist so the safety tests can switch one protection
off and show that the loss is then detected (a negative control); nothing else turns them off.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from . import crashpoints, quota
from . import pack as packfmt
from .blockstore import BlockStore, tier_of
from .clock import now
from .errors import BlockdriveError, IntegrityError, NotFound
from .models import (Block, FileVersion, Lock, Node, Pack, UploadChunk, UploadPin, UploadSession, User,
                     VersionBlock)

BATCH = 500  # rows per bounded transaction


@dataclass(frozen=True)
class Safety:
    """Protections a negative-control test may switch off. Production never does."""

    honour_pins: bool = True
    honour_inflight: bool = True


SAFE = Safety()


def _batches(items: Sequence, n: int = BATCH):
    for i in range(0, len(items), n):
        yield items[i:i + n]


# ---- leases (the scheduler's leadership, one run of a job at a time) -------------------------

def acquire_lease(sm: sessionmaker[Session], name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until now + ttl. True if held."""
    t = now()
    until = t + dt.timedelta(seconds=ttl_seconds)
    with sm() as s, s.begin():
        res = s.execute(sa.update(Lock).where(Lock.name == name,
                                              sa.or_(Lock.holder == holder, Lock.expires_at < t))
                        .values(holder=holder, expires_at=until).execution_options(synchronize_session=False))
        if res.rowcount == 1:
            return True
    try:
        with sm() as s, s.begin():
            s.execute(sa.insert(Lock).values(name=name, holder=holder, expires_at=until))
        return True
    except DBIntegrityError:  # someone else holds it (or took it between our two statements)
        return False


def release_lease(sm: sessionmaker[Session], name: str, holder: str) -> None:
    with sm() as s, s.begin():
        s.execute(sa.delete(Lock).where(Lock.name == name, Lock.holder == holder))


def lease_holder(sm: sessionmaker[Session], name: str) -> str | None:
    with sm() as s:
        row = s.execute(sa.select(Lock.holder, Lock.expires_at).where(Lock.name == name)).first()
    return row.holder if row is not None and row.expires_at >= now() else None


# ---- guards ----------------------------------------------------------------------------------

def _pinned(safety: Safety):
    if not safety.honour_pins:
        return sa.false()
    return sa.exists().where(UploadPin.block_id == Block.id, UploadPin.session_id == UploadSession.id,
                             UploadSession.state == "active")


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
                             .where(UploadSession.state == "active", UploadSession.expires_at < at)
                             .limit(BATCH).with_for_update()).all()
            if not rows:
                break
            # Guarded again on the state: a session finished meanwhile keeps its own accounting.
            s.execute(sa.update(UploadSession).where(UploadSession.id.in_([r.id for r in rows]),
                                                     UploadSession.state == "active")
                      .values(state="expired", reserved_bytes=0).execution_options(synchronize_session=False))
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
                             .where(UploadSession.state != "active").limit(BATCH)).all()
            if not rows:
                break
            for sid, bid in rows:
                s.execute(sa.delete(UploadPin).where(UploadPin.session_id == sid, UploadPin.block_id == bid))
            released += len(rows)
    with sm() as s, s.begin():
        # The block list of an ended session is read by nothing (finish deletes its own).
        ended = sa.select(UploadSession.id).where(UploadSession.state != "active")
        dropped = s.execute(sa.delete(UploadChunk).where(UploadChunk.session_id.in_(ended))
                            .execution_options(synchronize_session=False)).rowcount
    return {"sessions_expired": expired, "pins_released": released, "chunk_rows_dropped": dropped}


def remove_stale_tails(sm: sessionmaker[Session], store: BlockStore) -> int:
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
        if us is None or us.state != "active" or (
                end <= us.offset and key != json.loads(us.meta or "{}").get("tail")):
            try:
                store.hot.delete(key)
                n += 1
            except BlockdriveError:  # retried by the next run
                pass
    return n


def mark_blocks(sm: sessionmaker[Session], ids: Iterable[bytes], at: dt.datetime,
                safety: Safety = SAFE) -> int:
    """Mark candidate blocks for GC; each is re-checked by the guard in the UPDATE itself."""
    n = 0
    for part in _batches(list(ids)):
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
                Pack.state == "open", Pack.created_at >= at - dt.timedelta(seconds=open_grace_seconds))).scalar()
        if oldest is not None and oldest < cutoff:
            cutoff = oldest
    return cutoff


@dataclass
class SweepResult:
    blocks: int = 0
    bytes: int = 0
    packs: set = field(default_factory=set)


def sweep_blocks(sm: sessionmaker[Session], ids: Iterable[bytes], cutoff: dt.datetime,
                 safety: Safety = SAFE) -> SweepResult:
    """Delete marked blocks past the cutoff: one guarded DELETE per batch of candidates
    (``refcount = 0 AND gc_marked_at < cutoff`` and no ref, no pin), so a block revived
    since the plan (a dedup hit took a ref, clearing its mark) stays."""
    out = SweepResult()
    for part in _batches(list(ids)):
        with sm() as s, s.begin():
            before = {r.id: (r.pack_id, r.stored_size) for r in s.execute(
                sa.select(Block.id, Block.pack_id, Block.stored_size).where(Block.id.in_(part)))}
            s.execute(sa.delete(Block).where(Block.id.in_(part), Block.gc_marked_at < cutoff,
                                             _dead_guard(safety))
                      .execution_options(synchronize_session=False))
            left = {r[0] for r in s.execute(sa.select(Block.id).where(Block.id.in_(list(before))))}
            gone = [bid for bid in before if bid not in left]
            for bid in gone:
                pack_id, stored = before[bid]
                out.bytes += packfmt.RECORD_HEADER + stored
                out.packs.add(pack_id)
            out.blocks += len(gone)
            refresh_live_bytes(s, {before[b][0] for b in gone})
    return out


def refresh_live_bytes(s: Session, pack_ids: Iterable[str]) -> None:
    live = (sa.select(sa.func.coalesce(sa.func.sum(Block.stored_size + packfmt.RECORD_HEADER), 0))
            .where(Block.pack_id == Pack.id).scalar_subquery())
    for part in _batches(sorted(pack_ids)):
        s.execute(sa.update(Pack).where(Pack.id.in_(part)).values(live_bytes=live)
                  .execution_options(synchronize_session=False))


# ---- packs: register, seal, switch, retire, delete -------------------------------------------

def new_pack_id() -> str:
    return uuid.uuid4().hex


def register_pack(sm: sessionmaker[Session], pack_id: str, url: str) -> None:
    """An ``open`` row before any byte is written: a crash leaves a pack GC can find."""
    with sm() as s, s.begin():
        s.add(Pack(id=pack_id, url=url, tier=tier_of(url), state="open", created_at=now()))


@dataclass(frozen=True)
class Move:
    block_id: bytes
    from_pack: str
    offset: int  # of the record in the new pack


def switch_blocks(sm: sessionmaker[Session], new_pack: str, size: int, checksum: str,
                  moves: Sequence[Move], at: dt.datetime | None = None) -> dict:
    """In one transaction: seal ``new_pack`` (it must still be ``open``: GC may have given it
    up), point each moved block at it (only if the block still lives where the plan saw it),
    and retire every source pack no block points to any more."""
    at = at or now()
    with sm() as s, s.begin():
        sealed = s.execute(sa.update(Pack).where(Pack.id == new_pack, Pack.state == "open")
                           .values(state="sealed", size=size, checksum=checksum, sealed_at=at)
                           .execution_options(synchronize_session=False)).rowcount
        if sealed != 1:
            raise IntegrityError(f"pack {new_pack} is no longer open; not switching to it", pack=new_pack)
        stmt = (sa.update(Block).where(Block.id == sa.bindparam("bid"), Block.pack_id == sa.bindparam("old"))
                .values(pack_id=new_pack, offset_in_pack=sa.bindparam("off"))
                .execution_options(synchronize_session=False))
        moved = 0
        for part in _batches(list(moves), 1000):
            moved += s.connection().execute(stmt, [{"bid": m.block_id, "old": m.from_pack, "off": m.offset}
                                                   for m in part]).rowcount
        refresh_live_bytes(s, {new_pack} | {m.from_pack for m in moves})
        retired = retire_empty_packs(s, {m.from_pack for m in moves}, at)
    return {"moved": moved, "retired": retired}


def retire_empty_packs(s: Session, pack_ids: Iterable[str], at: dt.datetime) -> int:
    no_blocks = sa.not_(sa.exists().where(Block.pack_id == Pack.id))
    n = 0
    for part in _batches(sorted(pack_ids)):
        n += s.execute(sa.update(Pack).where(Pack.id.in_(part), Pack.state == "sealed", no_blocks)
                       .values(state="retiring", retired_at=at)
                       .execution_options(synchronize_session=False)).rowcount
    return n


def retire_packs(sm: sessionmaker[Session], pack_ids: Iterable[str], at: dt.datetime | None = None) -> int:
    """Retire sealed packs that hold no block any more (all their records are dead)."""
    with sm() as s, s.begin():
        return retire_empty_packs(s, pack_ids, at or now())


def abandon_open_packs(sm: sessionmaker[Session], store: BlockStore, before: dt.datetime) -> list[str]:
    """Open packs created before ``before`` belong to uploads that crashed or gave up: retire
    them (with the size their file has now), or, if no file was ever written, mark them
    deleted. The guard ``state = 'open'`` here and in the seal at commit means a late commit
    fails (and its upload is retried) instead of sealing a pack we delete.

    An open pack that blocks point to is a shared pack whose process died (storage/sharedpack.py):
    it is never retired but recovered (:func:`recover_open_pack`)."""
    with sm() as s:
        rows = s.execute(sa.select(Pack.id, Pack.url).where(Pack.state == "open", Pack.created_at < before)).all()
    no_blocks = sa.not_(sa.exists().where(Block.pack_id == Pack.id))
    out = []
    for pack_id, url in rows:
        with sm() as s:
            pointed = s.execute(sa.select(sa.exists().where(Block.pack_id == pack_id))).scalar()
        if pointed:
            if recover_open_pack(sm, store, pack_id, url):
                out.append(pack_id)
            continue
        backend, key = store.backend_for(url)
        try:
            size, values = backend.size(key), {"state": "retiring", "retired_at": now()}
        except NotFound:
            size, values = 0, {"state": "deleted"}
        if size == 0:
            # An empty file (the upload died before its first bytes reached the disk): a
            # deleted row with size 0 reads as "file already gone" to delete_retired_packs,
            # so remove the file here, after the row has left the open state.
            values = {"state": "deleted"}
        with sm() as s, s.begin():
            done = s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == "open", no_blocks)
                             .values(size=size, live_bytes=0, **values)
                             .execution_options(synchronize_session=False)).rowcount
        if done:
            out.append(pack_id)
            if size == 0:
                backend.delete(key)  # idempotent; no block ever pointed into it
    return out


def recover_open_pack(sm: sessionmaker[Session], store: BlockStore, pack_id: str, url: str) -> bool:
    """Give a shared pack left open by a dead process (records that blocks point to, no footer)
    the shape of any other: its row is sealed with the size and checksum of the file as it
    is, then the records blocks point to are copied into a new pack with a footer, the blocks
    switched to it, and the old pack retired by the switch (its file deleted after the grace
    by :func:`delete_retired_packs`). Nothing is deleted before the blocks point elsewhere;
    a crash after the first step leaves a sealed pack read record by record until compact
    copies it. Returns False if the pack was no longer open."""
    backend, key = store.backend_for(url)
    data = backend.read(key)  # bounded: a shared pack is sealed at its target size
    live = (sa.select(sa.func.coalesce(sa.func.sum(Block.stored_size + packfmt.RECORD_HEADER), 0))
            .where(Block.pack_id == Pack.id).scalar_subquery())
    with sm() as s, s.begin():
        done = s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == "open").values(
            state="sealed", size=len(data), checksum=f"{packfmt.crc32c(data):08x}", live_bytes=live,
            sealed_at=now()).execution_options(synchronize_session=False)).rowcount
    if not done:
        return False
    del data
    with sm() as s:
        sources = [Source(bid, pack_id, url, off, stored) for bid, off, stored in s.execute(
            sa.select(Block.id, Block.offset_in_pack, Block.stored_size).where(Block.pack_id == pack_id)
            .order_by(Block.offset_in_pack))]
    new = new_pack_id()
    new_key = store.pack_key(new)
    register_pack(sm, new, store.hot.url_for(new_key))
    size, checksum, moves, _bad = write_pack(store, new, new_key, sources)
    # A record that fails its check is not copied: its block keeps pointing at the old pack,
    # which then stays sealed for scrub and fsck to report.
    switch_blocks(sm, new, size, checksum, moves)
    return True


def delete_retired_packs(sm: sessionmaker[Session], store: BlockStore, before: dt.datetime,
                         on_deleted: Callable[[str], None] | None = None) -> dict:
    """Delete the files of packs retiring since before ``before`` that no block points to.
    The row says ``deleted`` first, then the file goes; a ``deleted`` row with a size is a
    file whose delete did not finish (a crash), retried here."""
    no_blocks = sa.not_(sa.exists().where(Block.pack_id == Pack.id))
    with sm() as s, s.begin():
        ids = s.execute(sa.select(Pack.id).where(Pack.state == "retiring", Pack.retired_at < before, no_blocks)).scalars().all()
        for part in _batches(ids):
            s.execute(sa.update(Pack).where(Pack.id.in_(part), Pack.state == "retiring", no_blocks)
                      .values(state="deleted").execution_options(synchronize_session=False))
    if ids:
        crashpoints.reach("pack:row_deleted")
    with sm() as s:
        todo = s.execute(sa.select(Pack.id, Pack.url, Pack.size).where(Pack.state == "deleted", Pack.size > 0)).all()
    n = nbytes = 0
    for pack_id, url, size in todo:
        backend, key = store.backend_for(url)
        backend.delete(key)  # idempotent: a retry after a crash finds nothing to delete
        crashpoints.reach("pack:file_deleted")
        if on_deleted:
            on_deleted(pack_id)
        with sm() as s, s.begin():
            s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == "deleted").values(size=0, live_bytes=0))
        n += 1
        nbytes += size
    return {"packs_deleted": n, "bytes_deleted": nbytes}


# ---- copying records into a new pack (runs on executors) -------------------------------------

@dataclass(frozen=True)
class Source:
    """One record to copy: block ``block_id`` at ``offset`` of the pack at ``url``."""

    block_id: bytes
    pack_id: str
    url: str
    offset: int
    stored_size: int
    row_pack: str | None = None  # where the block's row points, if the copy is read elsewhere


def write_pack(store: BlockStore, pack_id: str, key: str, sources: Sequence[Source],
               backend=None, timings: dict | None = None) -> tuple[int, str, list[Move], list[tuple[Source, str]]]:
    """Copy ``sources`` into a new pack ``key`` on ``backend`` (the hot tier by default).
    Returns (size, checksum, moves, bad).

    Records are copied verbatim (header and stored payload, CRC included; nothing is
    decompressed or recompressed), one ranged read per run of nearby records. Each record is
    checked on the way through, in the same pass: its header must name the expected block and
    its payload must match its CRC32C; a record failing either is not copied and is returned
    in ``bad``. The pack's own checksum is computed as it is written, and ``close()`` makes
    it durable before anything points to it. ``timings``, if given, receives the seconds
    spent reading, checking and writing, and closing (fsync)."""
    from .blockstore import _Checksummed
    backend = backend or store.hot
    t_read = t_check = 0.0
    out = _Checksummed(backend.create(key))
    writer = packfmt.PackWriter(out, uuid.UUID(pack_id).bytes)
    moves, bad = [], []
    try:
        by_url: dict[str, list[Source]] = {}
        for src in sources:
            by_url.setdefault(src.url, []).append(src)
        for url, srcs in by_url.items():
            srcs.sort(key=lambda x: x.offset)
            b, k = store.backend_for(url)
            for run in _runs(srcs):
                start = run[0].offset
                t0 = time.perf_counter()
                try:
                    buf = memoryview(b.read_range(k, start, run[-1].offset + packfmt.RECORD_HEADER
                                                  + run[-1].stored_size - start))
                except BlockdriveError as exc:
                    bad += [(src, str(exc)) for src in run]
                    continue
                t1 = time.perf_counter()
                t_read += t1 - t0
                for src in run:
                    lo = src.offset - start
                    data = buf[lo:lo + packfmt.RECORD_HEADER + src.stored_size]
                    try:
                        rec, _ = packfmt.decode_record(data, src.block_id, f"pack {src.pack_id} offset {src.offset}")
                    except BlockdriveError as exc:
                        bad.append((src, str(exc)))
                        continue
                    new = writer.add_stored(rec, data)
                    moves.append(Move(src.block_id, src.row_pack or src.pack_id, new.offset))
                t_check += time.perf_counter() - t1
        writer.finish()
    finally:
        t2 = time.perf_counter()
        out.close()  # durable before anything points to it
        t_close = time.perf_counter() - t2
    if timings is not None:
        for name, v in (("read", t_read), ("check_write", t_check), ("close", t_close)):
            timings[name] = timings.get(name, 0.0) + v
    return writer.size, f"{out.crc:08x}", moves, bad


def _runs(srcs: list[Source], gap: int = 1 << 20, most: int = 16 << 20):
    """Split offset-sorted sources into runs read with one request each: neighbours less than
    ``gap`` apart, at most ``most`` bytes per run."""
    run: list[Source] = []
    for src in srcs:
        if run and (src.offset - (run[-1].offset + packfmt.RECORD_HEADER + run[-1].stored_size) > gap
                    or src.offset + src.stored_size - run[0].offset > most):
            yield run
            run = []
        run.append(src)
    if run:
        yield run


def copy_pack(store: BlockStore, src_url: str, dest, dest_key: str) -> tuple[int, str]:
    """Copy a whole pack file to ``dest`` and verify the copy by reading it back."""
    b, k = store.backend_for(src_url)
    data = b.read(k)
    crc = packfmt.crc32c(data)
    dest.put(dest_key, data)
    back = dest.read(dest_key)
    if len(back) != len(data) or packfmt.crc32c(back) != crc:
        raise IntegrityError(f"copy of {k} to {dest_key} does not read back intact")
    return len(data), f"{crc:08x}"


def switch_pack_location(sm: sessionmaker[Session], old_pack: str, new_pack: str, size: int,
                         checksum: str, at: dt.datetime | None = None) -> int:
    """Tiering: the identical copy ``new_pack`` replaces ``old_pack`` in one transaction (same
    offsets), and the old one starts retiring. Returns the blocks moved."""
    at = at or now()
    with sm() as s, s.begin():
        old = s.execute(sa.select(Pack.state).where(Pack.id == old_pack)).scalar()
        if old != "sealed":
            raise IntegrityError(f"pack {old_pack} is {old}; not switching it", pack=old_pack)
        if s.execute(sa.update(Pack).where(Pack.id == new_pack, Pack.state == "open")
                     .values(state="sealed", size=size, checksum=checksum, sealed_at=at)
                     .execution_options(synchronize_session=False)).rowcount != 1:
            raise IntegrityError(f"pack {new_pack} is no longer open", pack=new_pack)
        n = s.execute(sa.update(Block).where(Block.pack_id == old_pack).values(pack_id=new_pack)
                      .execution_options(synchronize_session=False)).rowcount
        refresh_live_bytes(s, [old_pack, new_pack])
        s.execute(sa.update(Pack).where(Pack.id == new_pack).values(
            last_read_at=sa.select(Pack.last_read_at).where(Pack.id == old_pack).scalar_subquery()))
        retire_empty_packs(s, [old_pack], at)
    return n


# ---- reconcile -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Repair:
    kind: str  # refcount | usage | node_count
    key: str
    old: int
    new: int


def repair_refcounts(sm: sessionmaker[Session], ids: Iterable[bytes]) -> list[Repair]:
    """Set each candidate's refcount to its count of refs, recounted under the row's lock
    (the plan's snapshot may be stale). A decrease to zero leaves the block to GC's mark and
    sweep, with its grace period; nothing is deleted here."""
    out = []
    for part in _batches(list(ids), 100):
        with sm() as s, s.begin():
            for bid in part:
                row = s.execute(sa.select(Block.refcount).where(Block.id == bid).with_for_update()).first()
                if row is None:
                    continue
                counted = s.execute(sa.select(sa.func.count()).select_from(VersionBlock)
                                    .where(VersionBlock.block_id == bid)).scalar_one()
                if counted != row.refcount:
                    values = {"refcount": counted}
                    if counted > 0:
                        values["gc_marked_at"] = None
                    s.execute(sa.update(Block).where(Block.id == bid).values(**values)
                              .execution_options(synchronize_session=False))
                    out.append(Repair("refcount", bid.hex(), row.refcount, counted))
    return out


def repair_usage(sm: sessionmaker[Session], user_ids: Iterable[int],
                 floor: int = quota.BLOCK_FLOOR) -> list[Repair]:
    """Set each candidate's used_bytes (every version their files keep) and pending_bytes
    (what their active upload sessions hold), recounted under the user's row lock."""
    out = []
    for part in _batches(list(user_ids), 100):
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
    for part in _batches(list(user_ids), 100):
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


# ---- retention of old versions ---------------------------------------------------------------

def apply_retention(sm: sessionmaker[Session], policy: "quota.Retention", at: dt.datetime,
                    floor: int = quota.BLOCK_FLOOR, batch_nodes: int = 200, dry_run: bool = False) -> dict:
    """Thin every file's old versions by ``policy`` (:func:`storage.quota.plan_thinning`),
    ``batch_nodes`` files per transaction. Each transaction re-reads the versions and the
    current version under its own snapshot, so a file written meanwhile never loses the
    version that became current; refs, refcounts and the owner's used_bytes drop in the same
    transaction. Blocks are left to GC's mark and sweep."""
    stats = {"retention_files_checked": 0, "versions_thinned": 0, "version_bytes_freed": 0}
    last = 0
    while True:
        with sm() as s:
            nids = s.execute(sa.select(FileVersion.node_id).where(FileVersion.node_id > last)
                             .group_by(FileVersion.node_id).having(sa.func.count() > 1)
                             .order_by(FileVersion.node_id).limit(batch_nodes)).scalars().all()
        if not nids:
            return stats
        last = nids[-1]
        with sm() as s, s.begin():
            nodes = {n.id: (n.owner_id, n.current_version_id) for n in s.execute(
                sa.select(Node.id, Node.owner_id, Node.current_version_id).where(Node.id.in_(nids))
                .with_for_update())}
            by_node: dict[int, list] = {}
            for v in s.execute(sa.select(FileVersion.id, FileVersion.node_id, FileVersion.created_at,
                                         FileVersion.size, FileVersion.nblocks)
                               .where(FileVersion.node_id.in_(list(nodes)))):
                by_node.setdefault(v.node_id, []).append(v)
            drop: dict[int, list] = {}
            for nid, vs in by_node.items():
                owner, current = nodes[nid]
                gone = set(quota.plan_thinning([(v.id, v.created_at) for v in vs], current, at, policy))
                drop.setdefault(owner, []).extend((v.id, v.size, v.nblocks) for v in vs if v.id in gone)
            stats["retention_files_checked"] += len(by_node)
            for owner, versions in drop.items():
                stats["versions_thinned"] += len(versions)
                if dry_run:
                    stats["version_bytes_freed"] += sum(quota.version_charge(sz, n, floor) for _, sz, n in versions)
                else:
                    stats["version_bytes_freed"] += quota.drop_versions(s, owner, versions, floor)


# ---- dedup: identical whole files stored as different blocks ---------------------------------

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
        BlockStore.add_refs(s, Counter(b for _, b, _ in new))
        s.execute(sa.delete(VersionBlock).where(VersionBlock.version_id == a.id))
        if new:
            s.execute(sa.insert(VersionBlock), [dict(version_id=a.id, seq=q, block_id=b, offset=o) for q, b, o in new])
        BlockStore.drop_refs(s, Counter(old))
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
    stmt = (sa.update(Block).where(Block.id == sa.bindparam("bid"), Block.pack_id == sa.bindparam("old"),
                                   Block.offset_in_pack == sa.bindparam("old_off"),
                                   sa.exists().where(Pack.id == sa.bindparam("new"), Pack.state == "sealed"))
            .values(pack_id=sa.bindparam("new"), offset_in_pack=sa.bindparam("off"),
                    codec=sa.bindparam("codec"), stored_size=sa.bindparam("stored"))
            .execution_options(synchronize_session=False))
    moved = retired = 0
    for part in _batches(list(repoints)):
        with sm() as s, s.begin():
            moved += s.connection().execute(stmt, [
                {"bid": r.block_id, "old": r.from_pack, "old_off": r.from_offset, "new": r.to_pack,
                 "off": r.to_offset, "codec": r.codec, "stored": r.stored_size} for r in part]).rowcount
            touched = {r.from_pack for r in part} | {r.to_pack for r in part}
            refresh_live_bytes(s, touched)
            retired += retire_empty_packs(s, {r.from_pack for r in part}, at)
    return {"moved": moved, "retired": retired}


# ---- last-read tracking (for tiering), batched: never a write per read -----------------------

class ReadTracker:
    """Remembers which packs were read and writes ``last_read_at`` for all of them at most
    once every ``interval`` seconds, in one statement. A crash loses at most one interval of
    read times, which only delays tiering decisions by that much."""

    def __init__(self, sm: sessionmaker[Session], interval: float = 60.0):
        self.sm, self.interval = sm, interval
        self._seen: set[str] = set()
        self._lock = threading.Lock()
        self._last = time.monotonic()

    def note(self, pack_url: str) -> None:
        pack_id = pack_url.rsplit("/", 1)[-1].removesuffix(".pack")
        with self._lock:
            self._seen.add(pack_id)
            due = time.monotonic() - self._last >= self.interval
        if due:
            self.flush()

    def flush(self) -> int:
        with self._lock:
            ids, self._seen = sorted(self._seen), set()
            self._last = time.monotonic()
        if not ids:
            return 0
        t = now()
        try:
            with self.sm() as s, s.begin():
                for part in _batches(ids):
                    s.execute(sa.update(Pack).where(Pack.id.in_(part)).values(last_read_at=t)
                              .execution_options(synchronize_session=False))
        except Exception:  # noqa: BLE001 - a read must never fail because of bookkeeping
            pass
        return len(ids)


__all__ = ["Safety", "SAFE", "acquire_lease", "release_lease", "lease_holder", "expire_upload_sessions",
           "remove_stale_tails", "mark_blocks", "sweep_cutoff", "sweep_blocks", "register_pack", "switch_blocks",
           "Move",
           "retire_packs", "abandon_open_packs", "recover_open_pack", "delete_retired_packs", "Source", "write_pack",
           "copy_pack", "switch_pack_location", "repair_refcounts", "repair_usage",
           "merge_version_refs", "Repoint", "repoint_blocks", "ReadTracker", "Repair", "new_pack_id", "NotFound"]
