from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from storage.db import check_ready
from storage.errors import BlockdriveError

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up (no dependencies checked)."""
    return jsonify(status="ok")


@bp.get("/readyz")
def readyz():
    """The database answers with the current schema and the hot backend can be listed."""
    drive = current_app.extensions["drive"]
    checks = {}
    try:
        check_ready(drive.engine)
        checks["database"] = "ok"
    except BlockdriveError as exc:
        checks["database"] = str(exc)
    try:
        next(iter(drive.blocks.hot.list("readyz-probe")), None)
        checks["storage"] = "ok"
    except BlockdriveError as exc:
        checks["storage"] = str(exc)
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
