"""Who may see the admin reports: an admin's bearer token, or a dashboard session.

Dashboard sign-in: the admin pastes an API token into ``/admin/login``; the POST carries a
CSRF token bound to the session and opens a server-side session (a row in ``api_tokens`` of
kind ``session``, expiring after ``SESSION_HOURS``). The signed cookie (``webapi.session``:
HttpOnly, SameSite=Lax, Secure behind HTTPS) names that row only; every request re-checks it and
``users.is_admin``. Signing out deletes the row, so a copied cookie dies with it; so does
revoking the pasted token, logging it out, or changing the password. Non-admins get 403. An admin
who signed in to the web app at ``/`` with a password uses the same session here.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from flask import Flask, g, session
from flask.sessions import SecureCookieSessionInterface

from storage import reports
from storage.errors import Forbidden

from ..auth import accounts, current_user, served_over_https
from ..session import COOKIE_NAME, SESSION_HOURS, check_csrf, csrf_token, session_digest, start
from ..util import drive

__all__ = ["COOKIE_NAME", "SESSION_HOURS", "check_csrf", "csrf_token", "init_app", "require_admin_api",
           "secret_key", "session_admin", "sign_in", "sign_out"]


def secret_key(cfg) -> str:
    """``server.secret_key``, or one generated once into ``<home>/secret_key`` (0600) and
    shared by every worker on this host. Behind a load balancer set it in the config."""
    if cfg["server"]["secret_key"]:
        return cfg["server"]["secret_key"]
    path = Path(cfg.home) / "secret_key"
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass
    else:  # first worker to get here writes it; the others read it
        with os.fdopen(fd, "w") as fh:
            fh.write(secrets.token_urlsafe(48))
            fh.flush()
            os.fsync(fh.fileno())
    for _ in range(50):
        key = path.read_text().strip()
        if key:
            return key
        time.sleep(0.01)  # another worker created it a moment ago and is writing
    raise RuntimeError(f"{path} is empty")


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie, marked Secure per request: whether the client came over HTTPS
    is known only from the request (a trusted proxy's X-Forwarded-Proto) or the config."""

    def get_cookie_secure(self, app) -> bool:
        return served_over_https()


def init_app(app: Flask) -> None:
    """The app's secret key and its session cookie (the web app's and the dashboard's).
    SameSite=Lax, not Strict: a link to the drive followed from a mail must arrive signed in;
    every form and every script's change carries the CSRF token besides."""
    app.secret_key = secret_key(app.config["BLOCKDRIVE"])
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax",
                      SESSION_COOKIE_NAME=COOKIE_NAME, SESSION_COOKIE_PATH="/")
    app.session_interface = _SessionInterface()


# ---- who is asking ---------------------------------------------------------------------------

def require_admin_api():
    """The bearer token's user, who must be an admin (else the API's 401 or 403 problem);
    also kept in ``g.user``."""
    user = current_user()
    if not user.is_admin:
        raise Forbidden("admin only")
    g.user = user
    return user


def session_admin():
    """The admin whose live session the cookie names, or None (no cookie, an expired or
    closed session, or a user who is no longer an admin)."""
    digest = session_digest()
    user = accounts().session_user(digest) if digest else None
    return user if user is not None and user.is_admin else None


def sign_in(token: str):
    """Open a session for ``token`` if it is an admin's API token, and return that admin;
    None (and no session) otherwise."""
    token = token.strip()
    digest = hashlib.sha256(token.encode()).digest()
    user = reports.admin_for_token_hash(drive().sm, digest) if token else None
    if user is None:
        return None
    _, token_id = accounts().authenticate(token)
    sid = accounts().open_session(user.id, token_id, SESSION_HOURS)
    start(sid)
    return user


def sign_out() -> None:
    """Close the cookie's session on the server, so a copy of the cookie dies with it."""
    digest = session_digest()
    if digest:
        accounts().close_session(digest)
    session.clear()
