"""The files pages: a folder's listing (breadcrumbs, sorting, paging, selection), the forms
that change the tree (new folder, rename, move and copy through a folder picker, delete to
the trash) and a file's versions with restore.

Every change goes through :class:`storage.drive.Drive` as the signed-in user, exactly as the
JSON API does; a refused one comes back as a message on the page (see ``form_action``).
A listing is one page of ``Drive.list_children`` (100 entries, resumed from its cursor), so a
folder of any size costs the same to show.
"""

from __future__ import annotations


from flask import current_app, g, redirect, request, url_for

from storage.errors import BlockdriveError, InvalidInput

from ..util import drive, parse_uint
from . import bp
from .pages import form_action, login_page, page, safe_next, shows_errors
from .preview import preview_kind

PAGE_SIZE = 100
PICKER_PAGES = 5
SORTS = {"name": "Name", "size": "Size", "updated": "Modified"}


def has_endpoint(name: str) -> bool:
    return name in current_app.view_functions


def breadcrumbs(user, node) -> list[tuple[int, str]]:
    """``(id, name)`` of the folders from the top the user can see down to ``node``; the
    user's own root is "My files". Folders above a share the user holds are left out."""
    d = drive()
    crumbs = []
    for aid in [*map(int, filter(None, (node.path or "").split("/"))), node.id]:
        if aid == user.root_id:
            crumbs.append((aid, "My files"))
            continue
        try:
            crumbs.append((aid, d.get(user.id, aid).name))
        except BlockdriveError:
            continue  # above what is shared with the user: not theirs to see
    return crumbs


def listing_args() -> tuple[str, bool, str | None]:
    """The listing's sort key, descending or not, and the cursor, from the query string."""
    sort = request.args.get("sort", "name")
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidInput("order must be asc or desc")
    return sort, order == "desc", request.args.get("cursor") or None


def is_image(name: str) -> bool:
    return preview_kind(name) == "image"


@shows_errors
def folder_page(user, node_id: int):
    """The listing of folder ``node_id`` as ``user`` sees it (a file: its download)."""
    d = drive()
    node = d.get(user.id, node_id)
    if node.kind != "folder":
        return redirect(url_for("web.download_file", node_id=node.id), 303)
    sort, desc, cursor = listing_args()
    items, next_cursor = d.list_children(user.id, node_id, sort=sort, desc=desc, limit=PAGE_SIZE, cursor=cursor)
    return page("folder.html", node=node, items=items, next_cursor=next_cursor, crumbs=breadcrumbs(user, node),
                sort=sort, desc=desc, sorts=SORTS, paged=cursor is not None,
                can_edit=node.role in ("owner", "editor"), is_image=is_image,
                has_preview=has_endpoint("web.preview"), has_thumbnail=has_endpoint("web.thumbnail"),
                has_share=has_endpoint("web.share"))


@bp.get("/f/<id:node_id>")
@login_page
def folder(node_id):
    return folder_page(g.user, node_id)


def form_ids() -> list[int]:
    """The node ids a form posted in its ``ids`` fields (the selection)."""
    ids = [parse_uint(raw) for raw in request.form.getlist("ids")]
    if not ids or not all(ids):
        raise InvalidInput("select at least one item")
    return ids


def form_name() -> str:
    return (request.form.get("name") or "").strip()


@bp.post("/f/<id:node_id>/folders")
@form_action
def new_folder(node_id):
    created = drive().mkdir(g.user.id, node_id, form_name())
    return url_for("web.folder", node_id=created.id)


@bp.post("/n/<id:node_id>/rename")
@form_action
def rename(node_id):
    drive().move(g.user.id, node_id, name=form_name())
    return None  # back to the listing the form came from


@bp.post("/n/<id:node_id>/delete")
@form_action
def delete(node_id):
    drive().delete(g.user.id, node_id)
    return None


@bp.post("/selection")
@form_action
def selection():
    """The listing's selection form: delete the selected items, or pick where to move or
    copy them."""
    ids, action = form_ids(), request.form.get("action")
    if action == "delete":
        for node_id in ids:
            drive().delete(g.user.id, node_id)
        return None
    if action in ("move", "copy"):
        return url_for("web.move_page", op=action, ids=ids, at=request.form.get("at"),
                       next=request.form.get("next"))
    raise InvalidInput("choose delete, move or copy")


@bp.get("/move")
@login_page
def move_page():
    """The folder picker: browse the user's folders (``at``) and move or copy ``ids`` there."""
    op = request.args.get("op", "move")
    if op not in ("move", "copy"):
        raise InvalidInput("op must be move or copy")
    ids = [parse_uint(raw) for raw in request.args.getlist("ids")]
    if not ids or not all(ids):
        raise InvalidInput("select at least one item")
    d = drive()
    picked = [d.get(g.user.id, node_id) for node_id in ids]
    at = d.get(g.user.id, parse_uint(request.args.get("at") or "") or g.user.root_id)
    if at.kind != "folder":
        raise InvalidInput(f"node {at.id} is not a folder")
    folders, next_cursor = [], request.args.get("cursor") or None
    # the picker shows folders only: read listing pages until a screenful is found, at most
    # PICKER_PAGES of them (a folder of files alone costs no more than that per page)
    for _ in range(PICKER_PAGES):
        items, next_cursor = d.list_children(g.user.id, at.id, limit=1000, cursor=next_cursor)
        folders += [n for n in items if n.kind == "folder" and n.id not in ids]
        if next_cursor is None or len(folders) >= PAGE_SIZE:
            break
    return page("move.html", op=op, picked=picked, at=at, folders=folders, next_cursor=next_cursor,
                crumbs=breadcrumbs(g.user, at),
                back=safe_next(request.args.get("next"), url_for("web.folder", node_id=at.id)))


@bp.post("/move")
@form_action
def move():
    """Move or copy the selected ids into ``dest``; then show ``dest``."""
    dest = parse_uint(request.form.get("dest") or "")
    if not dest:
        raise InvalidInput("choose a folder")
    d = drive()
    for node_id in form_ids():
        if request.form.get("op") == "copy":
            d.copy(g.user.id, node_id, dest)
        else:
            d.move(g.user.id, node_id, parent_id=dest)
    return url_for("web.folder", node_id=dest)


@bp.get("/versions/<id:node_id>")
@login_page
def versions(node_id):
    d = drive()
    node = d.get(g.user.id, node_id)
    return page("versions.html", node=node, versions=d.versions(g.user.id, node_id),
                can_edit=node.role in ("owner", "editor"))


@bp.post("/versions/<id:node_id>/<id:version_id>/restore")
@form_action
def restore_version(node_id, version_id):
    drive().restore_version(g.user.id, node_id, version_id)
    return url_for("web.versions", node_id=node_id)
