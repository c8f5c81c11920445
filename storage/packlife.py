"""The life of a pack after it is written: ``open|sealed -> retiring -> deleted``.

A pack's file is deleted only after its row says ``deleted``, which happens only when no
block row points to it ("a pack must leave the index before it is deleted") and it has been
retiring long enough that no reader can still hold its location: for a pack that was sealed
(readable), the read bound of storage/reads.py (``storage.read_location_max_seconds``, plus
``storage.timeout_seconds`` for a read started just before it; :func:`superseded_cutoff`);
for one retired straight from ``open`` (an upload given up), the grace period. Here are the steps that move packs along: registering a
new pack before its first byte, switching blocks to a copy (compaction, scrub, tiering),
retiring packs no block points to, recovering or giving up the open packs of dead writers,
and deleting retired files. The copies themselves are written by the pack store
(storage/packstore.py), often on Spark executors.
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Callable, Iterable, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import crashpoints
from . import pack as packfmt
from .batching import batches
from .blockindex import pack_live_bytes, register_open_pack
from .clock import now
from .errors import IntegrityError, NotFound
from .models import Block, Pack
from .packstore import Move, PackStore, Source
from .states import PackState


def refresh_live_bytes(s: Session, pack_ids: Iterable[str]) -> None:
    """Recount ``live_bytes`` of each pack of ``pack_ids`` from the blocks pointing into it."""
    live = pack_live_bytes()
    for part in batches(sorted(pack_ids)):
        s.execute(sa.update(Pack).where(Pack.id.in_(part)).values(live_bytes=live)
                  .execution_options(synchronize_session=False))


def new_pack_id() -> str:
    return uuid.uuid4().hex


#: An ``open`` row before any byte is written: a crash leaves a pack GC can find.
register_pack = register_open_pack


def switch_blocks(sm: sessionmaker[Session], new_pack: str, size: int, checksum: str,
                  moves: Sequence[Move], at: dt.datetime | None = None) -> dict:
    """In one transaction: seal ``new_pack`` (it must still be ``open``: GC may have given it
    up), point each moved block at it (only if the block still lives where the plan saw it),
    and retire every source pack no block points to any more (``retired_ids``; ``retired_at``
    is the time of the switch, as in :func:`retire_empty_packs`)."""
    at = at or now()
    with sm() as s, s.begin():
        sealed = s.execute(sa.update(Pack).where(Pack.id == new_pack, Pack.state == PackState.OPEN)
                           .values(state=PackState.SEALED, size=size, checksum=checksum, sealed_at=at)
                           .execution_options(synchronize_session=False)).rowcount
        if sealed != 1:
            raise IntegrityError(f"pack {new_pack} is no longer open; not switching to it", pack=new_pack)
        stmt = (sa.update(Block).where(Block.id == sa.bindparam("block_id"), Block.pack_id == sa.bindparam("old"))
                .values(pack_id=new_pack, offset_in_pack=sa.bindparam("off"))
                .execution_options(synchronize_session=False))
        moved = 0
        for part in batches(list(moves), 1000):
            moved += s.connection().execute(stmt, [{"block_id": m.block_id, "old": m.from_pack, "off": m.offset}
                                                   for m in part]).rowcount
        refresh_live_bytes(s, {new_pack} | {m.from_pack for m in moves})
        at = max(at, now())
        # One statement per source pack, to know which this switch retired (and may time):
        # a pack another job retired meanwhile is not among them.
        retired_ids = [p for p in sorted({m.from_pack for m in moves})
                       if s.execute(_retire(sa.update(Pack).where(Pack.id == p), at)).rowcount]
    return {"moved": moved, "retired": len(retired_ids), "retired_ids": retired_ids}


def _retire(update, at: dt.datetime):
    """``update`` (of some packs) made to retire those that are sealed and no block points to."""
    no_blocks = sa.not_(sa.exists().where(Block.pack_id == Pack.id))
    return (update.where(Pack.state == PackState.SEALED, no_blocks).values(state=PackState.RETIRING, retired_at=at)
            .execution_options(synchronize_session=False))


def retire_empty_packs(s: Session, pack_ids: Iterable[str], at: dt.datetime) -> int:
    """Retire the sealed packs of ``pack_ids`` no block points to. ``retired_at`` is ``at``
    or, if later, the time of this change: a reader may have looked a block up in such a pack
    until this transaction commits, and the read bound counts from then."""
    at = max(at, now())
    return sum(s.execute(_retire(sa.update(Pack).where(Pack.id.in_(part)), at)).rowcount
               for part in batches(sorted(pack_ids)))


def retire_packs(sm: sessionmaker[Session], pack_ids: Iterable[str], at: dt.datetime | None = None) -> int:
    """Retire sealed packs that hold no block any more (all their records are dead)."""
    with sm() as s, s.begin():
        return retire_empty_packs(s, pack_ids, at or now())


def abandon_open_packs(sm: sessionmaker[Session], store: PackStore, before: dt.datetime) -> list[str]:
    """Open packs created before ``before`` belong to uploads that crashed or gave up: retire
    them (with the size their file has now), or, if no file was ever written, mark them
    deleted. The guard ``state = 'open'`` here and in the seal at commit means a late commit
    fails (and its upload is retried) instead of sealing a pack we delete.

    An open pack that blocks point to is a shared pack whose process died (storage/sharedpack.py):
    it is never retired but recovered (:func:`recover_open_pack`)."""
    with sm() as s:
        rows = s.execute(sa.select(Pack.id, Pack.url).where(Pack.state == PackState.OPEN, Pack.created_at < before)).all()
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
            size, values = backend.size(key), {"state": PackState.RETIRING, "retired_at": now()}
        except NotFound:
            size, values = 0, {"state": "deleted"}
        if size == 0:
            # An empty file (the upload died before its first bytes reached the disk): a
            # deleted row with size 0 reads as "file already gone" to delete_retired_packs,
            # so remove the file here, after the row has left the open state.
            values = {"state": "deleted"}
        with sm() as s, s.begin():
            done = s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == PackState.OPEN, no_blocks)
                             .values(size=size, live_bytes=0, **values)
                             .execution_options(synchronize_session=False)).rowcount
        if done:
            out.append(pack_id)
            if size == 0:
                backend.delete(key)  # idempotent; no block ever pointed into it
    return out


def recover_open_pack(sm: sessionmaker[Session], store: PackStore, pack_id: str, url: str) -> bool:
    """Give a shared pack left open by a dead process (records that blocks point to, no footer)
    the shape of any other: its row is sealed with the size and checksum of the file as it
    is, then the records blocks point to are copied into a new pack with a footer, the blocks
    switched to it, and the old pack retired by the switch (its file deleted after the grace
    by :func:`delete_retired_packs`). Nothing is deleted before the blocks point elsewhere;
    a crash after the first step leaves a sealed pack read record by record until compact
    copies it. Returns False if the pack was no longer open."""
    backend, key = store.backend_for(url)
    data = backend.read(key)  # bounded: a shared pack is sealed at its target size
    live = pack_live_bytes()
    with sm() as s, s.begin():
        done = s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == PackState.OPEN).values(
            state=PackState.SEALED, size=len(data), checksum=f"{packfmt.crc32c(data):08x}", live_bytes=live,
            sealed_at=now()).execution_options(synchronize_session=False)).rowcount
    if not done:
        return False
    del data
    with sm() as s:
        sources = [Source(block_id, pack_id, url, off, stored) for block_id, off, stored in s.execute(
            sa.select(Block.id, Block.offset_in_pack, Block.stored_size).where(Block.pack_id == pack_id)
            .order_by(Block.offset_in_pack))]
    new = new_pack_id()
    new_key = store.pack_key(new)
    register_pack(sm, new, store.hot.url_for(new_key))
    size, checksum, moves, _bad = store.write_pack(new, new_key, sources)
    # A record that fails its check is not copied: its block keeps pointing at the old pack,
    # which then stays sealed for scrub and fsck to report.
    switch_blocks(sm, new, size, checksum, moves)
    return True


def superseded_cutoff(at: dt.datetime, read_location_max_seconds: float, timeout_seconds: float) -> dt.datetime:
    """A sealed pack retired before this time can no longer be read: every reader that looked
    it up did so before it retired, uses a location for at most ``read_location_max_seconds``
    (storage/reads.py) and finishes a read it started within ``timeout_seconds``."""
    return at - dt.timedelta(seconds=read_location_max_seconds + timeout_seconds)


def delete_retired_packs(sm: sessionmaker[Session], store: PackStore, before: dt.datetime,
                         on_deleted: Callable[[str], None] | None = None,
                         superseded_before: dt.datetime | None = None,
                         superseded_ids: Iterable[str] = ()) -> dict:
    """Delete the files of packs retiring since before ``before`` that no block points to,
    and, with ``superseded_before`` (:func:`superseded_cutoff`), of those that were sealed
    and retired before that. ``superseded_ids`` are sealed packs the caller retired itself and
    timed: their switch committed more than the read bound ago, which the whole seconds of
    ``retired_at`` cannot tell within a second. The row says ``deleted`` first, then the file
    goes; a ``deleted`` row with a size is a file whose delete did not finish (a crash),
    retried here.

    A pack retired straight from ``open`` (never sealed) keeps the grace period: it belonged to
    an upload given up, whose writer may still be running."""
    no_blocks = sa.not_(sa.exists().where(Block.pack_id == Pack.id))
    due = Pack.retired_at < before
    if superseded_before is not None:
        due = sa.or_(due, sa.and_(Pack.sealed_at.is_not(None), Pack.retired_at < superseded_before))
    superseded_ids = sorted(superseded_ids)
    if superseded_ids:
        due = sa.or_(due, sa.and_(Pack.sealed_at.is_not(None), Pack.id.in_(superseded_ids)))
    with sm() as s, s.begin():
        pack_ids = s.execute(sa.select(Pack.id).where(Pack.state == PackState.RETIRING, due,
                                                      no_blocks)).scalars().all()
        for part in batches(pack_ids):
            s.execute(sa.update(Pack).where(Pack.id.in_(part), Pack.state == PackState.RETIRING, no_blocks)
                      .values(state=PackState.DELETED).execution_options(synchronize_session=False))
    if pack_ids:
        crashpoints.reach("pack:row_deleted")
    with sm() as s:
        todo = s.execute(sa.select(Pack.id, Pack.url, Pack.size).where(Pack.state == PackState.DELETED, Pack.size > 0)).all()
    n = nbytes = 0
    for pack_id, url, size in todo:
        backend, key = store.backend_for(url)
        backend.delete(key)  # idempotent: a retry after a crash finds nothing to delete
        crashpoints.reach("pack:file_deleted")
        if on_deleted:
            on_deleted(pack_id)
        with sm() as s, s.begin():
            s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == PackState.DELETED).values(size=0, live_bytes=0))
        n += 1
        nbytes += size
    return {"packs_deleted": n, "bytes_deleted": nbytes}


def switch_pack_location(sm: sessionmaker[Session], old_pack: str, new_pack: str, size: int,
                         checksum: str, at: dt.datetime | None = None) -> int:
    """Tiering: the identical copy ``new_pack`` replaces ``old_pack`` in one transaction (same
    offsets), and the old one starts retiring. Returns the blocks moved."""
    at = at or now()
    with sm() as s, s.begin():
        old = s.execute(sa.select(Pack.state).where(Pack.id == old_pack)).scalar()
        if old != PackState.SEALED:
            raise IntegrityError(f"pack {old_pack} is {old}; not switching it", pack=old_pack)
        if s.execute(sa.update(Pack).where(Pack.id == new_pack, Pack.state == PackState.OPEN)
                     .values(state=PackState.SEALED, size=size, checksum=checksum, sealed_at=at)
                     .execution_options(synchronize_session=False)).rowcount != 1:
            raise IntegrityError(f"pack {new_pack} is no longer open", pack=new_pack)
        n = s.execute(sa.update(Block).where(Block.pack_id == old_pack).values(pack_id=new_pack)
                      .execution_options(synchronize_session=False)).rowcount
        refresh_live_bytes(s, [old_pack, new_pack])
        s.execute(sa.update(Pack).where(Pack.id == new_pack).values(
            last_read_at=sa.select(Pack.last_read_at).where(Pack.id == old_pack).scalar_subquery()))
        retire_empty_packs(s, [old_pack], at)
    return n
