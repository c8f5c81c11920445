"""The change feed: ``GET /api/v1/changes/latest`` (a cursor at the end), ``GET
/api/v1/changes?cursor=`` (what changed since, a page at a time) and ``GET
/api/v1/changes/wait?cursor=&timeout=`` (a long-poll, held as :mod:`webapi.longpoll` says).
An expired, foreign or garbled cursor is a 410 whose problem type is ``reset``."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request

from storage.changes import MAX_PAGE, ChangeFeed
from storage.errors import InvalidInput

from .auth import login_required
from .longpoll import Waiters
from .responses import node_json
from .util import int_arg, iso

bp = Blueprint("changes", __name__, url_prefix="/api/v1")


def feed() -> ChangeFeed:
    ext = current_app.extensions
    if "changes" not in ext:
        ext["changes"] = ChangeFeed(ext["drive"].sm)
    return ext["changes"]


def waiters() -> Waiters:
    ext = current_app.extensions
    if "waiters" not in ext:
        cfg = current_app.config["BLOCKDRIVE"]["changes"]
        ext["waiters"] = Waiters(feed(), cfg["wait_poll_seconds"], cfg["max_waiters"])
    return ext["waiters"]


def cursor_arg() -> str:
    cursor = request.args.get("cursor")
    if not cursor:
        raise InvalidInput("query parameter 'cursor' is required (take one from GET /api/v1/changes/latest)")
    return cursor


def entry_json(e) -> dict:
    out = {"kind": e.kind, "node": node_json(e.node)}
    if e.kind == "move":
        out.update(old_parent_id=e.old_parent_id, old_name=e.old_name)
    out["at"] = iso(e.at)
    return out


@bp.get("/changes/latest")
@login_required
def latest():
    return jsonify(cursor=feed().latest(g.user.id))


@bp.get("/changes")
@login_required
def changes():
    page = feed().read(g.user.id, cursor_arg(), limit=int_arg("limit", 500, 1, MAX_PAGE))
    return jsonify(entries=[entry_json(e) for e in page.entries], cursor=page.cursor, has_more=page.has_more)


@bp.get("/changes/wait")
@login_required
def wait():
    most = current_app.config["BLOCKDRIVE"]["changes"]["wait_max_seconds"]
    timeout = min(float(int_arg("timeout", 30, 1, 3600)), most)
    watch = feed().watch(g.user.id, cursor_arg())
    if watch.ready or request.method == "HEAD":  # a HEAD has no answer to wait for
        return jsonify(changes=watch.ready)
    hand_over = getattr(request.environ.get("gunicorn.socket"), "hand_over", None)
    if hand_over is None:
        return jsonify(changes=waiters().wait_here(watch, timeout))
    waiters().park(hand_over, watch, timeout)
    # Written to nowhere: the connection is the waiters' now. Closing it is what makes
    # gunicorn let go of it rather than keep it alive for another request.
    resp = current_app.response_class(status=200)
    resp.headers["Connection"] = "close"
    return resp
