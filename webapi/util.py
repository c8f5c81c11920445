"""Small helpers every blueprint uses: services, JSON bodies, node serialisation."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from flask import current_app, request
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import unquote_etag
from werkzeug.routing import BaseConverter, IntegerConverter

from storage.errors import InvalidInput


MAX_ID = 2**63 - 1  # ids and sizes are signed 64-bit in the database
MAX_JSON_DEPTH = 32  # no request body of ours nests deeper; deeper ones only cost recursion

_UINT = re.compile(r"[0-9]{1,19}", re.ASCII)
_INT = re.compile(r"-?[0-9]{1,19}", re.ASCII)


def parse_uint(raw: str | None, hi: int = MAX_ID) -> int | None:
    """``raw`` as a non-negative integer of at most ``hi``, or None. Only ASCII digits:
    ``str.isdigit()`` accepts "²" and ``int()`` accepts "١٢" and 5,000-digit numbers (or
    raises on them), none of which is a number a client means."""
    if raw is None or not _UINT.fullmatch(raw):
        return None
    value = int(raw)
    return value if value <= hi else None


class IdConverter(IntegerConverter):
    """``<id:...>``: a positive id that fits the database; anything else does not match (404).
    ASCII digits only: werkzeug's ``\\d+`` also matches "١٢" (which ``int()`` reads as 12) and
    5,000-digit ids (which ``int()`` refuses with a 500)."""

    regex = "[0-9]{1,19}"

    def __init__(self, url_map):
        super().__init__(url_map, min=1, max=MAX_ID)


class Sha256Converter(BaseConverter):
    """``<hash:...>``: a block id, 64 hex digits. Anything else does not match the rule, so
    ``PUT /blocks/missing`` is the 405 it is (that URL is POST only), not a bad block id."""

    regex = "[0-9a-fA-F]{64}"


def drive():
    return current_app.extensions["drive"]


def sharing():
    return current_app.extensions["sharing"]


def uploads():
    return current_app.extensions["uploads"]


def iso(t) -> str | None:
    """A UTC datetime as ISO 8601 with a Z; None stays None."""
    return t.isoformat() + "Z" if t is not None else None


class BoundedStream:
    """``request.stream``, bounded exactly by ``max_content_length`` when the body comes
    without a Content-Length (chunked). Werkzeug's own bound cannot tell a body that ends
    exactly at the limit from one that goes on: ``read()`` returns the first ``limit`` bytes
    as if they were all (a JSON body cut short was a 400, not a 413), and a read after the
    limit is a 413 even when nothing more was coming."""

    def __init__(self):
        self._stream = request.stream
        self._raw = request.environ["wsgi.input"]
        self._probe = request.content_length is None and request.max_content_length is not None

    def _at_limit(self) -> bool:
        if not (self._probe and getattr(self._stream, "is_exhausted", False)):
            return False
        # One more byte from the connection tells the two apart; reading it is safe, since
        # the request fails if there is one.
        if self._raw.read(1):
            raise RequestEntityTooLarge()
        return True

    def read(self, n: int = -1) -> bytes:
        return b"" if self._at_limit() else self._stream.read(n)

    def readinto(self, b) -> int:
        return 0 if self._at_limit() else self._stream.readinto(b)


def read_body() -> bytes:
    """The whole request body, bounded by ``max_content_length`` (413 past it)."""
    if request.content_length is not None:  # werkzeug refuses an oversized one up front
        return request.get_data(cache=True)
    out = bytearray()
    stream = BoundedStream()
    while True:
        data = stream.read(64 * 1024)
        if not data:
            return bytes(out)
        out += data


def _json_number(text: str) -> int | float:
    """A JSON number written with a fraction or exponent. JSON has one number type, and JSON
    Schema counts ``557.0`` and ``5.57e2`` as integers: such a value is an int here too, so a
    size or id sent that way is not refused as the wrong type. Bounded before conversion, so
    ``1e999999999`` never becomes a huge int."""
    d = Decimal(text)
    if d.is_finite() and d.adjusted() < 20 and d == d.to_integral_value():
        return int(d)
    return float(text)


def _too_deep(data) -> bool:
    """Whether ``data`` nests past MAX_JSON_DEPTH (walked without recursion)."""
    level = [data]
    for _ in range(MAX_JSON_DEPTH):
        level = [v for item in level if isinstance(item, (dict, list))
                 for v in (item.values() if isinstance(item, dict) else item)]
        if not level:
            return False
    return any(isinstance(v, (dict, list)) for v in level)


def json_body():
    """The request's body as decoded JSON (a 400 unless it is JSON, nested at most
    MAX_JSON_DEPTH levels). :func:`webapi.schemas.parse` reads it into a typed object."""
    if not request.is_json:
        raise InvalidInput("send a JSON object with Content-Type: application/json")
    raw = read_body()
    try:
        data = json.loads(raw, parse_float=_json_number)
    except ValueError:
        raise InvalidInput("the body is not valid JSON") from None
    except RecursionError:
        data = None  # nested past the interpreter's limit: refused below as too deep
    if data is None or _too_deep(data):
        raise InvalidInput(f"the body must be a JSON object nested at most {MAX_JSON_DEPTH} levels deep")
    return data


def int_arg(name: str, default: int | None = None, lo: int = 0, hi: int = 2**53) -> int | None:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not _INT.fullmatch(raw):  # ASCII digits only, and no more than a 64-bit value has
        raise InvalidInput(f"query parameter {name!r} must be an integer between {lo} and {hi}")
    value = int(raw)
    if not lo <= value <= hi:
        raise InvalidInput(f"query parameter {name!r} must be between {lo} and {hi}")
    return value


def etag_value(raw: str | None) -> str | None:
    """An If-Match value as the domain expects it: a sha256 or version id, quotes and W/ off."""
    return None if raw is None else unquote_etag(raw.strip())[0] or ""
