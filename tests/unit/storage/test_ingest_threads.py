"""One stream's ingest with its blocks hashed by a pool: the same blocks, in the same order,
in the same pack bytes, as with the blocks hashed in the reading thread."""

from __future__ import annotations

import hashlib
import io

import pytest

from storage.errors import QuotaExceeded
from tests.conftest import rand


def a_stream() -> bytes:
    """Random blocks, a stretch that repeats (deduplicated within the stream) and text that
    compresses: every branch of the ingest loop, over more than one lookup batch."""
    again = rand(700_000, 31)
    text = b"".join(b"line %d of a text that zstd shrinks well\n" % i for i in range(60_000))
    return rand(3_000_000, 32) + again + text + again + rand(2_500_000, 33)


def ingest_with(drive, threads: int, data: bytes):
    drive.blocks.hash_threads = threads
    ing = drive.blocks.ingest(io.BytesIO(data))
    packs = []
    for info in ing.packs:
        backend, key = drive.blocks.backend_for(info.url)
        packs.append(backend.read(key))
    return ing, b"".join(packs)


def placed(ing) -> list[tuple]:
    return [(nb.block_id, nb.size, nb.stored_size, nb.codec, nb.offset) for nb in ing.new_blocks.values()]


@pytest.mark.parametrize("threads", [1, 2, 3])
def test_a_hashing_pool_gives_the_serial_result_byte_for_byte(drive, threads):
    data = a_stream()
    serial, serial_pack = ingest_with(drive, 0, data)
    pooled, pooled_pack = ingest_with(drive, threads, data)
    assert len(serial.refs) > 64  # more than one lookup batch
    assert len(serial.new_blocks) < len(serial.refs)  # the repeated stretch was deduplicated
    assert pooled.refs == serial.refs
    assert pooled.sha256 == serial.sha256 == hashlib.sha256(data).digest()
    assert pooled.size == serial.size == len(data)
    assert placed(pooled) == placed(serial)
    assert [info.size for info in pooled.packs] == [info.size for info in serial.packs]
    # the packs differ only in the pack id each one carries
    ids = [(s.id, p.id) for s, p in zip(serial.packs, pooled.packs)]
    for s_id, p_id in ids:
        pooled_pack = pooled_pack.replace(bytes.fromhex(p_id), bytes.fromhex(s_id))
    assert pooled_pack == serial_pack


def test_quota_is_checked_as_bytes_arrive_with_a_hashing_pool(drive):
    drive.blocks.hash_threads = 2
    with pytest.raises(QuotaExceeded):
        drive.blocks.ingest(io.BytesIO(rand(2_000_000, 34)), limit=1_000_000)
