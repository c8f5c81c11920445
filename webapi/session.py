"""The browser's session: one signed cookie (HttpOnly, SameSite=Lax, Secure behind HTTPS) that
names a server-side session row, and the CSRF token every form and script posts back.

The cookie carries only the digest of a row in ``api_tokens`` (kind ``session``); every request
re-checks that row, so signing out, a password change or an admin disabling the account ends
the session everywhere at once. The web app (``webapi/web``) and the admin dashboard share it,
and the JSON API accepts it too, for the web app's own scripts: a request that changes
anything must then carry the session's CSRF token in ``X-CSRF-Token``, which another site
cannot read (:func:`webapi.auth.current_user`).
"""

from __future__ import annotations

import hmac
import secrets
from urllib.parse import urlsplit

from flask import request, session

from storage.errors import Forbidden

COOKIE_NAME = "blockdrive_session"
SESSION_HOURS = 12
CSRF_HEADER = "X-CSRF-Token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def session_digest() -> bytes | None:
    """The digest of the session row the cookie names, or None."""
    try:
        return bytes.fromhex(session.get("sid") or "") or None
    except (TypeError, ValueError):
        return None


def start(digest: bytes) -> None:
    """Bind the cookie to a freshly opened session row (and a fresh CSRF token: one seen
    before signing in is worth nothing after)."""
    session.clear()
    session.update(sid=digest.hex(), csrf=secrets.token_urlsafe(32))


def csrf_token() -> str:
    """The session's CSRF token, made on first use; every form posts it back."""
    if "csrf" not in session:
        session["csrf"] = secrets.token_urlsafe(32)
    return session["csrf"]


def same_origin() -> bool:
    """False when the browser says the request comes from a page of another site: its
    ``Origin`` (sent with every cross-origin POST) names another host than this request's.
    No Origin (an older browser, a same-origin GET) and the opaque ``null`` (what a page sent
    with ``Referrer-Policy: no-referrer`` posts, as the link pages do) are left to the CSRF
    token."""
    origin = request.headers.get("Origin")
    if origin is None or origin == "null":
        return True
    return urlsplit(origin).netloc.lower() == request.host.lower()


def csrf_ok(sent: str | None) -> bool:
    """Whether ``sent`` is the session's CSRF token and the request is not from another site."""
    want = session.get("csrf", "")
    return bool(want) and hmac.compare_digest(sent or "", want) and same_origin()


def check_csrf() -> None:
    """Raise Forbidden unless the posted form (or the ``X-CSRF-Token`` header) carries the
    session's CSRF token."""
    if not csrf_ok(request.form.get("csrf") or request.headers.get(CSRF_HEADER)):
        raise Forbidden("missing or wrong CSRF token; reload the page")
