"""Bearer-token authentication, and who the client is behind a reverse proxy."""

from __future__ import annotations

import functools
import ipaddress

from flask import current_app, g, request

from storage.accounts import Accounts
from storage.errors import Forbidden, Unauthorized

from . import session as browser


def accounts() -> Accounts:
    ext = current_app.extensions
    if "accounts" not in ext:  # one per app: its throttle and the drive's hasher are shared by threads
        ext["accounts"] = Accounts(ext["drive"])
    return ext["accounts"]


def current_user():
    """The caller's user; also sets ``g.token_id`` (the token the request came with, None for
    a browser session). A bearer token, or else the web app's session cookie; with the
    cookie, a request that changes anything must carry the session's CSRF token in
    ``X-CSRF-Token`` (another site's page can send the cookie, never that header)."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        user, g.token_id = accounts().authenticate(token.strip())
        return user
    digest = None if header else browser.session_digest()
    user = accounts().session_user(digest) if digest else None
    if user is None:
        raise Unauthorized("send an API token: Authorization: Bearer <token>")
    if request.method not in browser.SAFE_METHODS and not browser.csrf_ok(request.headers.get(browser.CSRF_HEADER)):
        raise Forbidden(f"a browser session's request must carry its CSRF token in {browser.CSRF_HEADER}")
    g.token_id = None
    return user


def login_required(view):
    @functools.wraps(view)
    def wrapped(*args, **kwargs):
        g.user = current_user()
        return view(*args, **kwargs)
    return wrapped


def _trusted_networks():
    ext = current_app.extensions
    if "trusted_proxies" not in ext:
        raw = current_app.config["BLOCKDRIVE"]["security"]["trusted_proxies"]
        ext["trusted_proxies"] = [ipaddress.ip_network(part.strip(), strict=False)
                                  for part in raw.split(",") if part.strip()]
    return ext["trusted_proxies"]


def _trusted(addr: str | None) -> bool:
    try:
        ip = ipaddress.ip_address((addr or "").strip())
    except ValueError:
        return False
    return any(ip in net for net in _trusted_networks())


def from_trusted_proxy() -> bool:
    return _trusted(request.remote_addr)


def client_address() -> str:
    """The client's address: the peer's, or, only when the peer is a configured trusted proxy
    (``security.trusted_proxies``), the nearest address in ``X-Forwarded-For`` that is not a
    trusted proxy. A client can write anything into that header, so it counts only as far as
    our own proxies vouch for it (read from the right, where they append)."""
    addr = request.remote_addr or "unknown"
    if not _trusted(addr):
        return addr
    hops = [h.strip() for h in request.headers.get("X-Forwarded-For", "").split(",") if h.strip()]
    for hop in reversed(hops):
        try:
            ipaddress.ip_address(hop)
        except ValueError:
            return addr  # a garbled header: the proxy is the client as far as we can tell
        if not _trusted(hop):
            return hop
    return hops[0] if hops else addr


def served_over_https() -> bool:
    """``security.https``, or a trusted proxy saying the client came over HTTPS."""
    if current_app.config["BLOCKDRIVE"]["security"]["https"]:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return proto == "https" and from_trusted_proxy()
