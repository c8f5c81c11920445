import hashlib
import io

import pytest

from storage import codec, pack
from storage.errors import IntegrityError
from tests.conftest import rand


def build(blocks):
    out = io.BytesIO()
    w = pack.PackWriter(out)
    recs = []
    for raw in blocks:
        c, payload = codec.encode(raw)
        recs.append(w.add(hashlib.sha256(raw).digest(), c, len(raw), payload))
    w.finish()
    return out.getvalue(), recs, w.pack_id


def test_round_trip_each_block_by_offset():
    blocks = [rand(5000, 1), b"a" * 100000, b"", rand(70000, 2)]
    data, recs, _ = build(blocks)
    for raw, rec in zip(blocks, recs):
        piece = data[rec.offset:rec.end]
        assert pack.decode_block(piece, hashlib.sha256(raw).digest(), "t") == raw
    assert recs[1].codec == codec.ZSTD and recs[1].stored_size < 1000
    assert recs[0].codec == codec.RAW


def test_footer_index_rebuilds_the_records():
    data, recs, pack_id = build([rand(3000, i) for i in range(10)])
    assert pack.parse_header(data, "t") == pack_id
    entries, icrc, ioff = pack.read_trailer(data[-pack.TRAILER_SIZE:])
    assert entries == 10
    assert pack.parse_index(data[ioff:ioff + entries * pack.INDEX_ENTRY], icrc, "t") == recs


def test_scan_without_footer_finds_complete_records():
    data, recs, _ = build([rand(3000, i) for i in range(5)])
    cut = data[:recs[3].end + 10]  # a crash mid-way through record 4
    assert pack.read_trailer(cut[-pack.TRAILER_SIZE:]) is None
    assert list(pack.scan_records(cut, "t")) == recs[:4]


@pytest.mark.parametrize("where", ["payload", "header-id", "crc"])
def test_corruption_is_detected(where):
    raw = rand(4000, 9)
    bid = hashlib.sha256(raw).digest()
    data, (rec,), _ = build([raw])
    piece = bytearray(data[rec.offset:rec.end])
    pos = {"payload": pack.RECORD_HEADER + 100, "header-id": 5, "crc": 44}[where]
    piece[pos] ^= 0x01
    with pytest.raises(IntegrityError) as err:
        pack.decode_block(bytes(piece), bid, "pack P offset 24")
    assert "pack P" in str(err.value)
    assert bid.hex() in str(err.value)


def test_corrupt_footer_index_detected():
    data, _, _ = build([rand(3000, 1)])
    entries, icrc, ioff = pack.read_trailer(data[-pack.TRAILER_SIZE:])
    index = bytearray(data[ioff:ioff + pack.INDEX_ENTRY])
    index[3] ^= 0xFF
    with pytest.raises(IntegrityError):
        pack.parse_index(bytes(index), icrc, "t")


def test_not_a_pack():
    with pytest.raises(IntegrityError):
        pack.parse_header(b"hello world, this is no pack", "t")


def test_codec_keeps_incompressible_blocks_raw():
    c, stored = codec.encode(rand(100000, 5), min_saving=0.05)
    assert c == codec.RAW
    c, stored = codec.encode(b"abc" * 10000)
    assert c == codec.ZSTD and codec.decode(c, stored, 30000) == b"abc" * 10000
