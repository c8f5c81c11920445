"""Signing in: email and password for an API token. Failed attempts are limited per email
through the database, so the limit holds across workers."""

from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from .util import body, drive

bp = Blueprint("tokens", __name__, url_prefix="/api/v1")


@bp.post("/auth/tokens")
def create_token():
    data = body({"email": str, "password": str}, required=("email", "password"))
    limiter = current_app.extensions["limiter"]
    key = f"login:{data['email'].strip().lower()[:150]}"
    limiter.attempt(key)  # counted before the check, so parallel guesses cannot outrun it
    token = drive().login(data["email"], data["password"])  # a wrong password keeps the try counted
    limiter.succeed(key)
    resp = jsonify(token=token, token_type="Bearer")
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    return resp
