"""Per-block compression. A block is stored with zstd only when that saves enough to pay for
the decompression on every read; otherwise it is stored raw."""

from __future__ import annotations

import threading

import zstandard

RAW = 0
ZSTD = 1
NAMES = {RAW: "raw", ZSTD: "zstd"}

_local = threading.local()


def _compressor(level: int) -> zstandard.ZstdCompressor:
    c = getattr(_local, "c", None)
    if c is None or _local.level != level:
        c = _local.c = zstandard.ZstdCompressor(level=level)
        _local.level = level
    return c


def _decompressor() -> zstandard.ZstdDecompressor:
    d = getattr(_local, "d", None)
    if d is None:
        d = _local.d = zstandard.ZstdDecompressor()
    return d


def encode(raw, level: int = 3, min_saving: float = 0.05) -> tuple[int, bytes]:
    """Return ``(codec, stored_bytes)`` for a raw block."""
    packed = _compressor(level).compress(raw)
    if len(packed) <= len(raw) * (1.0 - min_saving):
        return ZSTD, packed
    return RAW, bytes(raw)


def decode(codec: int, stored, raw_size: int) -> bytes:
    if codec == RAW:
        return bytes(stored)
    if codec == ZSTD:
        return _decompressor().decompress(stored, max_output_size=raw_size)
    raise ValueError(f"unknown codec {codec}")
