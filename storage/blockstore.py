"""The block store as the drive uses it: the pack store, the block index and the block
writer put together, with the streaming ingest of a whole file.

- storage/packstore.py: pack files on the backends, read and written with no database;
- storage/blockindex.py: the ``blocks`` rows, the commit of what an ingest wrote, refs;
- storage/blockwriter.py: the one writer every ingest path appends new blocks with;
- storage/reads.py: when packs were last read, noted by the pack store's reads, and how long
  a read may use the locations it looked up.

Write order (DESIGN.md, "data is durable before anything points to it"): the writer
registers an ``open`` pack row, appends the new blocks, and closes the pack (durable); then
the caller's metadata transaction calls :meth:`BlockStore.commit`, which inserts the new
``blocks`` rows, seals the packs and takes every ref, in the same transaction that creates
the version pointing at them.
"""

from __future__ import annotations

import hashlib
import threading
from collections import deque
from contextlib import contextmanager
from concurrent.futures import Future, ThreadPoolExecutor
from typing import BinaryIO, Callable, Iterable, Iterator

from sqlalchemy.orm import Session, sessionmaker

from . import crashpoints
from .backends import Backend
from .blockindex import BlockIndex, Ingested, add_refs, drop_refs
from .blockwriter import BlockWriter
from .chunking import Chunker, Replay, read_up_to
from .errors import QuotaExceeded
from .packstore import BlockLocation, PackStore
from .reads import ReadTracker, locate, read_current
from .sharedpack import SharedPacks

LOOKUP_BATCH = 64  # blocks per known-block query
# Raw bytes the ingests in flight in one block store (one server process) hold between their
# stages, shared equally: one stream alone may hold all of it (storage.ingest_buffer_bytes).
INGEST_BYTES = 16 * 1024 * 1024
LOOKUP_SHARE = 4  # a lookup batch is LOOKUP_BATCH blocks or a quarter of an ingest's share
CUT_AHEAD = 4  # blocks cut beyond those being looked up, for the hashing pool to work on
INLINE_BYTES = 256 * 1024  # a stream shorter than this (and than one chunk) is ingested inline


