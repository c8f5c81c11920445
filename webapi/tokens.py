"""Signing in: email and password for an API token. Failed attempts are limited per email
through the database, so the limit holds across workers."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from storage.errors import Unauthorized

from .util import body, drive

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")


@bp.post("/auth/tokens")
def create_token():
    data = body({"email": str, "password": str}, required=("email", "password"))
    limiter = current_app.extensions["limiter"]
    keys = [f"login:{data['email'].strip().lower()[:150]}"]
    for key in keys:
        limiter.check(key)
    try:
        token = drive().login(data["email"], data["password"])
    except Unauthorized:
        for key in keys:
            limiter.fail(key)
        raise
    limiter.succeed(keys[0])
    resp = jsonify(token=token, token_type="Bearer")
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp
