"""Nextcloud's OCS API, the part its sync clients read: the server's capabilities and the
signed-in user (id, display name, quota). JSON with ``?format=json``, XML otherwise; any other
route under ``/ocs/`` answers with OCS's own "not found" envelope.

OCS v1 and v2 differ in their status codes: v1 says ``100`` for success and ``998`` for not
found, v2 repeats the HTTP status (``200``, ``404``)."""

from __future__ import annotations

from xml.etree import ElementTree as ET

from flask import Blueprint, Response, g, jsonify, request

from ..util import drive
from ..dav.auth import basic_required
from .status import PRODUCT, VERSION, VERSIONSTRING

bp = Blueprint("nextcloud_ocs", __name__, url_prefix="/ocs")

OK_CODE = {"v1": 100, "v2": 200}
NOT_FOUND_CODE = {"v1": 998, "v2": 404}
METHODS = ["GET", "POST", "PUT", "DELETE"]


def capabilities() -> dict:
    """What this server implements of Nextcloud's protocol, as its clients read it."""
    major, minor, micro, _ = (int(p) for p in VERSION.split("."))
    return {
        "version": {"major": major, "minor": minor, "micro": micro, "string": VERSIONSTRING,
                    "edition": "", "extendedSupport": False},
        "capabilities": {
            "core": {"pollinterval": 60, "webdav-root": "remote.php/webdav"},
            # chunked upload (remote.php/dav/uploads); no bulk upload
            "dav": {"chunking": "1.0"},
            "checksums": {"supportedTypes": ["SHA256"], "preferredUploadType": "SHA256"},
            "files": {"bigfilechunking": True, "versioning": True, "undelete": True,
                      "blacklisted_files": [".htaccess"]},
            "theming": {"name": PRODUCT, "url": "", "slogan": ""},
            # a conflict's losing copy goes to the server too, so every client keeps it
            "uploadConflictFiles": True,
        },
    }


def _xml(parent: ET.Element, value) -> None:
    """OCS's XML: a dict's keys become elements, a list's items ``<element>``, booleans 1 or
    empty (as Nextcloud writes them)."""
    if isinstance(value, dict):
        for key, item in value.items():
            _xml(ET.SubElement(parent, key), item)
    elif isinstance(value, list):
        for item in value:
            _xml(ET.SubElement(parent, "element"), item)
    elif isinstance(value, bool):
        parent.text = "1" if value else ""
    elif value is not None:
        parent.text = str(value)


def envelope(version: str, data, status: int = 200, message: str = "OK") -> Response:
    """An OCS answer: ``meta`` (status, statuscode, message) and ``data``."""
    ok = status < 400
    code = OK_CODE[version] if ok else (NOT_FOUND_CODE[version] if status == 404 else status)
    meta = {"status": "ok" if ok else "failure", "statuscode": code, "message": message,
            "totalitems": "", "itemsperpage": ""}
    if request.args.get("format") == "json" or "application/json" in request.headers.get("Accept", ""):
        resp = jsonify({"ocs": {"meta": meta, "data": data}})
    else:
        root = ET.Element("ocs")
        _xml(ET.SubElement(root, "meta"), meta)
        _xml(ET.SubElement(root, "data"), data)
        resp = Response(b'<?xml version="1.0"?>\n' + ET.tostring(root), mimetype="application/xml")
    resp.status_code = status
    return resp


@bp.get("/<any(v1,v2):version>.php/cloud/capabilities")
def get_capabilities(version):
    # Nextcloud answers this one without credentials too: clients ask before signing in
    return envelope(version, capabilities())


@bp.get("/<any(v1,v2):version>.php/cloud/user")
@basic_required
def get_user(version):
    u = g.user
    usage = drive().usage(u.id)
    # pending bytes (unfinished uploads) are not used yet, but they are not free either
    free = max(usage.quota - usage.used - usage.pending, 0)
    return envelope(version, {
        "enabled": True, "id": u.email, "display-name": u.email, "displayname": u.email, "email": u.email,
        "quota": {"free": free, "used": usage.used, "total": usage.quota, "quota": usage.quota,
                  "relative": round(100 * usage.used / usage.quota, 2) if usage.quota else 0},
    })


@bp.route("/<any(v1,v2):version>.php/<path:rest>", methods=METHODS)
@basic_required
def not_found(version, rest):
    return envelope(version, [], status=404, message=f"no OCS route {request.path}")


@bp.route("/<path:rest>", methods=METHODS)
@basic_required
def not_ocs(rest):
    return envelope("v2", [], status=404, message=f"no OCS route {request.path}")
