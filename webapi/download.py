"""Streaming a file version out: ETag, If-None-Match, Range, If-Range; always an attachment."""

from __future__ import annotations

import re
from urllib.parse import quote

from flask import Response, request, stream_with_context
from werkzeug.http import parse_etags, parse_range_header, unquote_etag

from storage.errors import BlockdriveError

from .errors import problem

_DIGITS = re.compile(r"[0-9]+", re.ASCII)
_SUFFIX_ZERO = re.compile(r"[ \t]*bytes[ \t]*=[ \t]*-0+[ \t]*", re.ASCII | re.IGNORECASE)
_HUGE = str(2**63)  # past any file's size: the number is only ever compared with one


def _bounded(header: str) -> str:
    """``header`` with every position past 19 digits written as 2^63. Such a number is a
    position past the end of any file, which is what it means; Werkzeug would refuse to read
    it (Python converts at most 4,300 digits) and so ignore the whole header."""
    return _DIGITS.sub(lambda m: _HUGE if len(m[0].lstrip("0")) > 19 else m[0], header)


def parse_range(header: str | None, size: int):
    """``(start, end)`` (end exclusive) of a single satisfiable byte range of a ``size``-byte
    file; None to send it all (no header, a malformed one, or several ranges); "unsatisfiable"
    for a 416. Werkzeug parses the header; what is satisfiable follows RFC 9110 14.1.1: a
    suffix longer than the file is the whole file, a first position at or past the end (or
    any suffix of an empty file, or a suffix of zero bytes) is unsatisfiable."""
    if not header:
        return None
    rng = parse_range_header(_bounded(header))
    if rng is None:
        # Werkzeug ignores "bytes=-0"; it asks for no bytes at all, which no file can give
        return "unsatisfiable" if _SUFFIX_ZERO.fullmatch(header) else None
    if rng.units != "bytes" or len(rng.ranges) != 1:
        return None
    start, end = rng.ranges[0]
    if start < 0:  # a suffix: the last -start bytes
        return (max(size + start, 0), size) if size else "unsatisfiable"
    if start >= size:
        return "unsatisfiable"
    return start, size if end is None else min(end, size)


def if_range_matches(header: str | None, etag: str) -> bool:
    """Whether a Range may be honoured under ``If-Range``: no header, or the strong ETag of
    this content (a weak one or a date never matches: the bytes could differ)."""
    if header is None:
        return True
    tag, weak = unquote_etag(header.strip())
    return not weak and tag == etag


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
    if parse_etags(request.headers.get("If-None-Match")).contains_weak(etag):
        return Response(status=304, headers=headers)
    rng = parse_range(request.headers.get("Range"), version.size)
    if rng is not None and not if_range_matches(request.headers.get("If-Range"), etag):
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
