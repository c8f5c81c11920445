"""One ingest holds at most its share of ``ingest_buffer_bytes`` of raw blocks across all its
stages (the whole-file hash, the hashing pool, the lookup batch, the pack's writer), however
slow one stage is; the ingests in flight in one store share it equally."""

from __future__ import annotations

import hashlib
import io
import threading

import pytest

import storage.blockstore as blockstore
from storage.blockwriter import BlockWriter
from tests.conftest import rand


class Watched(io.BytesIO):
    """A stream that notes, at each read, how many bytes were read and not yet written to a
    pack (every block of a random stream is new, so each is written once)."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.written = 0
        self.lock = threading.Lock()
        self.most_ahead = 0

    def readinto(self, b) -> int:
        with self.lock:
            self.most_ahead = max(self.most_ahead, self.tell() - self.written)
        return super().readinto(b)


def slow_pack_writes(monkeypatch, stream: Watched) -> None:
    """Each block's pack write takes 2 ms (a slow disk: without a bound on bytes, the reader
    runs far ahead) and is counted in ``stream.written``."""
    store = BlockWriter.store

    def slow_store(self, block_id, raw, encoded=None):
        done = threading.Event()
        done.wait(0.002)  # a slow disk: without a bound on bytes, the reader runs far ahead
        nb = store(self, block_id, raw, encoded)
        with stream.lock:
            stream.written += len(raw)
        return nb
    monkeypatch.setattr(BlockWriter, "store", slow_store)


@pytest.mark.parametrize("threads", [0, 2])
def test_a_slow_pack_writer_holds_the_reader_to_the_budget(drive, monkeypatch, threads):
    block = drive.blocks.chunker.max_size
    budget = 4 * block
    monkeypatch.setattr(drive.blocks, "ingest_buffer_bytes", budget)
    data = rand(40 * block, 41)
    stream = Watched(data)
    slow_pack_writes(monkeypatch, stream)
    drive.blocks.hash_threads = threads
    ing = drive.blocks.ingest(stream)
    assert ing.sha256 == hashlib.sha256(data).digest()
    assert stream.written == len(data)
    # held: the budget, plus the block that went over it; and the chunker's own read-ahead
    assert 0 < stream.most_ahead <= budget + 3 * block


def test_a_budget_smaller_than_a_block_still_ingests_in_order(drive, monkeypatch):
    data = rand(3_000_000, 42) + rand(500_000, 43) * 2
    drive.blocks.hash_threads = 2
    wide = drive.blocks.ingest(io.BytesIO(data))
    monkeypatch.setattr(drive.blocks, "ingest_buffer_bytes", 1)
    narrow = drive.blocks.ingest(io.BytesIO(data))
    assert narrow.refs == wide.refs
    assert narrow.sha256 == wide.sha256 == hashlib.sha256(data).digest()
    assert len(narrow.new_blocks) == len(wide.new_blocks) < len(narrow.refs)


class Paused(io.BytesIO):
    """A stream that, once the ingest has looked at its head to choose the inline path or
    the pipeline, waits for ``go`` before the rest: it is then an ingest in flight."""

    def __init__(self, data: bytes):
        super().__init__(data)
        self.reading, self.go = threading.Event(), threading.Event()

    def readinto(self, b) -> int:
        if self.tell() >= blockstore.INLINE_BYTES:
            self.reading.set()
            self.go.wait(60)
        return super().readinto(b)


def test_ingests_in_flight_share_the_budget(drive, monkeypatch):
    """A stream alone may hold the whole budget; while another ingest is in flight each
    holds half, so the uploads of a process together hold no more than one did."""
    block = drive.blocks.chunker.max_size
    monkeypatch.setattr(drive.blocks, "ingest_buffer_bytes", 8 * block)
    data = rand(40 * block, 44)
    alone = Watched(data)
    slow_pack_writes(monkeypatch, alone)
    drive.blocks.ingest(alone)
    assert alone.most_ahead > 4 * block + 3 * block

    other = Paused(rand(4 * block, 45))
    first = threading.Thread(target=drive.blocks.ingest, args=(other,))
    first.start()
    try:
        assert other.reading.wait(30)
        assert drive.blocks.ingest_share() == 8 * block  # it alone is in flight: all of it
        shared = Watched(data)
        slow_pack_writes(monkeypatch, shared)
        ing = drive.blocks.ingest(shared)
    finally:
        other.go.set()
        first.join(30)
    assert ing.sha256 == hashlib.sha256(data).digest()
    assert 0 < shared.most_ahead <= 4 * block + 3 * block
    assert drive.blocks.ingest_share() == 8 * block  # none in flight
