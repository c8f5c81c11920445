"""PROPFIND Depth 1 on a folder, streamed: the answer is written a member at a time while the
folder is read a page at a time, so a folder of 100,000 entries takes the memory of one page.

WsgiDAV builds a whole multistatus document before sending a byte; this handler takes over
exactly the requests it can stream (Depth 1 on a folder, no ``If`` header) and leaves the
others to WsgiDAV. Each ``<response>`` is built by WsgiDAV's own code, so the properties are
the same either way."""

from __future__ import annotations

from typing import Iterator

from wsgidav import util
from wsgidav.dav_error import HTTP_BAD_REQUEST, DAVError
from wsgidav.xml_tools import etree, make_multistatus_el

from .provider import LOCKED, FolderResource, DavNode

XML = "application/xml; charset=utf-8"
STREAMED = "blockdrive.dav.streamed"  # environ key: this answer has no Content-Length on purpose


def request_mode(environ) -> tuple[str, list[str]]:
    """``("allprop"|"name"|"named", names)`` from a PROPFIND body (RFC 4918, 14.20)."""
    body = util.parse_xml_body(environ, allow_empty=True)
    if body is None:
        return "allprop", []
    if body.tag != "{DAV:}propfind":
        raise DAVError(HTTP_BAD_REQUEST, "the body must be a DAV:propfind")
    mode: str | None = None
    names: list[str] = []
    for el in body:
        kind = {"{DAV:}allprop": "allprop", "{DAV:}propname": "name", "{DAV:}prop": "named"}.get(el.tag)
        if kind is None:
            continue
        if mode is not None and (mode, kind) != ("named", "named"):
            raise DAVError(HTTP_BAD_REQUEST, "allprop, propname and prop cannot be mixed")
        mode = kind
        names.extend(p.tag for p in el if kind == "named")
    return mode or "allprop", names


def handler(environ, start_response, provider):
    """A Depth 1 PROPFIND of a folder (without an ``If`` header), streamed; else None."""
    if environ["REQUEST_METHOD"] != "PROPFIND" or environ.get("HTTP_DEPTH") != "1" or "HTTP_IF" in environ:
        return None
    folder = provider.get_resource_inst(environ["PATH_INFO"], environ)
    if not isinstance(folder, FolderResource):
        return None
    return propfind_depth1(environ, start_response, folder)


def propfind_depth1(environ, start_response, folder: FolderResource):
    mode, names = request_mode(environ)
    lm = folder.provider.lock_manager
    if lm is not None:  # one query for the locks of the whole listing (usually none)
        environ[LOCKED] = {lock["root"] for lock in lm.get_url_lock_list(folder.get_ref_url(), recursive=True)}
    pm = folder.provider.prop_manager
    if pm is not None and hasattr(pm, "prefetch_children"):  # and one for their dead properties
        pm.prefetch_children(environ, folder.info.id)

    def response_of(res: DavNode) -> bytes:
        props = res.get_properties(mode, name_list=names if mode == "named" else None)  # type: ignore[attr-defined]
        doc = make_multistatus_el()
        util.add_property_response(doc, res.get_href(), props)
        return b"".join(etree.tostring(el) for el in doc)

    def body() -> Iterator[bytes]:
        yield b'<?xml version="1.0" encoding="utf-8" ?>\n<d:multistatus xmlns:d="DAV:">'
        yield response_of(folder)
        for member in folder.iter_members():
            yield response_of(member)
        yield b"</d:multistatus>\n"

    environ[STREAMED] = True
    start_response("207 Multi-Status", [("Content-Type", XML)])
    return body()
