"""The trash page: what the user deleted, with restore, purge (delete for good) and empty
the trash. Emptying asks for a ticked confirmation box, so one click never loses a trash."""

from __future__ import annotations

from flask import flash, g, request, url_for

from storage.errors import InvalidInput

from ..util import drive
from . import bp
from .pages import form_action, login_page, page

PAGE_SIZE = 500


@bp.get("/trash")
@login_page
def trash():
    items = drive().list_trash(g.user.id, limit=PAGE_SIZE + 1)
    return page("trash.html", items=items[:PAGE_SIZE], more=len(items) > PAGE_SIZE)


@bp.post("/trash/<id:node_id>/restore")
@form_action
def restore(node_id):
    node = drive().restore(g.user.id, node_id)
    return url_for("web.folder", node_id=node.parent_id) if node.parent_id else url_for("web.trash")


@bp.post("/trash/<id:node_id>/purge")
@form_action
def purge(node_id):
    drive().purge(g.user.id, node_id)
    return url_for("web.trash")


@bp.post("/trash/empty")
@form_action
def empty_trash():
    if request.form.get("confirm") != "yes":
        raise InvalidInput("tick the box to confirm that everything in the trash is deleted for good")
    d = drive()
    entries, _versions = d.empty_trash(g.user.id)
    if d.list_trash(g.user.id, limit=1):  # a call empties at most a batch: say what is left
        flash(f"{entries} entries deleted for good; empty the trash again for the rest.", "ok")
    return url_for("web.trash")
