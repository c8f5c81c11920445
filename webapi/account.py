"""The caller's account: who they are, their plan, and what their quota holds."""

from __future__ import annotations

from flask import Blueprint, g, jsonify

from .auth import login_required
from .responses import Account
from .util import drive

bp = Blueprint("account", __name__, url_prefix="/api/v1")


@bp.get("/account")
@login_required
def account():
    return jsonify(Account.of(g.user, drive().usage(g.user.id)).dump())
