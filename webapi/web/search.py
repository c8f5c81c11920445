"""``/search``: find files and folders by name among the user's own and what is shared with
them (:mod:`webapi.search`), each result linking to the folder it is in and to itself."""

from __future__ import annotations

from flask import g, request

from storage.errors import InvalidInput

from ..search import find
from . import bp
from .pages import login_page, page

PAGE_SIZE = 50


@bp.get("/search")
@login_page
def search():
    q = request.args.get("q", "")
    hits, cursor, error = [], None, None
    if q.strip():
        try:
            hits, cursor = find(g.user.id, q, PAGE_SIZE, request.args.get("cursor"))
        except InvalidInput as exc:
            error = str(exc)
    return page("search.html", status=400 if error else 200, q=q, hits=hits, next_cursor=cursor, error=error)
