"""The wire protocol module both sides read: its frame layout, and that client and server use it."""

import hashlib

import client.api
import storage.batch
import storage.uploads
from storage import wire


def test_a_frame_is_the_raw_block_id_then_a_big_endian_length():
    bid = hashlib.sha256(b"hello").digest()
    assert wire.FRAME.pack(bid, 5) == bid + b"\x00\x00\x00\x05"
    assert wire.FRAME.size == 36


def test_client_and_server_frame_and_limit_blocks_with_the_same_definitions():
    assert client.api.FRAME is wire.FRAME is storage.batch.FRAME
    assert client.api.MISSING_PER_CALL == wire.MAX_HASHES == storage.uploads.MAX_HASHES


def test_the_announced_chunking_turns_back_into_the_servers_settings():
    conf = {"chunker": "fastcdc", "chunk_min": 16384, "chunk_avg": 65536, "chunk_max": 262144}
    params = wire.chunking_params(conf)
    assert params == {"chunker": "fastcdc", "min": 16384, "avg": 65536, "max": 262144}
    assert wire.chunker_conf(params) == conf
