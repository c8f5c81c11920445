"""The block index: which blocks exist, where each one's record is, and how many refs it has.

It owns the ``blocks`` rows and the ``packs`` rows of packs being written: an ingest
reserves its pack's ``open`` row here before writing (:meth:`BlockIndex.register_open_pack`),
looks up which of its blocks are already stored (:meth:`BlockIndex.known_blocks`), and its
caller's metadata transaction commits what it wrote (:meth:`BlockIndex.commit`: the new
``blocks`` rows, the packs sealed, one ref per use). Refs are taken and released with
:func:`add_refs` and :func:`drop_refs`, in the caller's transaction. Nothing here reads or
writes pack bytes (storage/packstore.py does).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import pack as packfmt
from .clock import now
from .errors import NotFound, RetryLater
from .db import execute_core, read_only_sessions
from .models import Block, Pack
from .packstore import BlockLocation, tier_of
from .states import PackState

LOOKUP_CHUNK = 500  # block ids per IN (...) list


@dataclass(slots=True)
class NewBlock:
    """A block an ingest wrote: its id, sizes, codec and record (``pack_id``, ``offset``)."""

    block_id: bytes
    size: int
    stored_size: int
    codec: int
    pack_id: str
    offset: int


@dataclass(slots=True)
class PackInfo:
    """A pack an ingest wrote and closed, with what its row gets when sealed."""

    id: str
    url: str
    size: int = 0
    checksum: str = ""
    live_bytes: int = 0


@dataclass
class Ingested:
    """What one stream became: its refs in order, and the blocks and packs it added."""

    refs: list[tuple[bytes, int]] = field(default_factory=list)  # (block id, raw size)
    size: int = 0
    sha256: bytes = b""
    new_blocks: dict[bytes, NewBlock] = field(default_factory=dict)
    packs: list[PackInfo] = field(default_factory=list)
    # ``open`` pack rows reserved at the start but never written (every block was known)
    unused_packs: list[str] = field(default_factory=list)
    # shared open packs (storage/sharedpack.py) holding some of ``new_blocks``
    shared_packs: set[str] = field(default_factory=set)

    @property
    def new_bytes(self) -> int:
        return sum(b.stored_size for b in self.new_blocks.values())


def merged_ingests(ings: list[Ingested]) -> Ingested:
    """What ``ings`` wrote, as one :class:`Ingested` without refs, for one
    :meth:`BlockIndex.commit` of them all. A block two of them wrote is inserted once; the
    other copy is dead bytes, as when a concurrent upload's row wins."""
    if len(ings) == 1:
        return replace(ings[0], refs=[])
    out = Ingested()
    for ing in ings:
        out.new_blocks.update(ing.new_blocks)
        out.packs.extend(ing.packs)
        out.unused_packs.extend(ing.unused_packs)
        out.shared_packs.update(ing.shared_packs)
    # a shared pack is checked for the blocks that point there; one whose copies all lost stays open as is
    out.shared_packs &= {b.pack_id for b in out.new_blocks.values()}
    return out


def pack_live_bytes():
    """For an UPDATE of ``packs``: the bytes of the records blocks point to in that pack."""
    return (sa.select(sa.func.coalesce(sa.func.sum(Block.stored_size + packfmt.RECORD_HEADER), 0))
            .where(Block.pack_id == Pack.id).scalar_subquery())


# Statements of every upload's commit, built once: building one costs more than running it.
_ADD_REFS = (sa.update(Block).where(Block.id == sa.bindparam("block_id"))
             .values(refcount=Block.refcount + sa.bindparam("n"), gc_marked_at=None)
             .execution_options(synchronize_session=False))
_PRESENT = sa.select(Block.id).where(Block.id.in_(sa.bindparam("ids", expanding=True))).with_for_update()
_SHARED_PACK = sa.select(Pack.state, Pack.size).where(Pack.id == sa.bindparam("pid")).with_for_update(read=True)
_INSERT_BLOCKS = sa.insert(Block.__table__)


def add_refs(s: Session, counts: Counter) -> None:
    """Take ``counts[block_id]`` refs on each block in one UPDATE per distinct count; taking a
    ref clears any GC mark in the same statement. Fails (so the transaction rolls back)
    if a block vanished."""
    for n, block_ids in _by_count(counts).items():
        res = s.connection().execute(_ADD_REFS, [{"block_id": b, "n": n} for b in block_ids])
        if res.rowcount != len(block_ids):
            raise RetryLater("a referenced block was collected while this upload ran; retry")


def drop_refs(s: Session, counts: Counter) -> None:
    """Release refs. A block reaching zero is left for GC's mark and sweep, never
    deleted here."""
    stmt = (sa.update(Block).where(Block.id == sa.bindparam("block_id"))
            .values(refcount=Block.refcount - sa.bindparam("n"))
            .execution_options(synchronize_session=False))
    for n, block_ids in _by_count(counts).items():
        s.connection().execute(stmt, [{"block_id": b, "n": n} for b in block_ids])


def register_open_pack(sm: sessionmaker[Session], pack_id: str, url: str) -> None:
    """An ``open`` row before any byte is written: a crash leaves a pack GC can find."""
    with sm() as s, s.begin():
        s.add(Pack(id=pack_id, url=url, tier=tier_of(url), state=PackState.OPEN, created_at=now()))


