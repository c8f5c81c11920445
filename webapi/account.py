from __future__ import annotations

from flask import Blueprint, g, jsonify

from .auth import login_required
from .util import drive

bp = Blueprint("account", __name__, url_prefix="/api/v1")


def account_json(user) -> dict:
    return {"id": user.id, "email": user.email, "plan": user.plan, "quota_bytes": user.quota_bytes,
            "used_bytes": user.used_bytes, "root_id": user.root_id, "is_admin": user.is_admin}


@bp.get("/account")
@login_required
def account():
    # used_bytes keeps meaning the total charged; "usage" says what holds it, and with
    # pending_bytes adds up to everything the quota counts.
    u = drive().usage(g.user.id)
    return jsonify({**account_json(g.user), "used_bytes": u.used, "pending_bytes": u.pending,
                    "usage": u.as_dict()})
