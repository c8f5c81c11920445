"""The pack store: pack files on the block backends, read and written with no database.

This is what runs where the metadata is out of reach (Spark executors, fsck's file checks,
the compaction and scrub writers, the tiering copy): it knows where a pack lives (its URL on
the hot or cold backend, or on a backend no longer configured), how to read verified blocks
out of packs, and how to write a new pack by copying records. Which blocks exist and where
they live is the block index's business (storage/blockindex.py); when a read is noted for
tiering is the read tracker's (storage/reads.py), handed in as ``on_read``.
"""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import crc32c as _crc32c

from . import pack as packfmt
from .backends import Backend, open_backend
from .errors import BlockdriveError, IntegrityError, NotFound

READ_COALESCE = 16 * 1024 * 1024  # merge adjacent block reads up to this many bytes


def tier_of(url: str) -> str:
    """The tier (``local``, ``hdfs``, ``s3``) a pack URL's scheme stands for."""
    scheme = url.split("://", 1)[0] if "://" in url else "file"
    return {"file": "local", "hdfs": "hdfs", "webhdfs": "hdfs", "s3": "s3"}.get(scheme, scheme)


def pack_key(pack_id: str) -> str:
    """Where pack ``pack_id`` (32 hex digits) lives on a backend."""
    return f"packs/{pack_id[:2]}/{pack_id}.pack"


@dataclass(frozen=True, slots=True)
class BlockLocation:
    """Where one block's record is: enough to read and verify it without the database."""

    block_id: bytes
    size: int
    stored_size: int
    pack_url: str
    offset_in_pack: int


class ChecksummedWriter:
    """A backend stream that keeps the running CRC32C of every byte written (a pack's
    ``checksum``). ``stream`` is the backend stream itself, for ``sync()``."""

    def __init__(self, stream):
        self.stream, self.crc = stream, 0

    def write(self, data) -> int:
        self.crc = _crc32c.crc32c(data, self.crc)
        return self.stream.write(data)

    def close(self) -> None:
        self.stream.close()

    @property
    def checksum(self) -> str:
        return f"{self.crc:08x}"


@dataclass(frozen=True)
class Source:
    """One record to copy: block ``block_id`` at ``offset`` of the pack at ``url``."""

    block_id: bytes
    pack_id: str
    url: str
    offset: int
    stored_size: int
    row_pack: str | None = None  # where the block's row points, if the copy is read elsewhere


@dataclass(frozen=True)
class Move:
    """Block ``block_id`` was copied out of ``from_pack`` to ``offset`` of a new pack."""

    block_id: bytes
    from_pack: str
    offset: int  # of the record in the new pack


