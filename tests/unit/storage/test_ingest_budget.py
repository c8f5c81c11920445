"""One ingest holds at most ``INGEST_BYTES`` of raw blocks across all its stages (the whole-file
hash, the hashing pool, the lookup batch, the pack's writer), however slow one stage is."""

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


@pytest.mark.parametrize("threads", [0, 2])
def test_a_slow_pack_writer_holds_the_reader_to_the_budget(drive, monkeypatch, threads):
    block = drive.blocks.chunker.max_size
    budget = 4 * block
    monkeypatch.setattr(blockstore, "INGEST_BYTES", budget)
    data = rand(40 * block, 41)
    stream = Watched(data)
    store = BlockWriter.store

    def slow_store(self, block_id, raw, encoded=None):
        done = threading.Event()
        done.wait(0.002)  # a slow disk: without a bound on bytes, the reader runs far ahead
        nb = store(self, block_id, raw, encoded)
        with stream.lock:
            stream.written += len(raw)
        return nb
    monkeypatch.setattr(BlockWriter, "store", slow_store)
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
    monkeypatch.setattr(blockstore, "INGEST_BYTES", 1)
    narrow = drive.blocks.ingest(io.BytesIO(data))
    assert narrow.refs == wide.refs
    assert narrow.sha256 == wide.sha256 == hashlib.sha256(data).digest()
    assert len(narrow.new_blocks) == len(wide.new_blocks) < len(narrow.refs)
