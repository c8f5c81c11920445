"""Nextcloud's Login Flow v2, the only way its GUI apps (desktop 3.x, Android, iOS) sign in:

1. ``POST /index.php/login/v2``: the app starts a flow and gets a ``login`` URL, which it opens
   in the user's browser, and a ``poll`` endpoint and token, which it keeps (429 past
   ``security.login_flows_per_address`` flows open from one client address).
2. ``GET``/``POST`` of that ``login`` URL: a page of ours asks for the account's email and
   password (saying which app asks) and, once they are right, issues a new API token, the
   app password, signing in exactly as the API's ``POST /api/v1/auth/tokens`` does (the same
   throttling).
3. ``POST /index.php/login/v2/poll`` with ``token``: 404 until the user has signed in, then the
   server's address, the email and the app password, once.

Flows live in the database (:mod:`storage.loginflows`), so every worker and server sees them.

The sign-in form's CSRF token is bound to the flow and to a random cookie set with the page
(SameSite=Strict, scoped to the flow's URLs): a form posted from another site carries neither.
The admin dashboard's session-bound token cannot serve here, as its session cookie is sent
only to ``/admin``.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

from flask import Blueprint, Response, current_app, jsonify, render_template, request

from storage import loginflows
from storage.errors import Forbidden, RateLimited, Unauthorized

from ..admin.pages import html_page
from ..auth import accounts, client_address, from_trusted_proxy, served_over_https
from ..tokens import no_store
from ..util import drive

bp = Blueprint("nextcloud_loginflow", __name__)

FLOW_PATH = "/index.php/login/v2/flow/"
CSRF_COOKIE = "blockdrive_loginflow"
APP_PASSWORD_NAME = "Nextcloud app: {agent}"


def server_base() -> str:
    """This server's address as the client reached it: ``server.public_url`` when set, else
    the request's scheme and host, a proxy's ``X-Forwarded-Proto``/``-Host`` counting only
    when it is one of ``security.trusted_proxies``."""
    public = current_app.config["BLOCKDRIVE"]["server"]["public_url"]
    if public:
        return public.rstrip("/")
    host = request.host
    if from_trusted_proxy():
        host = request.headers.get("X-Forwarded-Host", "").split(",")[0].strip() or host
    # Not request.scheme: gunicorn takes X-Forwarded-Proto from any loopback peer for it.
    scheme = "https" if served_over_https() else "http"
    return f"{scheme}://{host}{request.script_root}"


@bp.post("/index.php/login/v2")
def start():
    sec = current_app.config["BLOCKDRIVE"]["security"]
    agent, address = request.headers.get("User-Agent", ""), client_address()
    flow = drive().tx(lambda s: loginflows.start(s, agent, address, sec["login_flow_seconds"],
                                                 sec["login_flows_per_address"]))
    base = server_base()
    return no_store(jsonify(poll={"token": flow.poll_token, "endpoint": f"{base}/index.php/login/v2/poll"},
                             login=f"{base}{FLOW_PATH}{flow.login_id}"))


@bp.post("/index.php/login/v2/poll")
def poll():
    granted = drive().tx(lambda s: loginflows.take(s, request.form.get("token", "")))
    if granted is None:  # Nextcloud's answer while the user has not signed in yet
        return no_store(jsonify([]), 404)
    return no_store(jsonify(server=server_base(), loginName=granted.login_name, appPassword=granted.app_password))


# ---- the browser's page ----------------------------------------------------------------------

def _csrf_for(login_id: str, nonce: str) -> str:
    msg = f"loginflow\0{login_id}\0{nonce}".encode()
    return hmac.new(current_app.secret_key.encode(), msg, hashlib.sha256).hexdigest()


def _check_csrf(login_id: str) -> None:
    nonce, sent = request.cookies.get(CSRF_COOKIE, ""), request.form.get("csrf", "")
    if not nonce or not hmac.compare_digest(sent, _csrf_for(login_id, nonce)):
        raise Forbidden("missing or wrong CSRF token; reload the form")


def _page(state: str, login_id: str, status: int = 200, **context) -> Response:
    """The page in ``state`` (form, wait, done, gone); a form comes with a fresh CSRF cookie."""
    nonce = secrets.token_urlsafe(32) if state in ("form", "wait") else None
    csrf = _csrf_for(login_id, nonce) if nonce else ""
    resp = html_page(render_template("nextcloud_login.html", state=state, csrf=csrf, **context), status)
    if nonce:
        resp.set_cookie(CSRF_COOKIE, nonce, path=FLOW_PATH + login_id, httponly=True, samesite="Strict",
                        secure=served_over_https())
    return resp


def _pending(login_id: str) -> str | None:
    with drive().sm() as s:
        return loginflows.pending_agent(s, login_id)


@bp.get(FLOW_PATH + "<login_id>")
def login_form(login_id):
    agent = _pending(login_id)
    if agent is None:
        return _page("gone", login_id, 404)
    return _page("form", login_id, agent=agent)


@bp.post(FLOW_PATH + "<login_id>")
def login(login_id):
    _check_csrf(login_id)
    agent = _pending(login_id)
    if agent is None:
        return _page("gone", login_id, 404)
    email = request.form.get("email", "")
    try:
        token = accounts().login(email, request.form.get("password", ""), client_address(),
                                 APP_PASSWORD_NAME.format(agent=agent or "unknown"))
    except Unauthorized:
        # The form again (200, as form posts go); the flow stays pending.
        return _page("form", login_id, agent=agent, email=email, error="Wrong email or password.")
    except RateLimited as e:
        resp = _page("wait", login_id, 429, agent=agent, email=email, retry_after=e.details["retry_after"])
        resp.headers["Retry-After"] = str(e.details["retry_after"])
        return resp
    user, token_id = accounts().authenticate(token)
    if not drive().tx(lambda s: loginflows.grant(s, login_id, user.email, token)):
        accounts().revoke(user.id, token_id)  # the flow expired meanwhile: no one can poll for this token
        return _page("gone", login_id, 404)
    return _page("done", login_id, agent=agent)
