"""The WebDAV provider: WsgiDAV's resources over storage's public API.

A user sees their own root folder at the mount point and, under ``Shared with me/``, each folder
or file another user shared with them, by its name (a second share of the same name gets
`` (2)``). Every operation is one call of :class:`storage.drive.Drive` made as the signed-in
user, so permissions, quotas, name rules, versions and the trash are exactly the JSON API's.

Locks and dead properties are kept by URL in WsgiDAV; we give each resource a *reference URL* in
an id namespace, ``/.ids/<ancestor ids>/<id>``, so a lock taken through a share is seen by the
owner, and a node's properties follow it through moves (see :mod:`webapi.dav.locks`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import mimetypes
import re
from typing import BinaryIO, Iterable, Iterator, cast
from urllib.parse import quote, unquote, urlparse

from werkzeug.exceptions import ClientDisconnected, RequestTimeout
from wsgidav import util
from wsgidav.dav_error import (HTTP_BAD_REQUEST, HTTP_CONFLICT, HTTP_FORBIDDEN, HTTP_INSUFFICIENT_STORAGE,
                               HTTP_NOT_FOUND, HTTP_PRECONDITION_FAILED, DAVError)
from wsgidav.dav_provider import DAVCollection, DAVNonCollection, DAVProvider
from wsgidav.util import etree

from storage import errors as e
from storage.drive import Drive
from storage.names import normal
from storage.sharing import Sharing
from storage.tree import NodeInfo

SHARED = "Shared with me"
IDS = "/.ids"
OC = "{http://owncloud.org/ns}"
NC = "{http://nextcloud.org/ns}"
LIST_PAGE = 1000  # children read per query while listing a folder
LOCKED = "blockdrive.dav.locked"  # environ key: the lock roots at or below a folder being listed

# storage's errors as WebDAV statuses; anything else is WsgiDAV's 500
STATUS: list[tuple[type[Exception], int]] = [
    (e.PreconditionFailed, HTTP_PRECONDITION_FAILED),
    (e.QuotaExceeded, HTTP_INSUFFICIENT_STORAGE),
    (e.LimitExceeded, HTTP_INSUFFICIENT_STORAGE),
    (e.InvalidInput, HTTP_BAD_REQUEST),
    (e.Forbidden, HTTP_FORBIDDEN),
    (e.Unauthorized, HTTP_FORBIDDEN),
    (e.NotFound, HTTP_NOT_FOUND),
    (e.Conflict, HTTP_CONFLICT),
    (e.RetryLater, 503),
    (e.BackendUnavailable, 503),
]


@contextlib.contextmanager
def dav_errors():
    """Raise storage's errors (and a request body cut short) as the matching DAVError."""
    try:
        yield
    except DAVError:
        raise
    except e.BlockdriveError as exc:
        for cls, status in STATUS:
            if isinstance(exc, cls):
                raise DAVError(status, exc.message) from exc
        raise
    except (ClientDisconnected, RequestTimeout) as exc:
        raise DAVError(HTTP_BAD_REQUEST, str(exc)) from exc


def ref_url(info: NodeInfo) -> str:
    """The node's URL in the id namespace: ``/.ids/1/5/9`` for node 9 under 5 under root 1."""
    return f"{IDS}{info.path or '/'}{info.id}"


def oc_id(node_id: int) -> str:
    """The file id Nextcloud clients keep (``OC-FileId``, ``oc:id``): the node id, 8 digits or
    more, then the instance's name. Clients take the leading digits as the numeric id."""
    return f"{node_id:08d}blockdrive"


def oc_permissions(info: NodeInfo, shared: bool) -> str:
    """Nextcloud's permission letters for ``info`` as its caller sees it."""
    write = info.role in ("owner", "editor")
    letters = "S" if shared else ""
    letters += "R" if info.role == "owner" else ""
    letters += "M" if shared else ""
    letters += "G"
    if write:
        letters += "DNV" + ("W" if info.kind == "file" else "CK")
    return letters


