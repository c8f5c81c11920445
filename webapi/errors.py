"""Domain errors -> HTTP, in one table. Every error leaves as RFC 9457 problem+json with a
stable ``type``."""

from __future__ import annotations

import logging

from flask import Flask, current_app, jsonify, request
from werkzeug.exceptions import HTTPException, NotFound
from werkzeug.routing import RequestRedirect

from storage import errors as e

log = logging.getLogger("blockdrive.api")

STATUS: list[tuple[type[e.BlockdriveError], int]] = [
    (e.ChecksumMismatch, 460),     # tus checksum extension: "Checksum Mismatch"
    (e.ContentMismatch, 422),
    (e.RateLimited, 429),
    (e.Gone, 410),
    (e.PreconditionFailed, 412),   # before Conflict: it is one
    (e.QuotaExceeded, 413),
    (e.LimitExceeded, 422),        # the request is understood; the tree it would make is not allowed
    (e.SessionLimit, 413),
    (e.InvalidName, 400),
    (e.InvalidInput, 400),
    (e.Unauthorized, 401),
    (e.Forbidden, 403),
    (e.NotFound, 404),
    (e.Conflict, 409),
    (e.IntegrityError, 500),
    (e.BackendUnavailable, 503),
    (e.RetryLater, 503),
    (e.ConfigError, 500),
    (e.BackendError, 502),
]

TYPE_BASE = "https://blockdrive.dev/problems/"


def status_for(exc: e.BlockdriveError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def problem(status: int, code: str, title: str, detail: str = "", **extra):
    body = {"type": TYPE_BASE + code, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    resp = jsonify(body)
    resp.status_code = status
    resp.mimetype = "application/problem+json"
    if status in (503, 429):
        resp.headers["Retry-After"] = str(extra.get("retry_after") or 5)
    if status == 401:
        from .dav.auth import BASIC_PREFIXES, CHALLENGE
        basic = request.path == "/dav" or request.path.startswith(BASIC_PREFIXES)
        resp.headers["WWW-Authenticate"] = CHALLENGE if basic else 'Bearer realm="blockdrive"'
    return resp


def _any_method_matches(methods) -> bool:
    """Whether one of ``methods`` serves this URL. werkzeug answers 405 when another method's
    rule matched the path and this method's rule then refused a value (an id past 2^63-1):
    if no method serves the URL, it is a 404, as the same id is on GET."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    for method in methods:
        try:
            adapter.match(method=method)
        except RequestRedirect:
            return True
        except HTTPException:  # 404 or 405: not this method either
            continue
        return True
    return False


def problem_details(exc: e.BlockdriveError) -> dict:
    """The details of a domain error that go into its problem body: plain values only."""
    return {k: v for k, v in exc.details.items() if isinstance(v, (int, str, float, type(None)))}


def register(app: Flask) -> None:
    @app.errorhandler(e.BlockdriveError)
    def _domain(exc: e.BlockdriveError):
        status = status_for(exc)
        if status >= 500:
            log.error("%s: %s", type(exc).__name__, exc)
        return problem(status, exc.code, type(exc).__name__, exc.message, **problem_details(exc))

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException):
        if exc.code == 405 and exc.valid_methods and not _any_method_matches(exc.valid_methods):
            exc = NotFound()
        resp = problem(exc.code or 500, (exc.name or "error").lower().replace(" ", "-"),
                       exc.name or "Error", exc.description or "")
        if exc.code == 405 and exc.valid_methods:
            resp.headers["Allow"] = ", ".join(exc.valid_methods)
        return resp

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception):
        log.exception("unhandled error")
        return problem(500, "internal-error", "Internal Server Error", "an unexpected error occurred")
