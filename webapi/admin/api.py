"""The admin reports as JSON, for an admin's bearer token: the latest snapshot, and the
snapshots since a date."""

from __future__ import annotations

import datetime as dt

from flask import Blueprint, jsonify, request

from storage import reports
from storage.errors import InvalidInput, NotFound

from ..util import drive, parse_uint
from .signin import require_admin_api

bp = Blueprint("admin_api", __name__)


@bp.get("/api/v1/admin/reports/latest")
def latest():
    require_admin_api()
    snap = drive().replica_reads.run(reports.latest)
    if snap is None:
        raise NotFound("no report yet: run `blockdrive jobs run report`")
    return jsonify(snap)


@bp.get("/api/v1/admin/reports")
def history():
    require_admin_api()
    limit = parse_uint(request.args.get("limit", "1000"), 10000)
    if not limit:
        raise InvalidInput("limit must be an integer in [1, 10000]")
    since = _since_arg()
    return jsonify(items=drive().replica_reads.run(lambda sm: reports.history(sm, since, limit)))


def _since_arg() -> dt.datetime | None:
    """``?since=`` as a naive UTC datetime (the database's), or None when absent."""
    raw = request.args.get("since")
    if not raw:
        return None
    try:
        t = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("since must be an ISO 8601 date or time, e.g. 2026-01-31 or 2026-01-31T06:00:00Z") from None
    return t.astimezone(dt.UTC).replace(tzinfo=None) if t.tzinfo else t