class DavRequest:
    """What one request's resources share: the drive, the user, the mount point the client
    used (for hrefs) and the nodes looked up so far (forgotten after any change)."""

    def __init__(self, drive: Drive, sharing: Sharing, user, mount: str):
        self.drive, self.sharing, self.user, self.mount = drive, sharing, user, mount
        self.found: dict[str, NodeInfo | None] = {}
        self._shares: dict[str, NodeInfo] | None = None

    def changed(self) -> None:
        self.found.clear()
        self._shares = None

    def shares(self) -> dict[str, NodeInfo]:
        """What others shared with the user, by the name it has under ``Shared with me``."""
        if self._shares is None:
            names: dict[str, NodeInfo] = {}
            for info in self.sharing.shared_with_me(self.user.id):
                name, n = info.name, 2
                while name in names:
                    stem, dot, ext = info.name.rpartition(".")
                    name = f"{stem} ({n}).{ext}" if dot and stem else f"{info.name} ({n})"
                    n += 1
                names[name] = info
            self._shares = names
        return self._shares

    def lookup(self, parts: list[str]) -> NodeInfo | None:
        parts = [normal(p) for p in parts]  # a share's name is matched here, not in storage
        key = "/".join(parts)
        if key not in self.found:
            with dav_errors():
                if parts and parts[0] == SHARED:
                    top = self.shares().get(parts[1]) if len(parts) > 1 else None
                    info = None if top is None else self.drive.lookup(self.user.id, top.id, parts[2:])
                else:
                    info = self.drive.lookup(self.user.id, self.user.root_id, parts)
            self.found[key] = info
        return self.found[key]


def parts_of(path: str) -> list[str]:
    return [p for p in path.split("/") if p]


