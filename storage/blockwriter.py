"""The block writer: the one way new blocks get into packs, used by every ingest path.

A plain PUT (``BlockStore.ingest``), a tus append (``Uploads.append``), a block PUT
(``Uploads.put_block``) and a batch of blocks (``batch.put_blocks``) all do the same: ask
which of their chunks are already stored (:meth:`BlockWriter.unknown`), compress each new one
(:func:`encode`) and append it to a pack (:meth:`BlockWriter.add`), then :meth:`close` to
make the pack durable before their metadata transaction commits the result
(:meth:`storage.blockindex.BlockIndex.commit`), or :meth:`abandon` after a failure.

Write order (DESIGN.md, "data is durable before anything points to it"): the pack's
``open`` row is registered first (:meth:`reserve`, when a lookup first finds a stored block
(:meth:`protect_hits`), or when the first byte is written), so a crash after that leaves a
pack GC can find and reclaim; the pack is closed (fsync / HDFS close / S3 complete) before
anything points at it.

A request whose new blocks are small (at most ``shared.max_request_bytes`` stored) appends
them to the process's shared open pack instead (storage/sharedpack.py): the row and the
durability are that pack's, made durable per group of appends, and the commit checks the
pack is still ``open`` or ``sealed`` instead of sealing it.
"""

from __future__ import annotations

import uuid
from concurrent.futures import Future
from typing import Callable, Iterable, Iterator

from . import codec as codecs
from . import pack as packfmt
from .blockindex import BlockIndex, Ingested, NewBlock, PackInfo
from .packstore import ChecksummedWriter, PackStore
from .sharedpack import SharedPacks

PROBE_WHOLE = 256 * 1024  # blocks above this are probed with their first 64 KiB
PROBE_SLICE = 4 * 1024  # ...blocks above 8 slices with three slices of this size


def encode(raw, level: int, min_saving: float) -> tuple[int, bytes]:
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
        codec, _ = codecs.encode(probe, level, min_saving)
        if codec == codecs.RAW:
            return codecs.RAW, raw
    return codecs.encode(raw, level, min_saving)


