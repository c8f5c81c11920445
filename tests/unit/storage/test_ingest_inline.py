"""Small streams are ingested inline (one block, no pools): the same refs, hash and stored
block as the chunking pipeline gives, on either side of the threshold and with short reads."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

from storage.blockstore import INLINE_BYTES
from storage.chunking import FixedChunker, Replay, read_up_to
from storage.errors import QuotaExceeded
from tests.conftest import rand


class Trickle(io.RawIOBase):
    """A network-like stream: every read returns at most 1,000 bytes."""

    def __init__(self, data: bytes):
        self.src = io.BytesIO(data)

    def readable(self):
        return True

    def readinto(self, b):
        chunk = self.src.read(min(len(b), 1000))
        b[:len(chunk)] = chunk
        return len(chunk)


def expected(drive, data: bytes) -> list[tuple[bytes, int]]:
    return [(hashlib.sha256(bytes(c)).digest(), len(c)) for c in drive.blocks.chunker.chunks(io.BytesIO(data))]


@pytest.mark.parametrize("size", [0, 1, 4096, INLINE_BYTES - 1, INLINE_BYTES, INLINE_BYTES + 1, 3_000_000])
def test_the_same_blocks_and_hash_on_either_side_of_the_threshold(drive, size):
    data = rand(size, size % 97)
    ing = drive.blocks.ingest(Trickle(data))
    assert ing.refs == expected(drive, data)
    assert ing.sha256 == hashlib.sha256(data).digest() and ing.size == size
    assert set(ing.new_blocks) == {block_id for block_id, _ in ing.refs}


def test_a_small_stream_starts_no_thread(drive, monkeypatch):
    drive.blocks.ingest(io.BytesIO(b"the first starts the shared pack's writer, once per process"))
    started = []
    real = threading.Thread.start
    monkeypatch.setattr(threading.Thread, "start", lambda self: (started.append(self.name), real(self))[1])
    ing = drive.blocks.ingest(io.BytesIO(b"a small file\n"))
    assert ing.refs == [(hashlib.sha256(b"a small file\n").digest(), 13)] and started == []
    drive.blocks.ingest(io.BytesIO(rand(INLINE_BYTES + 10, 5)))
    assert started  # the pipeline's pools


def test_a_small_stream_over_the_limit_charges_nothing(drive):
    with pytest.raises(QuotaExceeded):
        drive.blocks.ingest(io.BytesIO(b"x" * 5000), limit=4999)


def test_a_fixed_chunker_of_small_blocks_keeps_cutting_them(drive):
    drive.blocks.chunker = FixedChunker(1000)
    data = rand(4500, 7)
    assert drive.blocks.ingest(io.BytesIO(data)).refs == expected(drive, data)
    assert len(expected(drive, data)) == 5


def test_read_up_to_and_replay_give_back_every_byte():
    data = rand(10_000, 9)
    src = Trickle(data)
    head = read_up_to(src, 2500)
    assert head == data[:2500]
    again, buf = Replay(head, src), bytearray(3000)
    out = b""
    while n := again.readinto(buf):
        out += bytes(buf[:n])
    assert out == data