class DavNode:
    """What files and folders have in common (mixed into WsgiDAV's resource classes)."""

    info: NodeInfo
    req: DavRequest
    path: str
    environ: dict

    @property
    def shared(self) -> bool:
        return parts_of(self.path)[:1] == [SHARED]

    def get_ref_url(self) -> str:
        return ref_url(self.info)

    def get_href(self) -> str:
        href = quote(self.req.mount + self.path)
        return href + "/" if self.is_collection and not href.endswith("/") else href  # type: ignore[attr-defined]

    def get_display_name(self) -> str:
        return self.info.name if parts_of(self.path) else ""

    def get_creation_date(self) -> float:
        return self.info.created_at.replace(tzinfo=dt.timezone.utc).timestamp()

    def get_last_modified(self) -> float:
        return (self.info.mtime or self.info.updated_at).replace(tzinfo=dt.timezone.utc).timestamp()

    def support_etag(self) -> bool:
        return True

    def writable(self) -> bool:
        return self.info.role in ("owner", "editor")

    # ---- properties: the oc: ones Nextcloud's and rclone's clients read -------------------

    OC_PROPS = (OC + "id", OC + "fileid", OC + "permissions", OC + "size", OC + "checksums",
                OC + "owner-id", NC + "has-preview")

    def get_property_names(self, *, is_allprop):
        names = super().get_property_names(is_allprop=is_allprop)  # type: ignore[misc]
        return names if is_allprop else names + list(self.OC_PROPS)

    def get_property_value(self, name):
        info = self.info
        if name == OC + "fileid":
            return str(info.id)
        if name == OC + "id":
            return oc_id(info.id)
        if name == OC + "permissions":
            return oc_permissions(info, self.shared)
        if name == OC + "owner-id":
            return str(info.owner_id)
        if name == NC + "has-preview":
            return "false"
        if name == OC + "size" and info.size is not None:
            return str(info.size)
        if name == OC + "checksums" and info.sha256:
            el = etree.Element(name)
            etree.SubElement(el, OC + "checksum").text = f"SHA256:{info.sha256}"
            return el
        if name in self.OC_PROPS:
            raise DAVError(HTTP_NOT_FOUND)
        if name == "{DAV:}lockdiscovery" and self.get_ref_url() not in self.environ.get(LOCKED, (self.get_ref_url(),)):
            return etree.Element(name)  # a listing found no lock at or below its folder: no query
        if name == "{DAV:}getetag":
            return f'"{self.get_etag()}"'  # type: ignore[attr-defined]
        return super().get_property_value(name)  # type: ignore[misc]

    def set_property_value(self, name, value, *, dry_run=False):
        if not self.writable():
            raise DAVError(HTTP_FORBIDDEN, "you may only read this")
        if name in self.OC_PROPS:
            raise DAVError(HTTP_FORBIDDEN, "a live property")
        return super().set_property_value(name, value, dry_run=dry_run)  # type: ignore[misc]

    # ---- changing the tree ----------------------------------------------------------------

    def _target(self, dest_path: str) -> tuple[NodeInfo, str, NodeInfo | None]:
        """The folder ``dest_path`` goes into, its name, and what is there now."""
        parts = parts_of(dest_path)
        if not parts or parts == [SHARED]:
            raise DAVError(HTTP_FORBIDDEN, "cannot replace this folder")
        parent = self.req.lookup(parts[:-1])
        if parent is None or parent.kind != "folder":
            raise DAVError(HTTP_CONFLICT, "the destination's folder does not exist")
        return parent, parts[-1], self.req.lookup(parts)

    def _clear(self, existing: NodeInfo | None, overwrite: bool) -> None:
        self.environ["blockdrive.dav.created"] = existing is None
        if existing is not None:
            if not overwrite:
                raise DAVError(HTTP_PRECONDITION_FAILED, "the destination exists and Overwrite is F")
            self.req.drive.delete(self.req.user.id, existing.id)

    def check_locks(self) -> None:
        """423 if this node or anything below it is locked by a lock whose token the request
        did not send (WsgiDAV checks only the parent before a DELETE it does not do itself)."""
        lm = self.provider.lock_manager  # type: ignore[attr-defined]
        if lm is not None:
            util.parse_if_header_dict(self.environ)
            lm.check_write_permission(url=self.get_ref_url(), depth="infinity",
                                      token_list=self.environ["wsgidav.ifLockTokenList"],
                                      principal=self.environ["wsgidav.user_name"])

    def handle_delete(self):
        if not parts_of(self.path) or (self.shared and len(parts_of(self.path)) == 2):
            raise DAVError(HTTP_FORBIDDEN, "this folder cannot be deleted here")
        self.check_locks()
        with dav_errors():
            self.req.drive.delete(self.req.user.id, self.info.id)
        self.req.changed()
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]
        return True

    def handle_copy(self, dest_path, *, depth_infinity):
        parent, name, existing = self._target(dest_path)
        overwrite = self.environ.get("HTTP_OVERWRITE", "T").upper() != "F"
        with dav_errors():
            self._clear(existing, overwrite)
            if self.info.kind == "folder" and not depth_infinity:
                self.req.drive.mkdir(self.req.user.id, parent.id, name)
            else:
                self.req.drive.copy(self.req.user.id, self.info.id, parent.id, name)
        self.req.changed()
        return True

    def handle_move(self, dest_path):
        if self.shared and len(parts_of(self.path)) == 2:
            raise DAVError(HTTP_FORBIDDEN, "a share cannot be moved; move inside it")
        parent, name, existing = self._target(dest_path)
        overwrite = self.environ.get("HTTP_OVERWRITE", "T").upper() != "F"
        with dav_errors():
            self._clear(existing, overwrite)
            self.req.drive.move(self.req.user.id, self.info.id, name=name,
                                parent_id=parent.id if parent.id != self.info.parent_id else None)
        self.req.changed()
        self.remove_all_locks(recursive=True)  # type: ignore[attr-defined]
        return True


class FolderResource(DavNode, DAVCollection):
    def __init__(self, path: str, environ: dict, req: DavRequest, info: NodeInfo):
        DAVCollection.__init__(self, path, environ)
        self.req, self.info = req, info

    def get_etag(self) -> str:
        return f"{self.info.id:x}-{self.info.changes:x}"

    def children(self) -> Iterator[NodeInfo]:
        """Every live child, a page at a time (a folder may hold a million)."""
        cursor = None
        while True:
            with dav_errors():
                items, cursor = self.req.drive.list_children(self.req.user.id, self.info.id,
                                                             limit=LIST_PAGE, cursor=cursor)
            yield from items
            if cursor is None:
                return

    def extra_members(self) -> list[str]:
        return [SHARED] if not parts_of(self.path) and self.req.shares() else []

    def get_member_names(self) -> list[str]:
        return self.extra_members() + [c.name for c in self.children()]

    def get_member(self, name):
        return self.provider.get_resource_inst(util.join_uri(self.path, name), self.environ)

    def iter_members(self) -> Iterator:
        """The members as resources, a page of the folder at a time."""
        for name in self.extra_members():
            yield self.get_member(name)
        for c in self.children():
            yield member_of(self, c)

    def get_member_list(self):
        return list(self.iter_members())

    def get_used_bytes(self):
        return None

    def create_empty_resource(self, name: str):
        if not self.writable():
            raise DAVError(HTTP_FORBIDDEN, "you may only read this folder")
        return NewFile(util.join_uri(self.path, name), self.environ, self.req, self.info, name)

    def create_collection(self, name: str):
        if not parts_of(self.path) and name == SHARED:
            raise DAVError(HTTP_FORBIDDEN, f"{SHARED!r} is where shares appear")
        with dav_errors():
            self.req.drive.mkdir(self.req.user.id, self.info.id, name)
        self.req.changed()

    def support_recursive_delete(self) -> bool:
        return True

    def support_recursive_move(self, dest_path) -> bool:
        return True


