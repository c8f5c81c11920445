"""Streaming a file version out: ETag, If-None-Match, Range, If-Range; always an attachment."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, request, stream_with_context

from storage.errors import BlockdriveError

from .errors import problem

_RANGE = re.compile(r"^bytes=([0-9]*)-([0-9]*)$", re.ASCII)
_HUGE = 2**63  # past any file's size: the number is only ever compared with one


def _number(digits: str) -> int:
    """A Range position; one too long for ``int()`` (Python limits a conversion to 4,300
    digits) or past 2^63 is a position past the end of any file, which is what it means."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 19 else _HUGE


def _etag_matches(header: str, etag: str) -> bool:
    tags = [t.strip() for t in header.split(",")]
    return "*" in tags or any(t.removeprefix("W/").strip('"') == etag for t in tags)


def parse_range(header: str | None, size: int):
    """``(start, end)`` (end exclusive) of a single satisfiable range; None to send it all
    (no header, a malformed one, or several ranges); "unsatisfiable" for a 416."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if not m or (m[1] == "" and m[2] == ""):
        return None
    if m[1] == "":
        n = _number(m[2])
        if n == 0 or size == 0:
            return "unsatisfiable"
        return max(size - n, 0), size
    start = _number(m[1])
    end = _number(m[2]) + 1 if m[2] else size
    if m[2] and end <= start:
        return None  # last < first: syntactically invalid, so ignored (RFC 9110 14.1.1)
    if start >= size:
        return "unsatisfiable"
    return start, min(end, size)


def disposition(name: str) -> str:
    ascii_name = name.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_").replace("?", "_")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"


def send(info, version, stream_range, head: bool = False) -> Response:
    """``stream_range(start, end)`` yields the version's bytes. Uploaded content is never
    rendered: octet-stream, attachment, nosniff and a sandboxing CSP."""
    etag = version.sha256
    headers = {
        "ETag": f'"{etag}"', "Accept-Ranges": "bytes", "Cache-Control": "private, no-cache",
        "Content-Disposition": disposition(info.name), "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox", "X-Blockdrive-Version": str(version.id),
    }
    inm = request.headers.get("If-None-Match")
    if inm is not None and _etag_matches(inm, etag):
        return Response(status=304, headers=headers)
    rng = parse_range(request.headers.get("Range"), version.size)
    if rng is not None:
        if_range = request.headers.get("If-Range")
        if if_range is not None and if_range.strip().strip('"') != etag:
            rng = None  # the client's copy is stale: send the whole current content
    if rng == "unsatisfiable":
        resp = problem(416, "range-not-satisfiable", "Range Not Satisfiable",
                       f"the file has {version.size} bytes", size=version.size)
        resp.headers["Content-Range"] = f"bytes */{version.size}"
        return resp
    start, end = rng if rng else (0, version.size)
    status = 206 if rng else 200
    if rng:
        headers["Content-Range"] = f"bytes {start}-{end - 1}/{version.size}"
    headers["Content-Length"] = str(end - start)
    if head:
        return Response(status=status, headers=headers, mimetype="application/octet-stream")
    chunks = stream_range(start, end)
    try:
        first = next(chunks, b"")  # a missing pack fails now, as a problem, not mid-body
    except BlockdriveError:
        raise

    def generate():
        yield first
        yield from chunks
    return Response(stream_with_context(generate()), status=status, headers=headers,
                    mimetype="application/octet-stream", direct_passthrough=True)