class BlockStore:
    """``packs`` (a :class:`PackStore`), ``index`` (a :class:`BlockIndex`) and a
    :class:`BlockWriter` per ingest (:meth:`writer`), with the settings they share."""

    def __init__(self, sessionmaker_: sessionmaker[Session], hot: Backend, chunker: Chunker, *,
                 cold: Backend | None = None, compression_level: int = 3,
                 min_compression_saving: float = 0.05, pack_max_bytes: int = 128 * 1024 * 1024,
                 timeout: float = 30, shared_pack_request_bytes: int = 0,
                 shared_pack_target_bytes: int = 64 * 1024 * 1024, shared_pack_idle_seconds: float = 5,
                 shared_pack_max_age_seconds: float = 300, hash_threads: int = 2,
                 read_location_max_seconds: float = 600, ingest_buffer_bytes: int = INGEST_BYTES):
        self.sm, self.chunker = sessionmaker_, chunker
        self.hash_threads = max(0, hash_threads)
        self.ingest_buffer_bytes = ingest_buffer_bytes
        self._ingests = 0  # ingests in flight, which share ingest_buffer_bytes
        self._ingests_lock = threading.Lock()
        self.level, self.min_saving = compression_level, min_compression_saving
        self.pack_max_bytes = pack_max_bytes
        self.read_location_max_seconds = read_location_max_seconds
        self.read_tracker = ReadTracker(sessionmaker_)
        self.packs = PackStore(hot, cold=cold, timeout=timeout, on_read=self.read_tracker.note)
        self.index = BlockIndex(sessionmaker_)
        # Hooks for tests that stop the write path at a named durability boundary.
        self.hooks: dict[str, Callable[[], None]] = {}
        self.shared: SharedPacks | None = None
        if shared_pack_request_bytes > 0 and hot.appends_durably:
            self.shared = SharedPacks(self.packs, self.index, max_request_bytes=shared_pack_request_bytes,
                                      target_bytes=shared_pack_target_bytes, idle_seconds=shared_pack_idle_seconds,
                                      max_age_seconds=shared_pack_max_age_seconds)

    def close(self) -> None:
        """Seal the shared open pack, if this process has one."""
        if self.shared is not None:
            self.shared.seal()

    # ---- the pack store's and the index's names, as the drive and the jobs call them ----

    @property
    def hot(self) -> Backend:
        return self.packs.hot

    @property
    def cold(self) -> Backend | None:
        return self.packs.cold

    pack_key = staticmethod(PackStore.pack_key)
    add_refs = staticmethod(add_refs)
    drop_refs = staticmethod(drop_refs)

    def backend_for(self, url: str) -> tuple[Backend, str]:
        return self.packs.backend_for(url)

    def read_blocks(self, locations: Iterable[BlockLocation]) -> Iterator[bytes]:
        """The blocks at ``locations`` (looked up just before), each read from a location at
        most ``read_location_max_seconds`` old (storage/reads.py)."""
        return read_current(self.packs.read_blocks, lambda ids: locate(self.sm, ids), locations,
                            self.read_location_max_seconds)

    def read_block(self, block_id: bytes) -> bytes:
        return next(self.packs.read_blocks([self.index.location(block_id)]))

    def commit(self, s: Session, ing: Ingested) -> None:
        """Commit what an ingest wrote, in the caller's transaction (BlockIndex.commit)."""
        self.index.commit(s, ing, self.shared.forget if self.shared is not None else None)

    # ---- write path ------------------------------------------------------------------

    def writer(self, ingested: Ingested) -> BlockWriter:
        """A block writer recording into ``ingested``, with this store's settings."""
        return BlockWriter(self.packs, self.index, ingested, shared=self.shared,
                           pack_max_bytes=self.pack_max_bytes, compression_level=self.level,
                           min_compression_saving=self.min_saving)

    def _hook(self, name: str) -> None:
        crashpoints.reach(name)
        fn = self.hooks.get(name)
        if fn is not None:
            fn()

    def ingest(self, stream: BinaryIO, limit: int | None = None,
               on_progress: Callable[[int], None] | None = None,
               owned: Callable[[list[bytes]], set[bytes]] | None = None) -> Ingested:
        """Cut, hash, dedup and store ``stream``. Raises QuotaExceeded as soon as more than
        ``limit`` bytes arrive, having charged nothing.

        With ``owned`` (of some block ids, those the uploader already has), only those may
        skip the write: a block stored by someone else is written again, so the upload takes
        the time a fresh block takes and its timing tells nothing of other users' content.
        Without it every stored block not marked for GC is deduplicated.

        Four stages overlap (FastCDC's cut, hashlib, zstd and file writes all release the
        GIL): this thread reads and cuts; a pool of ``hash_threads`` workers hashes the
        blocks, taken back in stream order and looked up here, and compresses the new ones;
        one worker keeps the whole-file SHA-256; one worker appends the new blocks to the
        pack, in stream order. With ``hash_threads`` 0 this thread hashes and the pack's
        worker compresses. The stages share one budget, :meth:`ingest_share` of raw blocks
        cut and not yet done with (a single bigger block passes alone), so an upload's memory
        stays flat whatever the file size and whichever stage is the slow one, and the
        uploads of a process together hold about ``ingest_buffer_bytes``.

        A stream shorter than ``INLINE_BYTES`` and than one chunk is one block: it is stored
        in this thread, with no pool or hand-off, and its block id is the file's SHA-256 (one
        hash pass). The blocks and ids are the same either way."""
        small = self.inline_bytes
        head = read_up_to(stream, small)
        if len(head) < small:
            return self._ingest_inline(head, limit, on_progress, owned)
        return self._ingest_stream(Replay(head, stream), limit, on_progress, owned)

    @property
    def inline_bytes(self) -> int:
        """A stream shorter than this is one block, stored inline by :meth:`ingest`."""
        return min(INLINE_BYTES, self.chunker.one_block)

    @staticmethod
    def block_id(raw: bytes) -> bytes:
        """The id of the block of raw bytes ``raw``: their SHA-256."""
        return _block_id(raw)

    def _ingest_inline(self, raw: bytes, limit: int | None, on_progress: Callable[[int], None] | None,
                       owned: Callable[[list[bytes]], set[bytes]] | None) -> Ingested:
        ing = Ingested(size=len(raw))
        if limit is not None and ing.size > limit:
            raise QuotaExceeded(used=0, quota=limit, needed=ing.size)
        ing.sha256 = _block_id(raw)
        sink = self.writer(ing)
        with self._writing(sink):
            if raw:
                ing.refs.append((ing.sha256, len(raw)))
                sink.add_chunks([(ing.sha256, raw)], owned)
            if on_progress and raw:
                on_progress(len(raw))
        return ing

    @contextmanager
    def _writing(self, sink, stop: Callable[[], None] = lambda: None) -> Iterator[None]:
        """Around the writes of one ingest to ``sink``: then close it (its packs durable), the
        crash points on either side; on any error, ``stop`` what still writes to it and
        abandon it."""
        try:
            sink.protect_hits()
            yield
            self._hook("put:pack_written")
            sink.close()
            self._hook("put:pack_closed")
        except BaseException:
            stop()
            sink.abandon()
            raise

    def _ingest_stream(self, stream: BinaryIO, limit: int | None, on_progress: Callable[[int], None] | None,
                       owned: Callable[[list[bytes]], set[bytes]] | None) -> Ingested:
        ing = Ingested()
        sink = self.writer(ing)
        file_hash = hashlib.sha256()
        pending: list[tuple[bytes, bytes]] = []  # (block id, raw) awaiting a lookup
        pending_bytes = 0
        hasher = ThreadPoolExecutor(1, thread_name_prefix="bd-sha256")
        workers = (ThreadPoolExecutor(self.hash_threads, thread_name_prefix="bd-ingest")
                   if self.hash_threads else None)
        packer = ThreadPoolExecutor(1, thread_name_prefix="bd-pack")
        cutting: deque = deque()  # (future block id, raw), in stream order
        held = _Held(self.ingest_share)

        def flush() -> None:
            nonlocal pending_bytes
            pending_bytes = 0
            stores = []
            for block_id, raw in sink.unknown(pending, owned):
                encoded = workers.submit(sink.encode, raw) if workers is not None else None
                stores.append(packer.submit(sink.store, block_id, raw, encoded))
            held.looked_up(len(pending), stores)
            pending.clear()

        def hashed(n: int) -> None:
            """Take hashed blocks off the head of ``cutting`` until at most ``n`` remain."""
            nonlocal pending_bytes
            while len(cutting) > n:
                future, raw = cutting.popleft()
                block_id = future.result()
                ing.refs.append((block_id, len(raw)))
                pending.append((block_id, raw))
                pending_bytes += len(raw)
                if len(pending) >= LOOKUP_BATCH or pending_bytes >= self.ingest_share() // LOOKUP_SHARE:
                    flush()

        def make_room() -> None:
            """Move the oldest block held along until the ingest holds no more than its
            budget: wait for its threads' work once it was looked up, look it up if it waits
            in ``pending``, take its hash if it is still in ``cutting``."""
            while held.over():
                if held.looked:
                    held.release_oldest()
                elif pending:
                    flush()
                else:
                    hashed(len(cutting) - 1)

        def stop() -> None:
            held.cancel()
            for f, _ in cutting:
                f.cancel()
            packer.shutdown(wait=True)

        with self._ingests_lock:
            self._ingests += 1
        try:
            with self._writing(sink, stop):
                for view in self.chunker.chunks(stream):
                    raw = bytes(view)  # the chunker reuses its buffer
                    ing.size += len(raw)
                    if limit is not None and ing.size > limit:
                        raise QuotaExceeded(used=0, quota=limit, needed=ing.size)
                    held.add(len(raw), hasher.submit(file_hash.update, raw))
                    if workers is None:
                        digest: Future = Future()
                        digest.set_result(_block_id(raw))
                    else:
                        digest = workers.submit(_block_id, raw)
                    cutting.append((digest, raw))
                    hashed(max(CUT_AHEAD, self.hash_threads))
                    make_room()
                    if on_progress:
                        on_progress(len(raw))
                hashed(0)
                flush()
                held.release_all()
        finally:
            with self._ingests_lock:
                self._ingests -= 1
            hasher.shutdown(wait=True)
            if workers is not None:
                workers.shutdown(wait=True)
            packer.shutdown(wait=True)
        ing.sha256 = file_hash.digest()
        return ing

    def ingest_share(self) -> int:
        """The raw bytes one ingest may hold now: ``ingest_buffer_bytes`` over the ingests in
        flight. A stream alone keeps its stages busy with all of it; many at once hold no
        more between them (each still passes one block bigger than its share)."""
        return self.ingest_buffer_bytes // max(self._ingests, 1)


