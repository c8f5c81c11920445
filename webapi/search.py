"""Search by name over the caller's own files and what is shared with them
(:mod:`storage.search`): ``GET /api/v1/search?q=&limit=&cursor=``."""

from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from storage.search import MAX_LIMIT, Search, SearchHit

from .auth import login_required
from .responses import node_json
from .util import drive, int_arg

bp = Blueprint("search", __name__, url_prefix="/api/v1")


def find(user_id: int, q: str | None, limit: int, cursor: str | None) -> tuple[list[SearchHit], str | None]:
    """One page of the caller's search, for the API and the web page alike."""
    return Search(drive()).find(user_id, q or "", limit=limit, cursor=cursor)


def hit_json(hit: SearchHit) -> dict:
    """A node as in every listing, with where it is: ``path`` to show, ``folders`` (id and
    name, from the top the caller may see down to its parent) and ``shared``."""
    return {**node_json(hit.node), "path": hit.path, "shared": hit.shared,
            "folders": [{"id": i, "name": name} for i, name in hit.folders]}


@bp.get("/search")
@login_required
def search():
    hits, cursor = find(g.user.id, request.args.get("q"), int_arg("limit", 50, 1, MAX_LIMIT),
                        request.args.get("cursor"))
    return jsonify(items=[hit_json(h) for h in hits], next_cursor=cursor)
