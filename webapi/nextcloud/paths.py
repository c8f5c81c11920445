"""Nextcloud's URLs onto blockdrive's tree, as the WebDAV provider sees it: whose URL it is,
which folder and name a ``Destination`` points to, and the identifiers (file id, etag)
Nextcloud clients keep for a file.

A Nextcloud URL names its user (``/remote.php/dav/files/{user}/...``); here that is the
account's email, what the client signs in with. Paths are resolved by the provider's
:meth:`webapi.dav.provider.DavRequest.lookup`, so ``Shared with me/NAME/...`` means here
what it means in a WebDAV listing."""

from __future__ import annotations

from urllib.parse import unquote

from flask import current_app, request
from werkzeug.exceptions import BadGateway

from storage.errors import Forbidden, InvalidInput, NotFound
from storage.tree import NodeInfo

from ..dav.app import destination_path
from ..dav.provider import SHARED, DavRequest, parts_of

FILES = "/remote.php/dav/files/{email}"


def check_user(url_user: str, email: str) -> None:
    """A URL names the signed-in account, or it is refused."""
    if url_user.strip().lower() != email.lower():
        raise Forbidden("this URL belongs to another account")


def oc_id(node_id: int) -> str:
    """The file id Nextcloud clients keep (``OC-FileId``, ``oc:id``): the node id, 8 digits or
    more, then the instance's name. Clients take the leading digits as the numeric id."""
    return f"{node_id:08d}blockdrive"


def etag(node: NodeInfo) -> str:
    """A file's quoted ETag: its content's SHA-256, as ``getetag`` gives it."""
    return f'"{node.sha256}"'


def destination(header: str | None, user) -> tuple[NodeInfo, str]:
    """The folder and the name of the file a ``Destination`` header names (an absolute URL on
    this server or a path, on any spelling of the WebDAV mount, for this user; 502 otherwise,
    as RFC 4918 has it). The folder must exist (NotFound); whether the user may write there
    is the write's own check."""
    if not header:
        raise InvalidInput("the Destination header is required")
    hosts = tuple(h.strip().lower() for h in (request.host, *request.headers.get("X-Forwarded-Host", "").split(","))
                  if h.strip())
    inner = destination_path(header, user.email, hosts)
    if inner is None:
        raise BadGateway(f"the Destination must be a file under {FILES.format(email=user.email)}/ on this server")
    parts = parts_of(unquote(inner))
    if not parts:
        raise InvalidInput("the destination is the root folder, not a file")
    if parts[0] == SHARED and len(parts) < 3:
        raise Forbidden(f"files go into a folder shared with you, not into /{SHARED} itself")
    ext = current_app.extensions
    parent = DavRequest(ext["drive"], ext["sharing"], user, FILES.format(email=user.email)).lookup(parts[:-1])
    if parent is None:
        raise NotFound(f"/{'/'.join(parts[:-1])} not found")
    if parent.kind != "folder":
        raise Forbidden(f"/{'/'.join(parts[:-1])} is a file, not a folder")
    return parent, parts[-1]
