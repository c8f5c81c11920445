"""Signing in and out: email and password for an API token (throttled per client address and
account, see :class:`storage.accounts.Accounts`), the caller's tokens, logout and password
change."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from .auth import accounts, client_address, login_required
from .schemas import Credentials, PasswordChange, parse
from .responses import TokenInfo

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")


def no_store(resp, status: int = 200):
    """``resp`` with ``status``, never cached: it carries a secret (a token)."""
    resp.status_code = status
    resp.headers["Cache-Control"] = "no-store"
    return resp


@bp.post("/auth/tokens")
def create_token():
    data = parse(Credentials)
    token = accounts().login(data.email, data.password, client_address(), (data.name or "login")[:100])
    return no_store(jsonify(token=token, token_type="Bearer"), 201)


@bp.get("/auth/tokens")
@login_required
def list_tokens():
    return no_store(jsonify(items=[TokenInfo.of(t).dump() for t in accounts().tokens(g.user.id, g.token_id)]))


@bp.delete("/auth/tokens/<id:token_id>")
@login_required
def revoke_token(token_id):
    accounts().revoke(g.user.id, token_id)
    return "", 204


@bp.post("/auth/logout")
@login_required
def logout():
    """Revoke the calling token (and any admin session opened with it), or close the
    calling browser session."""
    if g.token_id is None:
        from .admin.signin import sign_out
        sign_out()
    else:
        accounts().revoke(g.user.id, g.token_id)
    return "", 204


@bp.post("/account/password")
@login_required
def change_password():
    data = parse(PasswordChange)
    n = accounts().change_password(g.user.id, data.old_password, data.new_password, client_address(),
                                   g.token_id)
    return no_store(jsonify(revoked=n))