def _block_id(raw: bytes) -> bytes:
    return hashlib.sha256(raw).digest()


class _Held:
    """The raw bytes one ingest holds, block by block in stream order. A block is held from
    its cut until the whole-file hash has taken it and, once looked up, the pack writes of
    its lookup batch are done (the pack's worker writes in stream order, so a batch is
    released as a whole). ``over`` says the ingest should wait before cutting more."""

    def __init__(self, budget: Callable[[], int]):
        self.budget, self.bytes = budget, 0
        self.blocks: deque[tuple[int, list[Future]]] = deque()  # (raw size, work to wait for)
        self.unlooked = 0  # the newest blocks, in ``pending`` or ``cutting``

    @property
    def looked(self) -> int:
        """Blocks held that were looked up already (the oldest ones)."""
        return len(self.blocks) - self.unlooked

    def add(self, size: int, file_hash: Future) -> None:
        self.blocks.append((size, [file_hash]))
        self.bytes += size
        self.unlooked += 1

    def looked_up(self, n: int, stores: list[Future]) -> None:
        """The oldest ``n`` blocks not looked up yet were; ``stores`` writes the new ones."""
        if n:
            self.blocks[self.looked][1].extend(stores)
            self.unlooked -= n

    def over(self) -> bool:
        return self.bytes > self.budget()

    def release_oldest(self) -> None:
        size, work = self.blocks[0]
        for f in work:
            f.result()  # re-raises a worker's error here
        self.blocks.popleft()
        self.bytes -= size

    def release_all(self) -> None:
        while self.looked:
            self.release_oldest()

    def cancel(self) -> None:
        for _, work in self.blocks:
            for f in work:
                f.cancel()