class FileResource(DavNode, DAVNonCollection):
    def __init__(self, path: str, environ: dict, req: DavRequest, info: NodeInfo):
        DAVNonCollection.__init__(self, path, environ)
        self.req, self.info = req, info

    def get_content_length(self) -> int:
        return self.info.size or 0

    def get_content_type(self) -> str:
        return mimetypes.guess_type(self.info.name)[0] or "application/octet-stream"

    def get_etag(self) -> str:
        return self.info.sha256 or "empty"

    def support_ranges(self) -> bool:
        return True

    def get_content(self):
        return VersionReader(self.req.drive, self.info.version_id, self.info.size or 0)

    def begin_write(self, *, content_type=None):
        if not self.writable():
            raise DAVError(HTTP_FORBIDDEN, "you may only read this file")
        parent = self.req.lookup(parts_of(self.path)[:-1])
        return Upload(self, parent, self.info.name, if_match=self.info.sha256)

    def end_write(self, *, with_errors):
        pass


class NewFile(FileResource):
    """A file a PUT is about to create: nothing exists until its bytes are all in."""

    def __init__(self, path: str, environ: dict, req: DavRequest, parent: NodeInfo, name: str):
        DAVNonCollection.__init__(self, path, environ)
        self.req, self.parent, self.name = req, parent, name
        self.info = None  # type: ignore[assignment]

    def get_ref_url(self) -> str:
        # Until it exists, a name in its folder's id namespace: a lock on the folder (depth
        # infinity) covers it, and no lock can be on it.
        return ref_url(self.info) if self.info is not None else f"{ref_url(self.parent)}/+{quote(self.name)}"

    def get_etag(self):
        return self.info.sha256 if self.info else None

    def begin_write(self, *, content_type=None):
        return Upload(self, self.parent, self.name, if_match=None)


class SharedFolder(DAVCollection):
    """``Shared with me``: what others shared with the user, read-only as a folder."""

    def __init__(self, path: str, environ: dict, req: DavRequest):
        super().__init__(path, environ)
        self.req = req

    def get_href(self) -> str:
        return quote(self.req.mount + self.path) + "/"

    def get_ref_url(self) -> str:
        return f"{IDS}/shared/{self.req.user.id}"

    def get_display_name(self) -> str:
        return SHARED

    def get_etag(self) -> str:
        shares = self.req.shares()
        return "s-" + "-".join(f"{i.id:x}.{i.changes:x}" for i in shares.values())[:200] if shares else "s"

    def support_etag(self) -> bool:
        return True

    def get_member_names(self) -> list[str]:
        return list(self.req.shares())

    def get_member(self, name):
        info = self.req.shares().get(name)
        return None if info is None else member_of(self, info, name)

    def create_empty_resource(self, name):
        raise DAVError(HTTP_FORBIDDEN, f"{SHARED!r} only holds what others share with you")

    def create_collection(self, name):
        raise DAVError(HTTP_FORBIDDEN, f"{SHARED!r} only holds what others share with you")

    def handle_delete(self):
        raise DAVError(HTTP_FORBIDDEN, f"{SHARED!r} cannot be deleted")

    def prevent_locking(self) -> bool:
        return True


