"""tus 1.0 resumable uploads (https://tus.io/protocols/resumable-upload): core, creation,
creation-with-upload, termination, checksum (sha1, sha256) and expiration.

``Upload-Metadata`` carries ``filename`` (required) and ``parent_id`` (the folder; default the
caller's root). The upload becomes the file (or its new version) when its last byte arrives;
the final PATCH answers with ``X-Blockdrive-Node-Id``. Every response carries
``Tus-Resumable``; errors are problem+json like everywhere else."""

from __future__ import annotations

import base64
import binascii
from email.utils import format_datetime

from flask import Blueprint, Response, g, request, url_for
from werkzeug.exceptions import (ClientDisconnected, HTTPException, PreconditionFailed, RequestEntityTooLarge,
                                 RequestTimeout, UnsupportedMediaType)

from storage.errors import InvalidInput

from . import traffic
from .auth import login_required
from .nodes import upload_limit
from .util import MAX_ID, parse_uint, uploads

bp = Blueprint("tus", __name__, url_prefix="/api/v1/uploads")

TUS_VERSION = "1.0.0"
EXTENSIONS = "creation,creation-with-upload,termination,checksum,expiration"
OCTETS = "application/offset+octet-stream"


class _TusVersion(PreconditionFailed):
    description = f"unsupported tus version; this server speaks {TUS_VERSION}"


@bp.before_request
def _check_version():
    if request.method != "OPTIONS" and request.headers.get("Tus-Resumable") != TUS_VERSION:
        raise _TusVersion()


@bp.after_request
def _tus_headers(resp):
    resp.headers["Tus-Resumable"] = TUS_VERSION
    if resp.status_code == 412:
        resp.headers["Tus-Version"] = TUS_VERSION
    resp.headers["Cache-Control"] = "no-store"
    return resp


def _info_headers(info) -> dict:
    h = {"Upload-Offset": str(info.offset), "Upload-Length": str(info.length),
         "Upload-Expires": format_datetime(info.expires_at.replace(tzinfo=__import__("datetime").timezone.utc),
                                           usegmt=True)}
    if info.node_id is not None:
        h["X-Blockdrive-Node-Id"] = str(info.node_id)
    return h


def _metadata(raw: str) -> dict:
    out = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        key, _, value = pair.partition(" ")
        try:
            out[key] = base64.b64decode(value.strip(), validate=True).decode() if value.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise InvalidInput(f"Upload-Metadata: {key!r} is not base64 UTF-8") from None
    return out


def _int_header(name: str, required: bool = True) -> int | None:
    raw = request.headers.get(name)
    if raw is None:
        if required:
            raise InvalidInput(f"the {name} header is required")
        return None
    raw = raw.strip()
    if not (raw.isascii() and raw.isdigit()):  # isdigit() alone takes "²", which int() refuses
        raise InvalidInput(f"{name} must be a non-negative integer (ASCII digits)")
    # Past 64 bits is past every limit and offset it is compared with (413, 409), and is
    # never stored; int() would refuse 4,300+ digits.
    value = parse_uint(raw.lstrip("0") or "0")
    return MAX_ID + 1 if value is None else value


def _checksum():
    raw = request.headers.get("Upload-Checksum")
    if raw is None:
        return None
    algo, _, value = raw.strip().partition(" ")
    if algo not in ("sha1", "sha256"):
        raise InvalidInput(f"unsupported checksum algorithm {algo!r} (sha1, sha256)")
    try:
        return algo, base64.b64decode(value, validate=True)
    except binascii.Error:
        raise InvalidInput("Upload-Checksum: the digest is not base64") from None


def _append(sid: str, offset: int):
    if request.mimetype != OCTETS:
        raise UnsupportedMediaType(f"PATCH bodies must be {OCTETS}")
    request.max_content_length = upload_limit()
    body = _Tolerant(request.stream)
    info, result = uploads().append(g.user.id, sid, offset, body, declared=request.content_length,
                                    checksum=_checksum())
    traffic.uploaded(g.user.id, info.offset - offset, versions=int(result is not None))
    if body.cut is not None:
        # tus asks the server to keep what arrived (the offset says how much, and never
        # more); the request itself still failed, and is answered so
        raise body.cut
    return info, result


class _Tolerant:
    """The request body, where a dropped or timed-out connection is the end of the data:
    tus keeps what arrived, and the domain sees fewer bytes than declared."""

    def __init__(self, stream):
        self.stream = stream
        self.cut: HTTPException | None = None

    def read(self, n: int) -> bytes:
        if self.cut is not None:
            return b""
        try:
            return self.stream.read(n)
        except (ClientDisconnected, RequestTimeout) as exc:  # webapi.edge: the body ended early
            self.cut = exc
            return b""


@bp.route("", methods=["OPTIONS"], strict_slashes=False)
@bp.route("/<sid>", methods=["OPTIONS"])
def options(sid=None):
    h = {"Tus-Version": TUS_VERSION, "Tus-Extension": EXTENSIONS, "Tus-Checksum-Algorithm": "sha1,sha256"}
    limit = upload_limit()
    if limit < 2**62:
        h["Tus-Max-Size"] = str(limit)
    return Response(status=204, headers=h)


@bp.route("", methods=["POST"], strict_slashes=False)
@login_required
def create():
    length = _int_header("Upload-Length")
    if length > upload_limit():  # tus: a length past Tus-Max-Size MUST be a 413
        raise RequestEntityTooLarge(f"uploads are limited to {upload_limit()} bytes (Tus-Max-Size)")
    meta = _metadata(request.headers.get("Upload-Metadata", ""))
    if not meta.get("filename"):
        raise InvalidInput("Upload-Metadata must carry a filename")
    parent = parse_uint(meta.get("parent_id") or str(g.user.root_id))
    if not parent:
        raise InvalidInput("Upload-Metadata parent_id must be a node id")
    up = uploads()
    up.expire(limit=10)  # opportunistic housekeeping; the gc job does the rest
    info = up.create(g.user.id, parent, meta["filename"], length, meta)
    if length == 0:
        up.finish(g.user.id, info.id)
        traffic.uploaded(g.user.id, 0)
        info = up.get(g.user.id, info.id)
    elif request.content_length or request.headers.get("Transfer-Encoding"):
        info, _ = _append(info.id, 0)  # creation-with-upload
    headers = _info_headers(info)
    headers["Location"] = url_for("tus.head", sid=info.id, _external=True)
    return Response(status=201, headers=headers)


@bp.route("/<sid>", methods=["HEAD"])
@login_required
def head(sid):
    info = uploads().get(g.user.id, sid)
    h = _info_headers(info)
    if info.metadata:
        h["Upload-Metadata"] = ",".join(f"{k} {base64.b64encode(str(v).encode()).decode()}"
                                        for k, v in info.metadata.items())
    return Response(status=200, headers=h)


@bp.route("/<sid>", methods=["PATCH"])
@login_required
def patch(sid):
    offset = _int_header("Upload-Offset")
    info, _result = _append(sid, offset)
    return Response(status=204, headers=_info_headers(info))


@bp.route("/<sid>", methods=["DELETE"])
@login_required
def terminate(sid):
    uploads().terminate(g.user.id, sid)
    return Response(status=204)
