"""Which blocks the block store compresses: zstd whenever it saves ``min_saving``, decided
for most blocks by a cheap probe. Checked against zstandard itself, and read back."""

from __future__ import annotations

import random

import zstandard

from storage import codec
from storage.blockwriter import PROBE_SLICE, PROBE_WHOLE, encode


def saves(raw: bytes) -> bool:
    return len(zstandard.ZstdCompressor(level=3).compress(raw)) <= len(raw) * 0.95


def test_each_size_class_is_compressed_exactly_when_it_pays(drive):
    store = drive.blocks
    rng = random.Random(3)
    text = b"".join(b"line %d of a log file that repeats itself\n" % i for i in range(20000))
    cases = []
    for n in (1000, 8 * PROBE_SLICE, 8 * PROBE_SLICE + 1, 100_000, PROBE_WHOLE, PROBE_WHOLE + 1, 1_000_000):
        cases.append(rng.randbytes(n))                 # incompressible: stored raw
        cases.append(text[:n])                         # compressible: zstd
    # compressible only past the head: the slices probe the middle and the tail as well
    cases.append(rng.randbytes(PROBE_SLICE) + text[:150_000])
    for raw in cases:
        c, payload = encode(raw, store.level, store.min_saving)
        assert c == (codec.ZSTD if saves(raw) else codec.RAW), len(raw)
        assert codec.decode(c, payload, len(raw)) == raw
    assert [encode(x, store.level, store.min_saving)[0] for x in cases[:2]] == [codec.RAW, codec.ZSTD]  # the premise holds


def test_a_block_the_probe_calls_incompressible_is_stored_raw_without_compressing_it(drive, monkeypatch):
    store = drive.blocks
    raw = random.Random(4).randbytes(200_000)
    seen = []
    real = codec.encode

    def spy(data, *a, **kw):
        seen.append(len(data))
        return real(data, *a, **kw)
    monkeypatch.setattr(codec, "encode", spy)
    assert encode(raw, store.level, store.min_saving)[0] == codec.RAW
    assert seen == [3 * PROBE_SLICE]  # the probe only, not the 200 KB block
