"""Nextcloud's chunked upload (``/remote.php/dav/uploads/{user}/{transfer-id}``), on the
resumable upload sessions tus uses: the upload's length is reserved in the quota when it
opens, each chunk is cut into blocks and stored as it streams in, and nothing becomes a file
until the client moves ``.file`` to its destination.

- ``MKCOL`` opens the upload: ``OC-Total-Length`` (required: the reservation) and, from
  chunking v2 clients, ``Destination`` (the file it will become; checked now: the folder, the
  caller's right to write there, the owner's quota). Older clients name no destination until
  the end; their upload is checked against the caller's own quota and root folder.
- ``PUT .../{n}`` appends chunk ``n`` (0 to 10000: chunking v2 numbers from 1, earlier
  clients from 0). Chunks arrive in increasing order: the session streams them into blocks
  and cannot reorder, so a chunk numbered at or below one already received (out of order, or
  sent again) is a 409, and the client resumes from the listing. A chunk whose body ends
  before its ``Content-Length`` keeps nothing.
- ``PROPFIND`` (Depth 0 or 1) lists the chunks received with their sizes, which is how
  clients resume (named by their numbers in five digits: clients read the number).
- ``MOVE .../.file`` with ``Destination`` commits the file there (a new file, 201, or a new
  version, 204), honouring ``If-Match`` and the ``If`` header Nextcloud clients send in its
  place, an ``OC-Checksum`` of type SHA256, and ``X-OC-Mtime`` (the file's modification time,
  answered ``X-OC-MTime: accepted``); answers ``OC-FileId``, ``OC-ETag``, ``ETag``.
- ``DELETE`` of the upload aborts it and frees its reservation; a single chunk cannot be
  deleted (its bytes are already part of the upload's blocks).

A session unknown, expired or another user's is a 404. Errors are Sabre's XML error bodies;
a write past the quota is 507 Insufficient Storage, as WebDAV has it.
"""

from __future__ import annotations

import hashlib
import logging
import re
from xml.sax.saxutils import escape

from flask import Blueprint, Response, g, request
from werkzeug.exceptions import MethodNotAllowed

from storage import errors as e
from storage.states import UploadKind, UploadState

from ..dav.auth import basic_required
# DAVError through the provider: importing wsgidav.dav_error first breaks an import cycle
# inside wsgidav (its util module must load first)
from ..dav.provider import DAVError, client_mtime
from ..errors import problem, status_for
from ..nodes import upload_limit
from ..util import etag_value, parse_uint, uploads
from .paths import check_user, destination, etag, oc_id

log = logging.getLogger("blockdrive.api")

bp = Blueprint("nextcloud_uploads", __name__, url_prefix="/remote.php/dav/uploads/<user>")

MAX_CHUNK = 10_000
_TRANSFER = re.compile(r"[A-Za-z0-9._-]{1,64}", re.ASCII)
_CHUNK = re.compile(r"[0-9]{1,16}", re.ASCII)
# Nextcloud clients put If-Match in an If header on the final MOVE: <url> (["etag"])
_IF_ETAG = re.compile(r'\(\s*\[\s*(W/)?"?([^"\]]*)"?\s*\]\s*\)')
CHUNKED = UploadKind.CHUNKED


@bp.url_value_preprocessor
def _own_url(endpoint, values):
    # runs before the view's Basic check: the URL's user is checked in _session
    g.url_user = values.pop("user")


def _session(transfer: str) -> str:
    """The upload session behind the caller's transfer id (ids are the client's own choice,
    so they are scoped by the user)."""
    check_user(g.url_user, g.user.email)
    if not _TRANSFER.fullmatch(transfer):
        raise e.NotFound(f"upload {transfer} not found")
    return hashlib.sha256(f"{g.user.id}/{transfer}".encode()).hexdigest()[:32]


def _live(sid: str, transfer: str):
    """The session, while it takes chunks: one that became its file is gone, as in Nextcloud."""
    info = uploads().get(g.user.id, sid, CHUNKED)
    if info.state != UploadState.ACTIVE:
        raise e.NotFound(f"upload {transfer} not found")
    return info


def _length(name: str, required: bool) -> int | None:
    raw = request.headers.get(name)
    if raw is None and not required:
        return None
    value = parse_uint((raw or "").strip())
    if value is None:
        raise e.InvalidInput(f"the {name} header must be the upload's length in bytes")
    return value


def _target(header: str | None) -> tuple[int, str]:
    """(folder id, name) of the file a Destination header names. A folder that does not
    exist is a 409, as for any WebDAV write below a missing collection."""
    try:
        parent, name = destination(header, g.user)
    except e.NotFound as exc:
        raise e.Conflict(f"the destination's folder does not exist: {exc.message}") from None
    return parent.id, name


@bp.route("/<transfer>", methods=["MKCOL"])
@basic_required
def open_upload(transfer):
    sid = _session(transfer)
    length = _length("OC-Total-Length", required=True)
    if length > upload_limit():
        raise e.InvalidInput(f"uploads are limited to {upload_limit()} bytes")
    if request.headers.get("Destination"):
        parent_id, name = _target(request.headers["Destination"])
    else:
        parent_id, name = g.user.root_id, f"upload-{sid}"
    try:
        _live(sid, transfer)
    except (e.NotFound, e.Gone):
        pass  # a new upload, or one that ended: its id is free again
    else:
        raise MethodNotAllowed(description=f"upload {transfer} exists")
    up = uploads()
    up.expire(limit=10)  # opportunistic housekeeping; the gc job does the rest
    up.create(g.user.id, parent_id, name, length, {"transfer": transfer}, kind=CHUNKED, sid=sid)
    return Response(status=201)