def member_of(folder, info: NodeInfo, name: str | None = None):
    path = util.join_uri(folder.path, name or info.name)
    cls = FolderResource if info.kind == "folder" else FileResource
    return cls(path, folder.environ, folder.req, info)


class Upload:
    """What WsgiDAV writes a PUT's body into: the body goes to :meth:`Drive.put` as it
    arrives (``writelines`` gets the body's chunks), never held whole; the new version is
    committed only when the body is all in, so a cut-off PUT leaves nothing."""

    def __init__(self, res: FileResource, parent: NodeInfo | None, name: str, if_match: str | None):
        if parent is None:
            raise DAVError(HTTP_CONFLICT, "the folder does not exist")
        self.res, self.parent, self.name = res, parent, name
        env = res.environ
        # wsgidav already checked If-Match against the etag it read; passing it down makes the
        # check atomic with the commit, so a concurrent writer's version is never overwritten
        self.if_match = if_match if "HTTP_IF_MATCH" in env else None

    def writelines(self, chunks: Iterable[bytes]) -> None:
        req, env = self.res.req, self.res.environ
        size = env.get("CONTENT_LENGTH")
        with dav_errors():
            result = req.drive.put(req.user.id, self.parent.id, self.name, cast(BinaryIO, ChunkStream(chunks)),
                                   if_match=self.if_match,
                                   size_hint=int(size) if size and size.isdigit() else None,
                                   mtime=client_mtime(env))
        req.changed()
        self.res.info = result.node
        env["blockdrive.dav.result"] = result

    def write(self, data: bytes) -> None:
        self.writelines([data])

    def close(self) -> None:
        pass


def client_mtime(environ) -> dt.datetime | None:
    """``X-OC-Mtime`` (seconds since the epoch) as a naive UTC time, or None."""
    raw = environ.get("HTTP_X_OC_MTIME")
    if not raw:
        return None
    try:
        secs = float(raw)
    except ValueError:
        raise DAVError(HTTP_BAD_REQUEST, "X-OC-Mtime must be seconds since the epoch") from None
    if not 0 <= secs < 253402300800:  # before year 10000
        raise DAVError(HTTP_BAD_REQUEST, "X-OC-Mtime is out of range")
    environ["blockdrive.dav.mtime_accepted"] = True
    return dt.datetime.fromtimestamp(secs, dt.timezone.utc).replace(tzinfo=None)


class ChunkStream(io.RawIOBase):
    """An iterator of byte chunks as a readable stream."""

    def __init__(self, chunks: Iterable[bytes]):
        self._it = iter(chunks)
        self._buf = b""

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        while not self._buf:
            nxt = next(self._it, None)
            if nxt is None:
                return 0
            self._buf = bytes(nxt)
        n = min(len(b), len(self._buf))
        b[:n] = self._buf[:n]
        self._buf = self._buf[n:]
        return n


class VersionReader(io.RawIOBase):
    """A version's bytes as a seekable stream: a read starts streaming from where the last
    seek put it (WsgiDAV seeks once to a Range's start, then reads)."""

    def __init__(self, drive: Drive, version_id: int | None, size: int):
        self.drive, self.version_id, self.size = drive, version_id, size
        self.pos = 0
        self._it: Iterator[bytes] | None = None
        self._buf = b""

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.size}[whence]
        self.pos, self._it, self._buf = max(0, min(base + offset, self.size)), None, b""
        return self.pos

    def read(self, n: int = -1) -> bytes:
        if self.version_id is None or self.pos >= self.size:
            return b""
        if self._it is None:
            self._it = self.drive.stream_version(self.version_id, self.pos, self.size)
        while not self._buf:
            chunk = next(self._it, None)
            if chunk is None:
                return b""
            self._buf = bytes(chunk)
        if n is None or n < 0 or n >= len(self._buf):
            out, self._buf = self._buf, b""
        else:
            out, self._buf = self._buf[:n], self._buf[n:]
        self.pos += len(out)
        return out