class PackStore:
    """Pack files on the hot backend (where new packs go) and the cold one (tiering's)."""

    def __init__(self, hot: Backend, *, cold: Backend | None = None, timeout: float = 30,
                 on_read: Callable[[str], None] | None = None):
        self.hot, self.cold, self.timeout = hot, cold, timeout
        self.on_read = on_read
        self._backends: dict[str, Backend] = {}
        self._lock = threading.Lock()

    pack_key = staticmethod(pack_key)

    def backend_for(self, url: str) -> tuple[Backend, str]:
        """The backend holding the pack at ``url``, and the pack's key on it."""
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

    def create(self, pack_id: str, backend: Backend | None = None) -> tuple[str, ChecksummedWriter]:
        """Start writing pack ``pack_id`` on ``backend`` (the hot one by default): its URL and
        a checksummed stream. The stream's ``close()`` makes the file durable."""
        backend = backend or self.hot
        key = pack_key(pack_id)
        return backend.url_for(key), ChecksummedWriter(backend.create(key))

    # ---- reads -------------------------------------------------------------------------

    def read_blocks(self, locations: Iterable[BlockLocation]) -> Iterator[bytes]:
        """Raw bytes of each block in order, verified. Neighbouring records of one pack are
        fetched with one ranged read."""
        run: list[BlockLocation] = []
        for loc in locations:
            if run and (loc.pack_url != run[-1].pack_url
                        or loc.offset_in_pack != run[-1].offset_in_pack + packfmt.RECORD_HEADER + run[-1].stored_size
                        or loc.offset_in_pack + loc.stored_size - run[0].offset_in_pack > READ_COALESCE):
                yield from self.read_run(run)
                run = []
            run.append(loc)
        if run:
            yield from self.read_run(run)

    def read_run(self, run: list[BlockLocation]) -> Iterator[bytes]:
        """The blocks of ``run`` (adjacent records of one pack, in order), with one read."""
        first, last = run[0], run[-1]
        backend, key = self.backend_for(first.pack_url)
        length = last.offset_in_pack + packfmt.RECORD_HEADER + last.stored_size - first.offset_in_pack
        try:
            data = backend.read_range(key, first.offset_in_pack, length)
        except NotFound:
            raise IntegrityError(f"pack {key} is missing (holds block {first.block_id.hex()})",
                                 pack=key, block=first.block_id.hex()) from None
        if self.on_read is not None:
            self.on_read(first.pack_url)
        view = memoryview(data)
        for loc in run:
            start = loc.offset_in_pack - first.offset_in_pack
            rec = view[start:start + packfmt.RECORD_HEADER + loc.stored_size]
            yield packfmt.decode_block(rec, loc.block_id, f"pack {key} offset {loc.offset_in_pack}")

    # ---- copies (compaction, scrub, recovery of a shared pack, tiering) ----------------

    def write_pack(self, pack_id: str, key: str, sources: Sequence[Source], backend: Backend | None = None,
                   timings: dict | None = None) -> tuple[int, str, list[Move], list[tuple[Source, str]]]:
        """Copy ``sources`` into a new pack ``key`` on ``backend`` (the hot tier by default).
        Returns (size, checksum, moves, bad).

        Records are copied verbatim (header and stored payload, CRC included; nothing is
        decompressed or recompressed), one ranged read per run of nearby records. Each record is
        checked on the way through, in the same pass: its header must name the expected block and
        its payload must match its CRC32C; a record failing either is not copied and is returned
        in ``bad``. The pack's own checksum is computed as it is written, and ``close()`` makes
        it durable before anything points to it. ``timings``, if given, receives the seconds
        spent reading, checking and writing, and closing (fsync)."""
        backend = backend or self.hot
        t_read = t_check = 0.0
        out = ChecksummedWriter(backend.create(key))
        writer = packfmt.PackWriter(out, uuid.UUID(pack_id).bytes)
        moves, bad = [], []
        try:
            by_url: dict[str, list[Source]] = {}
            for src in sources:
                by_url.setdefault(src.url, []).append(src)
            for url, srcs in by_url.items():
                srcs.sort(key=lambda x: x.offset)
                b, k = self.backend_for(url)
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
        return writer.size, out.checksum, moves, bad

    def copy_pack(self, src_url: str, dest: Backend, dest_key: str) -> tuple[int, str]:
        """Copy a whole pack file to ``dest`` and verify the copy by reading it back."""
        b, k = self.backend_for(src_url)
        data = b.read(k)
        crc = packfmt.crc32c(data)
        dest.put(dest_key, data)
        back = dest.read(dest_key)
        if len(back) != len(data) or packfmt.crc32c(back) != crc:
            raise IntegrityError(f"copy of {k} to {dest_key} does not read back intact")
        return len(data), f"{crc:08x}"


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


def write_pack(store: PackStore, pack_id: str, key: str, sources: Sequence[Source], backend: Backend | None = None,
               timings: dict | None = None) -> tuple[int, str, list[Move], list[tuple[Source, str]]]:
    """:meth:`PackStore.write_pack` as a function, for the jobs' ``m.write_pack(store, ...)``."""
    return store.write_pack(pack_id, key, sources, backend, timings)


def copy_pack(store: PackStore, src_url: str, dest: Backend, dest_key: str) -> tuple[int, str]:
    """:meth:`PackStore.copy_pack` as a function, for the jobs' ``m.copy_pack(store, ...)``."""
    return store.copy_pack(src_url, dest, dest_key)