@bp.route("/<transfer>/<chunk>", methods=["PUT"])
@basic_required
def put_chunk(transfer, chunk):
    sid = _session(transfer)
    if not _CHUNK.fullmatch(chunk) or int(chunk) > MAX_CHUNK:
        raise e.InvalidInput(f"chunks are numbered 0 to {MAX_CHUNK}, not {chunk!r}")
    info = _live(sid, transfer)
    request.max_content_length = upload_limit()
    # A body that ends early raises (webapi.edge) and the append keeps nothing of it
    uploads().append(g.user.id, sid, info.offset, request.stream, declared=request.content_length, kind=CHUNKED,
                       part=int(chunk))
    return Response(status=201)


@bp.route("/<transfer>/<chunk>", methods=["DELETE"])
@basic_required
def delete_chunk(transfer, chunk):
    _live(_session(transfer), transfer)
    raise e.Forbidden("a received chunk is part of the upload's blocks and cannot be removed; delete the "
                      "upload to start over")


@bp.route("/<transfer>/.file", methods=["MOVE"])
@basic_required
def finish(transfer):
    sid = _session(transfer)
    parent_id, name = _target(request.headers.get("Destination"))
    info = _live(sid, transfer)
    total = _length("OC-Total-Length", required=False)
    if total is not None and total != info.length:
        raise e.InvalidInput(f"the upload was opened for {info.length} bytes, not {total}")
    mtime = client_mtime(request.environ)
    res = uploads().finish(g.user.id, sid, CHUNKED, parent_id=parent_id, name=name, if_match=_if_match(),
                           sha256=_sha256(), mtime=mtime)
    tag = etag(res.node)
    headers = {"OC-FileId": oc_id(res.node.id), "OC-ETag": tag, "ETag": tag}
    if mtime is not None:
        headers["X-OC-MTime"] = "accepted"
    return Response(status=201 if res.created else 204, headers=headers)



def _if_match() -> str | None:
    if "If-Match" in request.headers:
        return etag_value(request.headers["If-Match"])
    m = _IF_ETAG.search(request.headers.get("If", ""))
    return m.group(2) if m else None


def _sha256() -> bytes | None:
    """The SHA-256 an ``OC-Checksum`` header declares (other types are not checked)."""
    for item in request.headers.get("OC-Checksum", "").split():
        algo, _, value = item.partition(":")
        if algo.upper() == "SHA256":
            try:
                return bytes.fromhex(value)
            except ValueError:
                raise e.InvalidInput("OC-Checksum: the SHA256 value is not hex") from None
    return None


@bp.route("/<transfer>", methods=["DELETE"])
@basic_required
def abort(transfer):
    sid = _session(transfer)
    _live(sid, transfer)
    uploads().terminate(g.user.id, sid, CHUNKED)
    return Response(status=204)


@bp.route("/<transfer>", methods=["PROPFIND"])
@basic_required
def list_chunks(transfer):
    info = _live(_session(transfer), transfer)
    depth = request.headers.get("Depth", "1").strip()
    if depth not in ("0", "1"):
        raise e.Forbidden("PROPFIND with Depth: infinity is not served; use Depth 0 or 1")
    base = request.path.rstrip("/")
    rows = [_response(base + "/", "<d:resourcetype><d:collection/></d:resourcetype>")]
    if depth == "1":
        rows += [_response(f"{base}/{number:05d}",
                           f"<d:resourcetype/><d:getcontentlength>{size}</d:getcontentlength>")
                 for number, size in info.parts]
    body = ('<?xml version="1.0" encoding="utf-8"?>\n<d:multistatus xmlns:d="DAV:">'
            + "".join(rows) + "</d:multistatus>")
    return Response(body, status=207, mimetype="application/xml", headers={"Cache-Control": "no-store"})


def _response(href: str, props: str) -> str:
    return (f"<d:response><d:href>{escape(href)}</d:href><d:propstat><d:prop>{props}</d:prop>"
            "<d:status>HTTP/1.1 200 OK</d:status></d:propstat></d:response>")


def dav_status(exc: e.BlockdriveError) -> int:
    """A domain error's status on a WebDAV door: as the API's, but an upload past the quota
    is 507 Insufficient Storage and an ended upload session is simply not there."""
    if isinstance(exc, e.QuotaExceeded):
        return 507
    if isinstance(exc, e.Gone):
        return 404
    return status_for(exc)


def sabre_error(status: int, exception: str, message: str) -> Response:
    """An error as Nextcloud's WebDAV server (Sabre) writes it; clients show the message."""
    body = ('<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:" xmlns:s="http://sabredav.org/ns">'
            f"<s:exception>{escape(exception)}</s:exception><s:message>{escape(message)}</s:message></d:error>")
    return Response(body, status=status, mimetype="application/xml")


@bp.errorhandler(DAVError)
def _provider_error(exc: DAVError):
    # what the provider's helpers raise (a bad X-OC-Mtime, a path it cannot resolve)
    return sabre_error(exc.value, "DAVError", exc.context_info or exc.get_user_info())


@bp.errorhandler(e.BlockdriveError)
def _domain_error(exc: e.BlockdriveError):
    status = dav_status(exc)
    if status == 401:  # the Basic challenge comes with the API's own 401
        return problem(401, exc.code, type(exc).__name__, exc.message)
    if status >= 500 and status != 507:
        log.error("%s: %s", type(exc).__name__, exc)
    return sabre_error(status, type(exc).__name__, exc.message)
