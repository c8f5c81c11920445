"""Downloads from the web app: a file (or one of its versions) as the API sends it, and a
folder as a zip streamed while it is written.

The zip is written by :mod:`zipfile` onto a stream that cannot seek, so every entry carries
a data descriptor (its sizes and CRC after its data) and zip64 records when a file needs them;
nothing is spooled: each block read from storage is compressed and sent before the next is
read. Names inside the zip are the tree's names joined with "/"; an empty folder is an entry
of its own, so it survives the round trip.
"""

from __future__ import annotations

import datetime as dt
import zipfile
from typing import Iterator
from flask import Response, g, redirect, stream_with_context, url_for

from storage.errors import InvalidInput

from .. import download, traffic
from ..util import drive, int_arg
from . import bp
from .pages import login_page

LIST_PAGE = 1000
ZIP_EPOCH = dt.datetime(1980, 1, 1)  # the earliest date a zip entry can hold


class _Pipe:
    """A write-only, unseekable file: what is written waits in ``chunks`` until taken."""

    def __init__(self):
        self.chunks: list[bytes] = []

    def write(self, data) -> int:
        self.chunks.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def take(self) -> Iterator[bytes]:
        """What was written since the last call, as one piece (none if nothing was: an
        empty piece would end a chunked response early on some servers)."""
        if self.chunks:
            out, self.chunks = b"".join(self.chunks), []
            yield out


def walk(user_id: int, folder_id: int, prefix: str = "") -> Iterator[tuple[str, object]]:
    """``(path inside the zip, node)`` for everything below ``folder_id``, depth first;
    folders end in "/". Read a listing page at a time."""
    d = drive()
    cursor = None
    while True:
        items, cursor = d.list_children(user_id, folder_id, limit=LIST_PAGE, cursor=cursor)
        for node in items:
            if node.kind == "folder":
                yield f"{prefix}{node.name}/", node
                yield from walk(user_id, node.id, f"{prefix}{node.name}/")
            else:
                yield prefix + node.name, node
        if cursor is None:
            return


def zip_stream(user_id: int, folder_id: int) -> Iterator[bytes]:
    """The bytes of a zip of everything below ``folder_id``, produced as they are written."""
    d = drive()
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path, node in walk(user_id, folder_id):
            when = max(node.mtime or node.updated_at, ZIP_EPOCH).timetuple()[:6]
            info = zipfile.ZipInfo(path, date_time=when)
            if node.kind == "folder":
                info.external_attr = 0o40755 << 16 | 0x10
                zf.writestr(info, b"")
            else:
                info.compress_type = zipfile.ZIP_DEFLATED
                info.external_attr = 0o100644 << 16
                info.file_size = node.size or 0  # lets zipfile choose zip64 up front for a big file
                _info, _version, chunks = d.open(user_id, node.id)
                with zf.open(info, "w") as out:
                    for chunk in chunks:
                        out.write(chunk)
                        yield from pipe.take()
            yield from pipe.take()
    yield from pipe.take()


@bp.get("/download/<id:node_id>")
@login_page
def download_file(node_id):
    """A file's content (``?version=`` for an old one) as an attachment; a folder: its zip."""
    d = drive()
    if d.get(g.user.id, node_id).kind == "folder":
        return redirect(url_for("web.download_zip", node_id=node_id), 303)
    info, version, _lazy = d.open(g.user.id, node_id, version_id=int_arg("version", None, 1))
    resp = download.send(info, version, lambda a, b: d.stream_version(version.id, a, b))
    return traffic.downloaded(resp, g.user.id)


@bp.get("/download/<id:node_id>.zip")
@login_page
def download_zip(node_id):
    node = drive().get(g.user.id, node_id)
    if node.kind != "folder":
        raise InvalidInput(f"node {node_id} is a file; download it as it is")
    name = f"{node.name or 'My files'}.zip"
    headers = {"Content-Disposition": download.disposition(name), "X-Content-Type-Options": "nosniff",
               "Cache-Control": "private, no-store"}
    return Response(stream_with_context(zip_stream(g.user.id, node.id)), mimetype="application/zip",
                    headers=headers, direct_passthrough=True)