def _by_count(counts: Counter) -> dict[int, list[bytes]]:
    by_n: dict[int, list[bytes]] = {}
    for block_id, n in counts.items():
        by_n.setdefault(n, []).append(block_id)
    return by_n


class BlockIndex:
    """The ``blocks`` rows and the rows of packs being written, through ``sm``."""

    def __init__(self, sm: sessionmaker[Session]):
        self.sm = sm
        self.reads = read_only_sessions(sm)

    add_refs = staticmethod(add_refs)
    drop_refs = staticmethod(drop_refs)

    def register_open_pack(self, pack_id: str, url: str) -> None:
        """An ``open`` row before any byte is written (:func:`register_open_pack`)."""
        register_open_pack(self.sm, pack_id, url)

    def known_blocks(self, block_ids: Iterable[bytes]) -> set[bytes]:
        """The subset of ``block_ids`` already stored and not marked for GC. A marked block may
        be swept at any moment after its grace period, so it is written again rather than
        referenced."""
        block_ids = list(block_ids)
        if not block_ids:
            return set()
        out: set[bytes] = set()
        with self.reads() as s:
            for i in range(0, len(block_ids), LOOKUP_CHUNK):
                out.update(r[0] for r in s.execute(sa.select(Block.id).where(
                    Block.id.in_(block_ids[i:i + LOOKUP_CHUNK]), Block.gc_marked_at.is_(None))))
        return out

    def location(self, block_id: bytes) -> BlockLocation:
        """Where block ``block_id``'s record is; NotFound if no such block is stored."""
        with self.sm() as s:
            row = s.execute(sa.select(Block.size, Block.stored_size, Pack.url, Block.offset_in_pack)
                            .join(Pack, Pack.id == Block.pack_id).where(Block.id == block_id)).first()
        if row is None:
            raise NotFound(f"block {block_id.hex()} not found")
        return BlockLocation(block_id, *row)

    def commit(self, s: Session, ing: Ingested, on_lost_shared: Callable[[str], None] | None = None) -> None:
        """Inside the caller's transaction: seal the packs, insert the new blocks (a block a
        concurrent upload inserted first wins; our copy becomes dead bytes in our pack), and
        take one ref per entry of ``ing.refs``. ``on_lost_shared`` hears of a shared pack GC
        or compact gave up, before the commit fails with RetryLater."""
        t = now()
        rows = []
        if ing.new_blocks:
            block_ids = list(ing.new_blocks)
            present = set()
            for i in range(0, len(block_ids), LOOKUP_CHUNK):
                # Locked, so a concurrent sweep cannot remove a row between this check and
                # add_refs below; a row it removed before is absent and ours is inserted.
                present.update(r[0] for r in execute_core(s, _PRESENT, {"ids": block_ids[i:i + LOOKUP_CHUNK]}))
            rows = [dict(id=b.block_id, size=b.size, stored_size=b.stored_size, codec=b.codec,
                         pack_id=b.pack_id, offset_in_pack=b.offset, refcount=0, created_at=t)
                    for b in ing.new_blocks.values() if b.block_id not in present]
        # A pack's live bytes are the records a row points to: a copy that lost to a row
        # already there (a concurrent upload, another user's block) is dead from the start.
        live: Counter = Counter()
        for r in rows:
            live[r["pack_id"]] += packfmt.RECORD_HEADER + r["stored_size"]
        for p in ing.packs:
            # Only a pack still open: GC retires open packs of uploads it takes for dead, and
            # sealing one of those would point blocks at a file about to be deleted.
            res = s.execute(sa.update(Pack).where(Pack.id == p.id, Pack.state == PackState.OPEN).values(
                state=PackState.SEALED, size=p.size, live_bytes=live[p.id], checksum=p.checksum, sealed_at=t))
            if res.rowcount != 1:
                raise RetryLater(f"pack {p.id} was reclaimed before this upload committed; retry")
        for pack_id in sorted(ing.shared_packs):
            # A shared pack stays open for other requests, or was sealed by its writer since
            # our append; retiring means GC or compact gave it up: no block may point there.
            # A shared lock, not an UPDATE: every request of the process commits into this
            # pack, and they must not queue on its row; GC's and compact's UPDATEs still wait
            # for our commit and then see our blocks. Its live_bytes are counted when sealed.
            # Sealed, it must hold our records: a pack sealed by someone else than its writer
            # (GC's recovery of a pack it took for crashed) may end before them.
            row = execute_core(s, _SHARED_PACK, {"pid": pack_id}).first()
            end = max(b.offset + packfmt.RECORD_HEADER + b.stored_size
                      for b in ing.new_blocks.values() if b.pack_id == pack_id)
            if row is None or not (row.state == PackState.OPEN or (row.state == PackState.SEALED and (row.size or 0) >= end)):
                if on_lost_shared is not None:
                    on_lost_shared(pack_id)  # so the retry appends to a new pack
                raise RetryLater(f"pack {pack_id} was reclaimed before this upload committed; retry")
        for pack_id in ing.unused_packs:
            s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == PackState.OPEN).values(state=PackState.DELETED))
        if rows:
            # Core, not the ORM's bulk insert: the same statement without its per-row work.
            execute_core(s, _INSERT_BLOCKS, rows)
        add_refs(s, Counter(block_id for block_id, _ in ing.refs))
