import hashlib
import io

from storage.chunking import FastCDCChunker, FixedChunker, make_chunker
from tests.conftest import rand


def block_ids(chunker, data):
    return [hashlib.sha256(c).digest() for c in chunker.chunks(io.BytesIO(data))]


def test_chunks_reassemble_and_respect_bounds():
    data = rand(8 << 20, seed=1)
    c = FastCDCChunker(256 << 10, 1 << 20, 4 << 20)
    sizes = [len(x) for x in c.chunks(io.BytesIO(data))]
    assert sum(sizes) == len(data)
    assert all(s <= 4 << 20 for s in sizes)
    assert all(s >= 256 << 10 for s in sizes[:-1])
    assert b"".join(bytes(x) for x in FastCDCChunker().chunks(io.BytesIO(data))) == data


def test_one_inserted_byte_in_64_mib_changes_at_most_two_blocks():
    data = rand(64 << 20, seed=2)
    mid = len(data) // 2
    edited = data[:mid] + b"\x00" + data[mid:]
    c = FastCDCChunker()
    before, after = block_ids(c, data), block_ids(c, edited)
    assert len(before) > 40  # 1 MiB-ish blocks
    changed = set(after) - set(before)
    assert 1 <= len(changed) <= 2


def test_fixed_chunker_shifts_everything_after_an_insert():
    data = rand(8 << 20, seed=3)
    edited = data[:100] + b"x" + data[100:]
    c = FixedChunker(1 << 20)
    assert len(set(block_ids(c, edited)) - set(block_ids(c, data))) >= 8


class Trickle(io.RawIOBase):
    """A stream that returns short reads, like a socket."""

    def __init__(self, data, step=1000):
        self.buf, self.pos, self.step = data, 0, step

    def readable(self):
        return True

    def readinto(self, b):
        n = min(len(b), self.step, len(self.buf) - self.pos)
        b[:n] = self.buf[self.pos:self.pos + n]
        self.pos += n
        return n


def test_short_reads_do_not_change_cut_points():
    data = rand(3 << 20, seed=4)
    c = FastCDCChunker(16 << 10, 64 << 10, 256 << 10)
    assert [hashlib.sha256(x).digest() for x in c.chunks(Trickle(data, 777))] == block_ids(c, data)


def test_make_chunker_from_config():
    conf = {"chunker": "fixed", "chunk_min": 1, "chunk_avg": 4096, "chunk_max": 8192}
    assert isinstance(make_chunker(conf), FixedChunker)
    assert isinstance(make_chunker({**conf, "chunker": "fastcdc", "chunk_min": 1024}), FastCDCChunker)


def test_empty_stream_has_no_chunks():
    assert list(FastCDCChunker().chunks(io.BytesIO(b""))) == []
