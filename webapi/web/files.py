"""The files pages: a folder's listing."""

from __future__ import annotations

from . import bp
from .pages import login_page, page
from ..util import drive


def folder_page(user, node_id: int):
    d = drive()
    node = d.get(user.id, node_id)
    items, cursor = d.list_children(user.id, node_id, limit=100)
    return page("folder.html", node=node, items=items, next_cursor=cursor)


@bp.get("/f/<id:node_id>")
@login_page
def folder(node_id):
    from flask import g
    return folder_page(g.user, node_id)
