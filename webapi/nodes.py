"""Files and folders: metadata, listings, folders, uploads, downloads, rename/move, copy,
trash, versions, path lookup."""

from __future__ import annotations

from flask import Blueprint, current_app, g, jsonify, request
from werkzeug.http import parse_etags

from storage.errors import InvalidInput

from . import download, traffic
from .auth import login_required
from .schemas import Copy, NewFolder, NodePatch, parse
from .responses import node_json, version_json
from .util import BoundedStream, drive, etag_value, int_arg

bp = Blueprint("nodes", __name__, url_prefix="/api/v1")


def created_response(node, status=201, new_bytes: int | None = None):
    """A node just created or given a new version: its JSON, Location and ETag."""
    resp = jsonify(node_json(node, new_bytes))
    resp.status_code = status
    resp.headers["Location"] = f"/api/v1/nodes/{node.id}"
    if node.etag:
        resp.headers["ETag"] = f'"{node.etag}"'
    return resp


@bp.get("/nodes/<id:node_id>")
@login_required
def get_node(node_id):
    return jsonify(node_json(drive().get(g.user.id, node_id)))


@bp.get("/nodes/<id:node_id>/children")
@login_required
def list_children(node_id):
    sort = request.args.get("sort", "name")
    order = request.args.get("order", "asc")
    if order not in ("asc", "desc"):
        raise InvalidInput("order must be asc or desc")
    items, cursor = drive().list_children(g.user.id, node_id, sort=sort, desc=order == "desc",
                                          limit=int_arg("limit", 100, 1, 1000), cursor=request.args.get("cursor"))
    return jsonify(items=[node_json(n) for n in items], next_cursor=cursor)


@bp.post("/nodes/<id:node_id>/children")
@login_required
def create_folder(node_id):
    data = parse(NewFolder)
    if data.kind not in (None, "folder"):
        raise InvalidInput("only folders are created here; upload files with PUT .../children/{name}")
    return created_response(drive().mkdir(g.user.id, node_id, data.name))


def upload_limit() -> int:
    return current_app.config["BLOCKDRIVE"]["server"]["max_upload_bytes"] or 2**62


@bp.put("/nodes/<id:node_id>/children/<name>")
@login_required
def upload(node_id, name):
    request.max_content_length = upload_limit()
    res = drive().put(g.user.id, node_id, name, BoundedStream(),
                      if_match=etag_value(request.headers.get("If-Match")),
                      if_none_match=parse_etags((request.headers.get("If-None-Match") or "").strip()).star_tag,
                      size_hint=request.content_length, count_traffic=True)
    # Counted against the caller's own blocks only: whether the server already had the
    # bytes from someone else is never told (no dedup oracle).
    return created_response(res.node, 201 if res.created else 200, new_bytes=res.new_to_caller)


@bp.route("/nodes/<id:node_id>/content", methods=["GET", "HEAD"])
@login_required
def content(node_id):
    d = drive()
    info, version, _lazy = d.open(g.user.id, node_id, version_id=int_arg("version", None, 1))
    return traffic.downloaded(download.send(info, version, lambda a, b: d.stream_version(version.id, a, b),
                                            head=request.method == "HEAD"), g.user.id)


@bp.patch("/nodes/<id:node_id>")
@login_required
def patch_node(node_id):
    data = parse(NodePatch)
    return jsonify(node_json(drive().move(g.user.id, node_id, name=data.name, parent_id=data.parent_id)))


@bp.post("/nodes/<id:node_id>/copy")
@login_required
def copy_node(node_id):
    data = parse(Copy)
    return created_response(drive().copy(g.user.id, node_id, data.parent_id, data.name))


@bp.delete("/nodes/<id:node_id>")
@login_required
def delete_node(node_id):
    return jsonify(node_json(drive().delete(g.user.id, node_id)))


@bp.get("/trash")
@login_required
def trash():
    return jsonify(items=[node_json(n) for n in drive().list_trash(g.user.id)])


@bp.delete("/trash/<id:node_id>")
@login_required
def purge(node_id):
    versions = drive().purge(g.user.id, node_id)
    return jsonify(purged=1, versions=versions)


@bp.delete("/trash")
@login_required
def empty_trash():
    # Each entry is purged in its own transaction, at most 1000 per request; "more" tells the
    # client to ask again.
    entries, versions = drive().empty_trash(g.user.id)
    return jsonify(purged=entries, versions=versions, more=bool(drive().list_trash(g.user.id, limit=1)))


@bp.post("/nodes/<id:node_id>/restore")
@login_required
def restore(node_id):
    return jsonify(node_json(drive().restore(g.user.id, node_id)))


@bp.get("/nodes/<id:node_id>/versions")
@login_required
def versions(node_id):
    return jsonify(items=[version_json(v) for v in drive().versions(g.user.id, node_id)])


@bp.delete("/nodes/<id:node_id>/versions/<id:version_id>")
@login_required
def purge_version(node_id, version_id):
    return jsonify(version_id=version_id, freed_bytes=drive().purge_version(g.user.id, node_id, version_id))


@bp.post("/nodes/<id:node_id>/versions/<id:version_id>/restore")
@login_required
def restore_version(node_id, version_id):
    res = drive().restore_version(g.user.id, node_id, version_id)
    return jsonify({**node_json(res.node), "version_id": res.version_id})


@bp.get("/resolve")
@login_required
def resolve():
    path = request.args.get("path")
    if path is None:
        raise InvalidInput("query parameter 'path' is required")
    return jsonify(node_json(drive().resolve(g.user.id, path)))
