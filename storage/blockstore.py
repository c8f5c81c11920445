"""The block store: turns byte streams into blocks in packs, and blocks back into bytes.

Write order (DESIGN.md, "data is durable before anything points to it"):

1. a ``packs`` row is created in state ``open`` in its own transaction, so a crash after
   this point leaves a pack that GC can find and reclaim after the grace period;
2. the stream is cut into chunks, each hashed; known blocks are looked up in batches;
   new ones are compressed and appended to the pack;
3. the pack is closed (fsync / HDFS close / S3 complete): now it is durable;
4. the caller's metadata transaction calls :meth:`BlockStore.commit`, which inserts the new
   ``blocks`` rows, seals the packs and increments every referenced block's refcount, in
   the same transaction that creates the version pointing at them.

A request whose new blocks are small (at most ``shared_pack_request_bytes`` stored) appends
them to the process's shared open pack instead (storage/sharedpack.py): steps 1 and 3 are
that pack's, made durable per group of appends, and the commit checks the pack is still
``open`` or ``sealed`` instead of sealing it.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterable, Iterator

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from . import codec as codecs
from . import crashpoints
from . import pack as packfmt
from .backends import Backend, open_backend
from .chunking import Chunker
from .clock import now
from .errors import IntegrityError, NotFound, QuotaExceeded, RetryLater
from .models import Block, Pack
from .sharedpack import SharedPacks

LOOKUP_BATCH = 64  # blocks per known-block query
LOOKUP_BYTES = 4 * 1024 * 1024  # ...or this many raw bytes held, whichever comes first
INFLIGHT = 4  # blocks queued for each worker thread of an ingest
READ_COALESCE = 16 * 1024 * 1024  # merge adjacent block reads up to this many bytes
PROBE_WHOLE = 256 * 1024  # blocks above this are probed with their first 64 KiB
PROBE_SLICE = 4 * 1024  # ...blocks above 8 slices with three slices of this size


def tier_of(url: str) -> str:
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    return {"file": "local", "hdfs": "hdfs", "webhdfs": "hdfs", "s3": "s3"}.get(scheme, scheme)


@dataclass(slots=True)
class NewBlock:
    block_id: bytes
    size: int
    stored_size: int
    codec: int
    pack_id: str
    offset: int


@dataclass(slots=True)
class PackInfo:
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


@dataclass(frozen=True, slots=True)
class BlockLocation:
    block_id: bytes
    size: int
    stored_size: int
    pack_url: str
    offset_in_pack: int


class _PackSink:
    """The pack currently being written for one ingest, rolling over at ``max_bytes``.

    While the new blocks fit in the store's ``shared`` budget they are only held here; at
    :meth:`close` they go to the shared open pack, so a small upload opens no pack file of
    its own. The first block past the budget opens the ingest's own pack and everything held
    is written there first."""

    def __init__(self, store: "BlockStore", ingested: Ingested):
        self.store, self.ingested = store, ingested
        self.writer: packfmt.PackWriter | None = None
        self.out = None
        self.info: PackInfo | None = None
        self.crc = 0
        self.reserved: str | None = None
        self.held: list[tuple[NewBlock, int, object]] = []  # (block, codec, payload)
        self.held_bytes = 0
        self.share = store.shared is not None

    def reserve(self) -> None:
        """Register the first pack's ``open`` row before the first known-block lookup: while
        it is open, GC sweeps no block marked after it, so a dedup hit found by this ingest
        cannot be swept before the commit takes its ref (see storage/maintenance.py)."""
        self.reserved = uuid.uuid4().hex
        self.store.register_open_pack(self.reserved, self.store.hot.url_for(self.store.pack_key(self.reserved)))

    def add(self, block_id: bytes, raw, codec: int, payload) -> NewBlock:
        """The block's place; for a held block ``pack_id`` and ``offset`` are filled in when
        it is written (at the latest by :meth:`close`), before any commit reads them."""
        if self.share:
            need = packfmt.RECORD_HEADER + len(payload)
            if self.held_bytes + need <= self.store.shared.max_request_bytes:
                nb = NewBlock(block_id, len(raw), len(payload), codec, "", -1)
                self.held.append((nb, codec, payload))
                self.held_bytes += need
                return nb
            self.share = False  # too big for the shared pack: this ingest writes its own
            held, self.held, self.held_bytes = self.held, [], 0
            for nb, hcodec, hpayload in held:
                self._write(nb, hcodec, hpayload)
        nb = NewBlock(block_id, len(raw), len(payload), codec, "", -1)
        self._write(nb, codec, payload)
        return nb

    def _write(self, nb: NewBlock, codec: int, payload) -> None:
        if self.writer is None:
            self._open()
        rec = self.writer.add(nb.block_id, codec, nb.size, payload)
        nb.pack_id, nb.offset, nb.stored_size = self.info.id, rec.offset, rec.stored_size
        self.info.live_bytes += packfmt.RECORD_HEADER + rec.stored_size
        if self.writer.size >= self.store.pack_max_bytes:
            self._close_own()

    def _open(self) -> None:
        if self.reserved is not None:
            pack_id, self.reserved = uuid.UUID(self.reserved), None
            key = self.store.pack_key(pack_id.hex)
            url = self.store.hot.url_for(key)
        else:
            pack_id = uuid.uuid4()
            key = self.store.pack_key(pack_id.hex)
            url = self.store.hot.url_for(key)
            self.store.register_open_pack(pack_id.hex, url)
        self.info = PackInfo(pack_id.hex, url)
        self.out = _Checksummed(self.store.hot.create(key))
        self.writer = packfmt.PackWriter(self.out, pack_id.bytes)

    def close(self) -> None:
        if self.held:
            held, self.held, self.held_bytes = self.held, [], 0
            pack_id, recs = self.store.shared.append(
                [(nb.block_id, codec, nb.size, payload) for nb, codec, payload in held])
            for (nb, _, _), rec in zip(held, recs):
                nb.pack_id, nb.offset = pack_id, rec.offset
            self.ingested.shared_packs.add(pack_id)
        self._close_own()

    def _close_own(self) -> None:
        if self.writer is None:
            if self.reserved is not None:
                self.ingested.unused_packs.append(self.reserved)
                self.reserved = None
            return
        self.writer.finish()
        self.out.close()  # durable from here on
        self.info.size = self.writer.size
        self.info.checksum = f"{self.out.crc:08x}"
        self.ingested.packs.append(self.info)
        self.writer = self.out = self.info = None

    def abandon(self) -> None:
        """Close without a footer after a failure. The pack stays ``open`` in the metadata and
        is reclaimed by GC after the grace period; deleting it here could race a reader of a
        concurrent identical upload, so we never do. Held blocks were never written: they are
        simply dropped."""
        self.held, self.held_bytes = [], 0
        if self.out is not None:
            try:
                self.out.close()
            except Exception:  # noqa: BLE001 - the original error matters more
                pass
        self.writer = self.out = self.info = None


class _Checksummed:
    def __init__(self, out):
        self._out, self.crc = out, 0

    def write(self, data) -> int:
        self.crc = packfmt._crc32c.crc32c(data, self.crc)
        return self._out.write(data)

    def close(self) -> None:
        self._out.close()


class BlockStore:
    def __init__(self, sessionmaker_: sessionmaker[Session], hot: Backend, chunker: Chunker, *,
                 cold: Backend | None = None, compression_level: int = 3,
                 min_compression_saving: float = 0.05, pack_max_bytes: int = 128 * 1024 * 1024,
                 timeout: float = 30, shared_pack_request_bytes: int = 0,
                 shared_pack_target_bytes: int = 64 * 1024 * 1024, shared_pack_idle_seconds: float = 5,
                 shared_pack_max_age_seconds: float = 300):
        self.sm, self.hot, self.cold, self.chunker = sessionmaker_, hot, cold, chunker
        self.level, self.min_saving = compression_level, min_compression_saving
        self.pack_max_bytes, self.timeout = pack_max_bytes, timeout
        self.hot_tier = tier_of(hot.url)
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()
        # Hooks for tests that stop the write path at a named durability boundary.
        self.hooks: dict[str, Callable[[], None]] = {}
        from .maintenance import ReadTracker  # here: maintenance builds on this module
        self.read_tracker = ReadTracker(sessionmaker_)
        self.shared: SharedPacks | None = None
        if shared_pack_request_bytes > 0 and hot.appends_durably:
            self.shared = SharedPacks(self, max_request_bytes=shared_pack_request_bytes,
                                      target_bytes=shared_pack_target_bytes, idle_seconds=shared_pack_idle_seconds,
                                      max_age_seconds=shared_pack_max_age_seconds)

    def close(self) -> None:
        """Seal the shared open pack, if this process has one."""
        if self.shared is not None:
            self.shared.seal()

    # ---- locations -------------------------------------------------------------------

    @staticmethod
    def pack_key(pack_hex: str) -> str:
        return f"packs/{pack_hex[:2]}/{pack_hex}.pack"

    def backend_for(self, url: str) -> tuple[Backend, str]:
        for b in (self.hot, self.cold):
            if b is not None:
                key = b.key_for(url)
                if key is not None:
                    return b, key
        # A pack on a backend no longer configured as hot or cold (a migration in progress):
        # open it by its own URL, once.
        base, _, key = url.rpartition("/packs/")
        with self._lock:
            backend = self._backends.get(base)
            if backend is None:
                backend = self._backends[base] = open_backend(base, self.timeout)
        return backend, "packs/" + key

    def _hook(self, name: str) -> None:
        crashpoints.reach(name)
        fn = self.hooks.get(name)
        if fn is not None:
            fn()

    # ---- write path ------------------------------------------------------------------

    def register_open_pack(self, pack_hex: str, url: str) -> None:
        with self.sm() as s, s.begin():
            s.add(Pack(id=pack_hex, url=url, tier=tier_of(url), state="open", created_at=now()))

    def known_blocks(self, ids: Iterable[bytes]) -> set[bytes]:
        """The subset of ``ids`` already stored and not marked for GC. A marked block may be
        swept at any moment after its grace period, so it is written again rather than
        referenced."""
        ids = list(ids)
        if not ids:
            return set()
        out: set[bytes] = set()
        with self.sm() as s:
            for i in range(0, len(ids), 500):
                out.update(r[0] for r in s.execute(sa.select(Block.id).where(
                    Block.id.in_(ids[i:i + 500]), Block.gc_marked_at.is_(None))))
        return out

    def ingest(self, stream: BinaryIO, limit: int | None = None,
               on_progress: Callable[[int], None] | None = None,
               owned: Callable[[list[bytes]], set[bytes]] | None = None) -> Ingested:
        """Cut, hash, dedup and store ``stream``. Raises QuotaExceeded as soon as more than
        ``limit`` bytes arrive, having charged nothing.

        With ``owned`` (of some block ids, those the uploader already has), only those may
        skip the write: a block stored by someone else is written again, so the upload takes
        the time a fresh block takes and its timing tells nothing of other users' content.
        Without it every stored block not marked for GC is deduplicated.

        Three stages overlap (hashlib, zstd and file writes all release the GIL): this thread
        reads, cuts, hashes blocks and looks them up; one worker keeps the whole-file SHA-256;
        one worker compresses and appends new blocks to the pack. Each hand-off queue is
        bounded, so memory stays flat whatever the file size."""
        ing = Ingested()
        sink = _PackSink(self, ing)
        file_hash = hashlib.sha256()
        pending: list[tuple[bytes, bytes]] = []  # (block id, raw) awaiting a lookup
        pending_bytes = 0
        seen: set[bytes] = set()
        hasher = ThreadPoolExecutor(1, thread_name_prefix="bd-sha256")
        writer = ThreadPoolExecutor(1, thread_name_prefix="bd-pack")
        hashing: deque = deque()
        writing: deque = deque()

        def store(bid: bytes, raw: bytes) -> None:
            codec, payload = self._encode(raw)
            ing.new_blocks[bid] = sink.add(bid, raw, codec, payload)

        def bound(queue: deque, n: int) -> None:
            while len(queue) > n:
                queue.popleft().result()  # re-raises a worker's error here

        def flush() -> None:
            nonlocal pending_bytes
            pending_bytes = 0
            if not pending:
                return
            ask = {bid for bid, _ in pending if bid not in seen}
            if owned is not None and ask:
                ask = owned(list(ask))
            known = self.known_blocks(ask)
            for bid, raw in pending:
                if bid in seen:
                    continue
                seen.add(bid)
                if bid not in known:
                    writing.append(writer.submit(store, bid, raw))
                    bound(writing, INFLIGHT)
            pending.clear()

        try:
            sink.reserve()
            for view in self.chunker.chunks(stream):
                raw = bytes(view)  # the chunker reuses its buffer
                ing.size += len(raw)
                if limit is not None and ing.size > limit:
                    raise QuotaExceeded(used=0, quota=limit, needed=ing.size)
                hashing.append(hasher.submit(file_hash.update, raw))
                bound(hashing, INFLIGHT)
                bid = hashlib.sha256(raw).digest()
                ing.refs.append((bid, len(raw)))
                pending.append((bid, raw))
                pending_bytes += len(raw)
                if len(pending) >= LOOKUP_BATCH or pending_bytes >= LOOKUP_BYTES:
                    flush()
                if on_progress:
                    on_progress(len(raw))
            flush()
            bound(hashing, 0)
            bound(writing, 0)
            self._hook("put:pack_written")
            sink.close()
            self._hook("put:pack_closed")
        except BaseException:
            for q in (hashing, writing):
                for f in q:
                    f.cancel()
            writer.shutdown(wait=True)
            sink.abandon()
            raise
        finally:
            hasher.shutdown(wait=True)
            writer.shutdown(wait=True)
        ing.sha256 = file_hash.digest()
        return ing

    def _encode(self, raw) -> tuple[int, bytes]:
        """``(codec, payload)`` for a raw block: zstd only where a probe says it may pay.

        Incompressible data (media, archives, encrypted files) is the common case for a
        drive, so a sample is compressed first and, if it does not save ``min_saving``, the
        block is stored raw without compressing the rest: a 64 KiB head for big blocks (a
        twentieth of the work), three 4 KiB slices (head, middle, tail) for blocks of
        32-256 KiB, so that a compressible region anywhere in the block is still seen.
        Smaller blocks are compressed whole; a probe would cost about as much."""
        n = len(raw)
        if n > PROBE_WHOLE:
            probe = raw[:64 * 1024]
        elif n > 8 * PROBE_SLICE:
            mid = n // 2
            probe = b"".join((raw[:PROBE_SLICE], raw[mid:mid + PROBE_SLICE], raw[n - PROBE_SLICE:]))
        else:
            probe = None
        if probe is not None:
            codec, _ = codecs.encode(probe, self.level, self.min_saving)
            if codec == codecs.RAW:
                return codecs.RAW, raw
        return codecs.encode(raw, self.level, self.min_saving)

    def commit(self, s: Session, ing: Ingested) -> None:
        """Inside the caller's transaction: seal the packs, insert the new blocks (a block a
        concurrent upload inserted first wins; our copy becomes dead bytes in our pack), and
        take one ref per entry of ``ing.refs``."""
        t = now()
        rows = []
        if ing.new_blocks:
            ids = list(ing.new_blocks)
            present = set()
            for i in range(0, len(ids), 500):
                # Locked, so a concurrent sweep cannot remove a row between this check and
                # add_refs below; a row it removed before is absent and ours is inserted.
                present.update(r[0] for r in s.execute(sa.select(Block.id).where(
                    Block.id.in_(ids[i:i + 500])).with_for_update()))
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
            res = s.execute(sa.update(Pack).where(Pack.id == p.id, Pack.state == "open").values(
                state="sealed", size=p.size, live_bytes=live[p.id], checksum=p.checksum, sealed_at=t))
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
            row = s.execute(sa.select(Pack.state, Pack.size).where(Pack.id == pack_id)
                            .with_for_update(read=True)).first()
            end = max(b.offset + packfmt.RECORD_HEADER + b.stored_size
                      for b in ing.new_blocks.values() if b.pack_id == pack_id)
            if row is None or not (row.state == "open" or (row.state == "sealed" and (row.size or 0) >= end)):
                self.shared.forget(pack_id)  # so the retry appends to a new pack
                raise RetryLater(f"pack {pack_id} was reclaimed before this upload committed; retry")
        for pack_id in ing.unused_packs:
            s.execute(sa.update(Pack).where(Pack.id == pack_id, Pack.state == "open").values(state="deleted"))
        if rows:
            # Core, not the ORM's bulk insert: the same statement without its per-row work.
            s.execute(sa.insert(Block.__table__), rows)
        self.add_refs(s, Counter(bid for bid, _ in ing.refs))

    @staticmethod
    def add_refs(s: Session, counts: Counter) -> None:
        """Take ``counts[id]`` refs on each block in one UPDATE per distinct count; taking a
        ref clears any GC mark in the same statement. Fails (so the transaction rolls back)
        if a block vanished."""
        by_n: dict[int, list[bytes]] = {}
        for bid, n in counts.items():
            by_n.setdefault(n, []).append(bid)
        stmt = (sa.update(Block).where(Block.id == sa.bindparam("bid"))
                .values(refcount=Block.refcount + sa.bindparam("n"), gc_marked_at=None)
                .execution_options(synchronize_session=False))
        for n, ids in by_n.items():
            res = s.connection().execute(stmt, [{"bid": b, "n": n} for b in ids])
            if res.rowcount != len(ids):
                raise RetryLater("a referenced block was collected while this upload ran; retry")

    @staticmethod
    def drop_refs(s: Session, counts: Counter) -> None:
        """Release refs. A block reaching zero is left for GC's mark and sweep, never
        deleted here."""
        by_n: dict[int, list[bytes]] = {}
        for bid, n in counts.items():
            by_n.setdefault(n, []).append(bid)
        stmt = (sa.update(Block).where(Block.id == sa.bindparam("bid"))
                .values(refcount=Block.refcount - sa.bindparam("n"))
                .execution_options(synchronize_session=False))
        for n, ids in by_n.items():
            s.connection().execute(stmt, [{"bid": b, "n": n} for b in ids])

    # ---- read path -------------------------------------------------------------------

    def read_blocks(self, locations: Iterable[BlockLocation]) -> Iterator[bytes]:
        """Raw bytes of each block in order, verified. Neighbouring records of one pack are
        fetched with one ranged read."""
        run: list[BlockLocation] = []
        for loc in locations:
            if run and (loc.pack_url != run[-1].pack_url
                        or loc.offset_in_pack != run[-1].offset_in_pack + packfmt.RECORD_HEADER + run[-1].stored_size
                        or loc.offset_in_pack + loc.stored_size - run[0].offset_in_pack > READ_COALESCE):
                yield from self._read_run(run)
                run = []
            run.append(loc)
        if run:
            yield from self._read_run(run)

    def _read_run(self, run: list[BlockLocation]) -> Iterator[bytes]:
        first, last = run[0], run[-1]
        backend, key = self.backend_for(first.pack_url)
        length = last.offset_in_pack + packfmt.RECORD_HEADER + last.stored_size - first.offset_in_pack
        try:
            data = backend.read_range(key, first.offset_in_pack, length)
        except NotFound:
            raise IntegrityError(f"pack {key} is missing (holds block {first.block_id.hex()})",
                                 pack=key, block=first.block_id.hex()) from None
        self.read_tracker.note(first.pack_url)
        view = memoryview(data)
        for loc in run:
            start = loc.offset_in_pack - first.offset_in_pack
            rec = view[start:start + packfmt.RECORD_HEADER + loc.stored_size]
            yield packfmt.decode_block(rec, loc.block_id, f"pack {key} offset {loc.offset_in_pack}")

    def read_block(self, block_id: bytes) -> bytes:
        with self.sm() as s:
            row = s.execute(sa.select(Block.size, Block.stored_size, Pack.url, Block.offset_in_pack)
                            .join(Pack, Pack.id == Block.pack_id).where(Block.id == block_id)).first()
        if row is None:
            raise NotFound(f"block {block_id.hex()} not found")
        return next(self.read_blocks([BlockLocation(block_id, *row)]))