class BlockWriter:
    """The pack being written for one ingest, rolling over at ``pack_max_bytes``; what it
    wrote is recorded in ``ingested`` (``new_blocks``, ``packs``, ``shared_packs``).

    While the new blocks fit in the ``shared`` budget they are only held here; at
    :meth:`close` they go to the shared open pack, so a small upload opens no pack file of
    its own. The first block past the budget opens the ingest's own pack and everything held
    is written there first."""

    def __init__(self, packs: PackStore, index: BlockIndex, ingested: Ingested, *,
                 shared: SharedPacks | None = None, pack_max_bytes: int = 128 * 1024 * 1024,
                 compression_level: int = 3, min_compression_saving: float = 0.05):
        self.packs, self.index, self.ingested, self.shared = packs, index, ingested, shared
        self.pack_max_bytes = pack_max_bytes
        self.level, self.min_saving = compression_level, min_compression_saving
        self.writer: packfmt.PackWriter | None = None
        self.out: ChecksummedWriter | None = None
        self.info: PackInfo | None = None
        self.reserved: str | None = None
        self.held: list[tuple[NewBlock, int, object]] = []  # (block, codec, payload)
        self.held_bytes = 0
        self.share = shared is not None
        self.seen: set[bytes] = set()  # block ids already looked up or written by this ingest
        self.guard_hits = False  # see protect_hits
        self.has_row = False  # an ``open`` row of this ingest's own is registered

    def reserve(self) -> None:
        """Register the first pack's ``open`` row before the first known-block lookup: while
        it is open, GC sweeps no block marked after it, so a dedup hit found by this ingest
        cannot be swept before the commit takes its ref (see storage/sweep.py)."""
        self.reserved = uuid.uuid4().hex
        self.index.register_open_pack(self.reserved, self.packs.hot.url_for(self.packs.pack_key(self.reserved)))
        self.has_row = True

    def protect_hits(self) -> None:
        """Reserve the ``open`` row (:meth:`reserve`) only when a lookup first finds a stored
        block, then look those up again: a hit still unmarked once the row exists cannot be
        swept before the commit takes its ref, and one that is not any more is written again.
        An ingest of fresh small blocks (all in the shared pack) so costs no transaction and
        leaves no ``packs`` row of its own."""
        self.guard_hits = True

    def unknown(self, chunks: Iterable[tuple[bytes, bytes]],
                usable: Callable[[list[bytes]], set[bytes]] | None = None) -> Iterator[tuple[bytes, bytes]]:
        """The ``(block_id, raw)`` of ``chunks`` this ingest must write: those it has not seen
        yet and that are not stored already, with one known-block lookup for all of them.
        With ``usable`` (of some block ids, those the caller already has), only those may be
        skipped: a block stored by someone else is written again, so the upload takes the
        time a fresh block takes and its timing tells nothing of other users' content."""
        chunks = list(chunks)
        ask = list({block_id for block_id, _ in chunks if block_id not in self.seen})
        if usable is not None and ask:
            ask = list(usable(ask))
        known = self.index.known_blocks(ask)
        if known and self.guard_hits and not self.has_row:
            self.reserve()
            known = self.index.known_blocks(list(known))
        for block_id, raw in chunks:
            if block_id in self.seen:
                continue
            self.seen.add(block_id)
            if block_id not in known:
                yield block_id, raw

    def encode(self, raw) -> tuple[int, bytes]:
        """``(codec, payload)`` for ``raw`` with this writer's settings (:func:`encode`)."""
        return encode(raw, self.level, self.min_saving)

    def store(self, block_id: bytes, raw, encoded: Future | None = None) -> NewBlock:
        """Compress ``raw`` if it pays and append it as a new block. ``encoded``, if given,
        is the ``(codec, payload)`` of :meth:`encode` being made by another thread."""
        codec, payload = encoded.result() if encoded is not None else self.encode(raw)
        nb = self.ingested.new_blocks[block_id] = self.add(block_id, len(raw), codec, payload)
        return nb

    def add_chunks(self, chunks: Iterable[tuple[bytes, bytes]],
                   usable: Callable[[list[bytes]], set[bytes]] | None = None) -> None:
        """Write every chunk of ``chunks`` that is not stored yet (see :meth:`unknown`)."""
        for block_id, raw in self.unknown(chunks, usable):
            self.store(block_id, raw)

    def add(self, block_id: bytes, raw_size: int, codec: int, payload) -> NewBlock:
        """Append one encoded block. Its place (``pack_id``, ``offset``) is filled in when it
        is written, for a held block at the latest by :meth:`close`, before any commit."""
        nb = NewBlock(block_id, raw_size, len(payload), codec, "", -1)
        if self.share:
            need = packfmt.RECORD_HEADER + len(payload)
            if self.held_bytes + need <= self.shared.max_request_bytes:
                self.held.append((nb, codec, payload))
                self.held_bytes += need
                return nb
            self.share = False  # too big for the shared pack: this ingest writes its own
            held, self.held, self.held_bytes = self.held, [], 0
            for hnb, hcodec, hpayload in held:
                self._write(hnb, hcodec, hpayload)
        self._write(nb, codec, payload)
        return nb

    def _write(self, nb: NewBlock, codec: int, payload) -> None:
        if self.writer is None:
            self._open()
        rec = self.writer.add(nb.block_id, codec, nb.size, payload)
        nb.pack_id, nb.offset, nb.stored_size = self.info.id, rec.offset, rec.stored_size
        self.info.live_bytes += packfmt.RECORD_HEADER + rec.stored_size
        if self.writer.size >= self.pack_max_bytes:
            self._close_own()

    def _open(self) -> None:
        if self.reserved is not None:
            pack_id, self.reserved = self.reserved, None
            url, self.out = self.packs.create(pack_id)
        else:
            pack_id = uuid.uuid4().hex
            self.index.register_open_pack(pack_id, self.packs.hot.url_for(self.packs.pack_key(pack_id)))
            self.has_row = True  # open until the commit seals it: it guards later lookups too
            url, self.out = self.packs.create(pack_id)
        self.info = PackInfo(pack_id, url)
        self.writer = packfmt.PackWriter(self.out, uuid.UUID(pack_id).bytes)

    def close(self) -> None:
        """Make everything added durable: the held blocks in the shared pack, the own pack
        closed with its footer."""
        if self.held:
            held, self.held, self.held_bytes = self.held, [], 0
            pack_id, recs = self.shared.append(
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
        self.info.checksum = self.out.checksum
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
