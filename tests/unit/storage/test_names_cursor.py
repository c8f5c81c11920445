"""A listing cursor that was not handed out by a listing is refused as invalid input,
whatever it decodes to (an object, a list of the wrong shape, numbers past 64 bits, nesting)."""

from __future__ import annotations

import base64
import json

import pytest

from storage.drive import _decode_cursor, _encode_cursor
from storage.errors import InvalidInput


def enc(value) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


TAMPERED = {
    "object": enc({"sort": "name", "value": "a", "id": 1}),
    "object-of-three": enc({"name": 1, "b": 2, "c": 3}),
    "list-value": enc(["name", ["a"], 1]),
    "dict-value": enc(["size", {"a": 1}, 1]),
    "id-2^70": enc(["name", "a", 2**70]),
    "size-2^70": enc(["size", 2**70, 1]),
    "id-bool": enc(["name", "a", True]),
    "id-float": enc(["name", "a", 1.5]),
    "list-of-two": enc(["name", "a"]),
    "bare-2^70": enc(2**70),
    "nested": enc(b"[" * 100_000 + b"]" * 100_000),
    "surrogate": enc(b'["name", "\\ud800", 1]'),
    "aware-time": enc(["updated", "2024-01-01T00:00:00+02:00", 1]),
    "not-base64": "!!!",
    "not-json": enc(b"\xff\xfe"),
}


@pytest.mark.parametrize("cursor", TAMPERED.values(), ids=TAMPERED.keys())
def test_tampered_cursors_are_invalid_input(cursor):
    for s in ("name", "size", "updated"):
        with pytest.raises(InvalidInput):
            _decode_cursor(cursor, s)


def test_a_listings_own_cursor_round_trips():
    assert _decode_cursor(_encode_cursor("name", "b.txt", 7), "name") == ("b.txt", 7)
    assert _decode_cursor(_encode_cursor("size", -1, 9), "size") == (-1, 9)
    value, node_id = _decode_cursor(_encode_cursor("updated", "2024-01-01T10:00:00", 3), "updated")
    assert (value.hour, node_id) == (10, 3)
