"""The API's access records: one call per upload or download view into
:mod:`storage.traffic` (see there for what counts and why a failed record never fails the
request)."""

from __future__ import annotations

from flask import Response, request

from storage import traffic

from .util import drive


def uploaded(user_id: int, nbytes: int, versions: int = 1) -> None:
    """``nbytes`` of request body accepted, ``versions`` file versions committed."""
    traffic.record(drive().engine, user_id, uploads=versions, bytes_in=nbytes)


def downloaded(resp: Response, user_id: int) -> Response:
    """Count a GET that sends content (200/206; not HEAD, not 304, not an error) with the
    bytes its Content-Length promises. Returns ``resp``, so a view can wrap its return."""
    if request.method == "GET" and resp.status_code in (200, 206):
        traffic.record(drive().engine, user_id, downloads=1, bytes_out=int(resp.headers.get("Content-Length") or 0))
    return resp
