from __future__ import annotations

from flask import Blueprint, current_app, jsonify

from storage.servers import Readiness

bp = Blueprint("health", __name__)


@bp.get("/healthz")
def healthz():
    """The process is up (no dependencies checked)."""
    return jsonify(status="ok")


def readiness() -> Readiness:
    """This app's :class:`storage.servers.Readiness`, made on first use."""
    ready = current_app.extensions.get("readiness")
    if ready is None:
        drive = current_app.extensions["drive"]
        ready = Readiness(drive.engine, drive.sm, drive.blocks.hot,
                          float(drive.config["server"]["ready_probe_seconds"]))
        current_app.extensions["readiness"] = ready
    return ready


@bp.get("/readyz")
def readyz():
    """Ready when this server can store an upload: it committed a write to the database (with
    the current schema) and wrote, read back and removed an object on the hot pack backend,
    within the last ``server.ready_probe_seconds``. 503 with the reasons otherwise, so a load
    balancer takes it out of rotation."""
    checks = readiness().check()
    ok = all(v == "ok" for v in checks.values())
    return jsonify(status="ok" if ok else "unavailable", checks=checks), 200 if ok else 503