class Provider(DAVProvider):
    """Resources for the signed-in user (``environ["blockdrive.dav"]``, a
    :class:`DavRequest`, set by :mod:`webapi.dav.app`). ``handlers`` may answer a request
    before WsgiDAV does: each is called as ``handler(environ, start_response, provider)`` and
    returns a response, or None to pass."""

    def __init__(self, handlers=()):
        super().__init__()
        self.handlers = list(handlers)

    def is_readonly(self) -> bool:
        return False

    def ref_url_to_path(self, ref_url: str) -> str:
        return ref_url  # an id-namespace URL, resolved by get_resource_inst

    def get_resource_inst(self, path: str, environ: dict):
        req: DavRequest = environ["blockdrive.dav"]
        if path.startswith(IDS + "/"):
            return self._by_ref(path, environ, req)
        parts = parts_of(path)
        path = "/" + "/".join(parts)
        if parts == [SHARED] and req.shares():
            return SharedFolder(path, environ, req)
        info = req.lookup(parts)
        if info is None:
            return None
        cls = FolderResource if info.kind == "folder" else FileResource
        return cls(path, environ, req, info)

    def _by_ref(self, ref: str, environ: dict, req: DavRequest):
        """The resource a lock's root names (for lockdiscovery): the path the user sees it at."""
        last = ref.rsplit("/", 1)[-1]
        if ref.startswith(f"{IDS}/shared/"):
            return SharedFolder("/" + SHARED, environ, req)
        if not last.isdigit():
            return None
        with dav_errors(), contextlib.suppress(DAVError):
            info = req.drive.get(req.user.id, int(last))
            return (FolderResource if info.kind == "folder" else FileResource)(
                "/" + "/".join(visible_parts(req, info)), environ, req, info)
        return None

    def custom_request_handler(self, environ, start_response, default_handler):
        for handler in self.handlers:
            answer = handler(environ, start_response, self)
            if answer is not None:
                return answer
        return default_handler(environ, start_response)


def lock_unmapped(environ, start_response, provider) -> None:
    """A request handler that answers nothing: a LOCK of an unmapped URL in a folder the
    user may write first makes an empty file there (RFC 4918, 7.3), which WsgiDAV then locks
    as an existing resource; the answer is still 201 (see :mod:`webapi.dav.app`)."""
    if environ["REQUEST_METHOD"] != "LOCK" or provider.get_resource_inst(environ["PATH_INFO"], environ) is not None:
        return None
    parts = parts_of(environ["PATH_INFO"])
    parent = provider.get_resource_inst("/" + "/".join(parts[:-1]), environ) if parts else None
    if isinstance(parent, FolderResource) and parent.writable():
        Upload(parent.create_empty_resource(parts[-1]), parent.info, parts[-1], if_match=None).writelines([])
        environ["blockdrive.dav.created"] = True
    return None


TAG = re.compile(r"<([^>]*)>")


def if_tags_to_ref_urls(environ, start_response, provider) -> None:
    """A request handler that answers nothing: it rewrites the resource tags of an ``If``
    header (``<http://host/dav/a> (...)``) to the resources' reference URLs, which is what
    WsgiDAV matches them against. Lock tokens inside the parentheses stay as they are."""
    header = environ.get("HTTP_IF")
    if not header or "<" not in header:
        return None
    out, depth, pos = [], 0, 0
    for m in TAG.finditer(header):
        depth += header.count("(", pos, m.start()) - header.count(")", pos, m.start())
        out.append(header[pos:m.start()])
        pos = m.end()
        if depth > 0:  # a lock token
            out.append(m.group(0))
            continue
        res = provider.get_resource_inst(tag_path(m.group(1), environ), environ)
        out.append(f"<{res.get_ref_url()}>" if res is not None else m.group(0))
    environ["HTTP_IF"] = "".join(out) + header[pos:]
    return None


def tag_path(url: str, environ) -> str:
    """The path inside the mount of an ``If`` header's resource tag."""
    path = unquote(urlparse(url).path)
    mount = environ["blockdrive.dav"].mount
    return path[len(mount):] if path.startswith(mount) else path


def visible_parts(req: DavRequest, info: NodeInfo) -> list[str]:
    """The path at which the user sees ``info``: in their own tree, or under a share."""
    names: list[str] = []
    cur = info
    while cur.parent_id is not None:
        if cur.owner_id != req.user.id:
            for name, top in req.shares().items():
                if top.id == cur.id:
                    return [SHARED, name, *names]
        names.insert(0, cur.name)
        cur = req.drive.get(req.user.id, cur.parent_id)
    return names
