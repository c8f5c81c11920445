"""Cutting byte streams into chunks.

``FastCDCChunker`` is content-defined (FastCDC 2020 through pyfastcdc's Cython core, so the
inner loop is native): inserting a byte moves only the cut points near it, which is what
makes dedup of edited files work. ``FixedChunker`` cuts every N bytes, for comparison.

Both stream: they read the source in bounded pieces and never hold a whole file.
"""

from __future__ import annotations

from typing import BinaryIO, Iterator, Protocol

from pyfastcdc import FastCDC


class Chunker(Protocol):
    max_size: int
    one_block: int  # a stream shorter than this is always exactly one chunk


    def chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        """Yield consecutive chunks of ``stream``. A yielded view is valid only until the
        next one is requested: copy or consume it before iterating on."""


class FastCDCChunker:
    def __init__(self, min_size: int = 256 * 1024, avg_size: int = 1024 * 1024,
                 max_size: int = 4 * 1024 * 1024):
        self.min_size, self.avg_size, self.max_size = min_size, avg_size, max_size
        # pyfastcdc accepts avg in [256, 4 MiB]; min and max are clamped by their own bounds.
        self._cdc = FastCDC(avg_size=min(avg_size, 4 * 1024 * 1024), min_size=min(min_size, 1024 * 1024),
                            max_size=min(max_size, 16 * 1024 * 1024))
        self.one_block = min(min_size, 1024 * 1024)  # FastCDC never cuts before the minimum

    def chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        for chunk in self._cdc.cut_stream(_NoShortReads(stream)):
            yield chunk.data


class FixedChunker:
    def __init__(self, size: int = 1024 * 1024):
        self.max_size = self.one_block = size

    def chunks(self, stream: BinaryIO) -> Iterator[memoryview]:
        reader = _NoShortReads(stream)
        buf = bytearray(self.max_size)
        view = memoryview(buf)
        while True:
            n = reader.readinto(view)
            if not n:
                return
            yield view[:n]


def read_up_to(stream: BinaryIO, n: int) -> bytes:
    """The next ``n`` bytes of ``stream``, fewer only if it ends first (short reads of a
    network stream are read on)."""
    buf = bytearray(n)
    return bytes(memoryview(buf)[:_NoShortReads(stream).readinto(buf)])


class Replay:
    """``head`` followed by the rest of ``stream``, for a reader that looked at the head."""

    def __init__(self, head: bytes, stream: BinaryIO):
        self._head, self._at, self._rest = head, 0, _NoShortReads(stream)

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        if self._at < len(self._head):
            n = min(len(view), len(self._head) - self._at)
            view[:n] = self._head[self._at:self._at + n]
            self._at += n
            return n
        return self._rest.readinto(view)


class _NoShortReads:
    """Fill each ``readinto`` completely unless the source is exhausted.

    Network streams (WSGI input, sockets) return short reads; a chunker that saw a short read
    as the end of data would cut differently depending on packet timing, which breaks dedup.
    """

    def __init__(self, stream):
        self._stream = stream
        self._readinto = getattr(stream, "readinto", None)

    def readinto(self, b) -> int:
        view = memoryview(b).cast("B")
        total = 0
        while total < len(view):
            if self._readinto is not None:
                n = self._readinto(view[total:])
            else:
                data = self._stream.read(len(view) - total)
                n = len(data) if data else 0
                view[total:total + n] = data or b""
            if not n:
                break
            total += n
        return total


def make_chunker(storage_conf: dict) -> Chunker:
    if storage_conf.get("chunker", "fastcdc") == "fixed":
        return FixedChunker(storage_conf["chunk_avg"])
    return FastCDCChunker(storage_conf["chunk_min"], storage_conf["chunk_avg"], storage_conf["chunk_max"])
