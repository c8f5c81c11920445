"""Public links: anyone holding the token reads the linked node (and, for a folder, what is
below it, by ``?node_id=``). A link password travels in the ``X-Link-Password`` header, never
in the URL, so it stays out of logs and browser history.

A browser (``Accept: text/html``) asking for ``/s/<token>`` gets a page instead of JSON
(:mod:`webapi.web.sharing`); a right password given in its form is remembered by the browser
session, so ``/content`` accepts that session as well as the header. A file-drop link takes
new files by ``PUT /s/<token>/files/<name>`` and answers reads with 403."""

from __future__ import annotations

from flask import Blueprint, jsonify, request

from storage.drive import SORTS
from storage.errors import InvalidInput

from . import download, traffic
from .nodes import upload_limit
from .responses import node_json
from .util import BoundedStream, drive, int_arg, iso, sharing
from .web.sharing import link_page, remembered_unlock, wants_html

bp = Blueprint("public", __name__)


def _password():
    return request.headers.get("X-Link-Password")


@bp.get("/s/<token>")
def link_meta(token):
    if wants_html():
        return link_page(token)
    node_id = int_arg("node_id", None, 1)
    # The listing's parameters are checked whatever the link is to: a bad one is a 400 on a
    # file's link too, not silently ignored.
    sort, order = request.args.get("sort", "name"), request.args.get("order", "asc")
    limit = int_arg("limit", 100, 1, 1000)
    if order not in ("asc", "desc"):
        raise InvalidInput("order must be asc or desc")
    if sort not in SORTS:
        raise InvalidInput(f"sort must be one of {', '.join(SORTS)}")
    unlock = remembered_unlock(token)
    link, node = sharing().link_get(token, _password(), node_id, unlock=unlock)
    out = {"node": node_json(node), "link": {"role": link.role, "expires_at": iso(link.expires_at)}}
    if node.kind == "folder":
        items, cursor = sharing().link_children(token, _password(), node.id, unlock=unlock, sort=sort,
                                                desc=order == "desc", limit=limit, cursor=request.args.get("cursor"))
        out["items"] = [node_json(n) for n in items]
        out["next_cursor"] = cursor
    resp = jsonify(out)
    resp.headers["Cache-Control"] = "private, no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    resp.headers["Vary"] = "Accept"
    return resp


@bp.route("/s/<token>/content", methods=["GET", "HEAD"])
def link_content(token):
    info, version, _lazy = sharing().link_open(token, _password(), int_arg("node_id", None, 1),
                                               unlock=remembered_unlock(token))
    d = drive()
    resp = download.send(info, version, lambda a, b: d.stream_version(version.id, a, b),
                         head=request.method == "HEAD")
    resp.headers["Referrer-Policy"] = "no-referrer"
    return traffic.downloaded(resp, info.owner_id)  # a link's traffic is charged to its owner


@bp.put("/s/<token>/files/<name>")
def link_drop(token, name):
    """A file-drop link: add a file. The answer never names the stored file (a renamed drop
    would tell which names the folder already holds)."""
    request.max_content_length = upload_limit()
    res = sharing().link_put(token, _password(), name, BoundedStream(), size_hint=request.content_length,
                             unlock=remembered_unlock(token))
    traffic.uploaded(res.node.owner_id, res.node.size or 0)  # charged to the folder's owner
    resp = jsonify(received=name, size=res.node.size, sha256=res.node.sha256)
    resp.status_code = 201
    resp.headers["Cache-Control"] = "no-store"
    resp.headers["Referrer-Policy"] = "no-referrer"
    return resp
