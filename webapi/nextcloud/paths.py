"""Nextcloud's URLs onto blockdrive's tree: whose URL it is, where a ``Destination`` points,
and the identifiers (file id, etag) Nextcloud clients keep for a file.

A Nextcloud URL names its user (``/remote.php/dav/files/{user}/...``); here that is the
account's email, what the client signs in with. A path below the user's root is their own
tree, except ``Shared with me/NAME/...``: the node shared with them under NAME and below."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

from storage.errors import Forbidden, InvalidInput, NotFound
from storage.tree import NodeInfo

from ..util import drive, sharing

SHARED = "Shared with me"
# Nextcloud's instance id: the tail of every file id it hands out (Nextcloud's own is random)
INSTANCE_ID = "ocblockdrive"
FILE_PREFIXES = ("/remote.php/dav/files/{user}/", "/remote.php/webdav/", "/dav/")


def check_user(url_user: str, email: str) -> None:
    """A URL names the signed-in account, or it is refused."""
    if url_user.strip().lower() != email.lower():
        raise Forbidden("this URL belongs to another account")


def oc_id(node_id: int) -> str:
    """The file id Nextcloud clients read (``OC-FileId``, ``oc:id``): the node id, 8 digits or
    more, then the instance id. Clients take the leading digits as the numeric id."""
    return f"{node_id:08d}{INSTANCE_ID}"


def etag(node: NodeInfo) -> str:
    """A file's quoted ETag: its content's SHA-256, as ``getetag`` gives it."""
    return f'"{node.etag}"'


def destination_path(header: str | None, email: str) -> str:
    """The path (``/a/b``) below the user's root that a ``Destination`` header names: an
    absolute URL or a path, under ``/remote.php/dav/files/{user}/``, ``/remote.php/webdav/``
    or ``/dav/``."""
    if not header:
        raise InvalidInput("the Destination header is required")
    path = unquote(urlsplit(header.strip()).path)
    for prefix in FILE_PREFIXES:
        if "{user}" in prefix:
            head, _, rest = prefix.partition("{user}")
            if path.startswith(head):
                user, sep, tail = path[len(head):].partition("/")
                if sep:
                    check_user(user, email)
                    return "/" + tail
        elif path.startswith(prefix):
            return "/" + path[len(prefix):]
    raise InvalidInput(f"the Destination must be a file under /remote.php/dav/files/{email}/")


def resolve(user_id: int, path: str) -> NodeInfo:
    """The node at ``path`` (``/a/b``) as the user sees their drive, shares included. Of two
    nodes shared with the user under one name, the first shared (lowest id) is the one seen."""
    parts = [p for p in path.split("/") if p]
    if parts and parts[0] == SHARED:
        if len(parts) == 1:
            raise NotFound(f"/{SHARED} lists what is shared with you; it is not a node")
        top = min((n for n in sharing().shared_with_me(user_id) if n.name == parts[1]),
                  key=lambda n: n.id, default=None)
        node = drive().lookup(user_id, top.id, parts[2:]) if top is not None else None
    else:
        node = drive().lookup(user_id, drive().account(user_id).root_id, parts)
    if node is None:
        raise NotFound(f"{path} not found")
    return node


def resolve_parent(user_id: int, path: str) -> tuple[NodeInfo, str]:
    """The folder a new file at ``path`` goes into, and the file's name. The folder must
    exist; whether the user may write there is the write's own check."""
    parts = [p for p in path.split("/") if p]
    if not parts:
        raise InvalidInput("the destination is the root folder, not a file")
    if parts[0] == SHARED and len(parts) < 3:
        raise Forbidden(f"files go into a folder shared with you, not into /{SHARED} itself")
    parent = resolve(user_id, "/" + "/".join(parts[:-1]))
    if parent.kind != "folder":
        raise Forbidden(f"/{'/'.join(parts[:-1])} is a file, not a folder")
    return parent, parts[-1]
