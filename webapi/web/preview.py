"""A file's page (``/preview/<id>``): its name, size and date, download, and a preview where
one is safe.

- Images: a thumbnail made on the server (``/thumb/<id>``, :mod:`webapi.thumbs`), WebP,
  cached by owner and content; an image we cannot make one of shows a generic icon instead.
- Text and code: the first ``web.preview_text_bytes`` of the file in an ``<iframe sandbox>``,
  sent by ``/preview/<id>/content`` as ``text/plain; charset=utf-8`` with
  ``X-Content-Type-Options: nosniff`` and a CSP of ``sandbox; default-src 'none'``: the
  browser never runs or renders anything of it.
- Everything else, PDF included, downloads only: Chromium will not show a PDF in a frame
  sandboxed without scripts, and a PDF viewer running the document's own scripts is what
  the sandbox is there to prevent.

HTML and SVG are never served inline, whatever their name.
"""

from __future__ import annotations

import logging
import posixpath

from flask import Response, current_app, g, redirect, request, url_for
from werkzeug.http import parse_etags

from storage.errors import BlockdriveError, InvalidInput

from .. import thumbs
from ..download import disposition
from ..util import drive
from . import bp
from .pages import login_page, page

log = logging.getLogger(__name__)

IMAGE_TYPES = frozenset({".png", ".jpg", ".jpeg", ".gif", ".webp", ".bmp"})
TEXT_TYPES = frozenset({
    ".txt", ".text", ".md", ".markdown", ".csv", ".tsv", ".json", ".log", ".ini", ".cfg", ".conf", ".toml",
    ".yaml", ".yml", ".py", ".js", ".mjs", ".ts", ".css", ".c", ".h", ".cc", ".cpp", ".hpp", ".java", ".go",
    ".rs", ".rb", ".php", ".pl", ".sh", ".bash", ".sql", ".kt", ".swift", ".r", ".lua", ".tex", ".diff",
    ".patch", ".rst", ".env", ".gitignore", ".properties",
})
# What a preview frame's content may do: nothing but show itself (its own styles, no script,
# no network, no forms, no plugins, a unique origin).
FRAME_CSP = "sandbox; default-src 'none'; style-src 'unsafe-inline'"


def preview_kind(name: str) -> str | None:
    """``"image"``, ``"text"`` or None (download only), from a file's name."""
    base = name.lower()
    ext = posixpath.splitext(base)[1] or (base if base.startswith(".") else "")
    if ext in IMAGE_TYPES:
        return "image"
    if ext in TEXT_TYPES:
        return "text"
    return None


def _file(node_id: int):
    node = drive().get(g.user.id, node_id)
    if node.kind != "file":
        raise InvalidInput(f"node {node_id} is a folder")
    return node


def _link(endpoint: str, node_id: int) -> str | None:
    """A link to another page of the app about this file, if that page exists."""
    if endpoint not in current_app.view_functions:
        return None
    return url_for(endpoint, node_id=node_id)


@bp.get("/preview/<id:node_id>")
@login_page
def preview(node_id):
    node = drive().get(g.user.id, node_id)
    if node.kind != "file":
        return redirect(url_for("web.folder", node_id=node_id), 303)
    return page("preview.html", node=node, kind=preview_kind(node.name),
                download=_link("web.download_file", node_id) or url_for("nodes.content", node_id=node_id),
                versions=_link("web.versions", node_id), share=_link("web.share", node_id),
                parent=url_for("web.folder", node_id=node.parent_id) if node.owner_id == g.user.id else None)


@bp.get("/thumb/<id:node_id>")
@login_page
def thumbnail(node_id):
    """The thumbnail of an image file, or the generic icon when there is none."""
    node = _file(node_id)
    icon = redirect(url_for("static", filename="web/image.svg"), 303)
    if preview_kind(node.name) != "image" or not node.sha256:
        return icon
    etag = f"{node.sha256}-t"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "private, max-age=3600",
               "X-Content-Type-Options": "nosniff", "Content-Security-Policy": "default-src 'none'"}
    if parse_etags(request.headers.get("If-None-Match")).contains(etag):
        return Response(status=304, headers=headers)
    limits = thumbs.Limits.of(current_app.config["BLOCKDRIVE"])
    if (node.size or 0) > limits.max_bytes:
        return icon
    # per owner: a shared cache would tell by its speed whether anyone else has the same image
    cache = thumbs.ThumbCache(drive().config.home / "thumbs" / str(node.owner_id))

    def read() -> bytes:
        _info, _version, chunks = drive().open(g.user.id, node_id)
        return b"".join(chunks)
    try:
        thumb = thumbs.thumbnail(cache, node.sha256, read, limits)
    except (BlockdriveError, OSError, thumbs.Busy) as exc:
        # The page around the image must not break: the icon now, a new try next time
        # (nothing was cached).
        log.warning("no thumbnail for node %s: %s", node_id, exc)
        return icon
    if thumb is None:
        return icon
    return Response(thumb, mimetype=thumbs.MEDIA_TYPE, headers=headers)


@bp.get("/preview/<id:node_id>/content")
@login_page
def preview_content(node_id):
    """The start of a text file for the preview frame: plain text, sandboxed, never sniffed."""
    node = _file(node_id)
    headers = {"Content-Security-Policy": FRAME_CSP, "X-Content-Type-Options": "nosniff",
               "Cache-Control": "private, no-cache", "X-Frame-Options": "SAMEORIGIN"}
    if preview_kind(node.name) != "text":
        return Response("This file has no text preview; download it.\n", status=404,
                        content_type="text/plain; charset=utf-8", headers=headers)
    cap = int(current_app.config["BLOCKDRIVE"]["web"]["preview_text_bytes"])
    _info, _version, chunks = drive().open(g.user.id, node_id, end=cap)
    headers["Content-Disposition"] = disposition(node.name).replace("attachment", "inline", 1)
    return Response(b"".join(chunks), content_type="text/plain; charset=utf-8", headers=headers)
