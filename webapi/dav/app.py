"""Where WebDAV is mounted in the app, and what happens before WsgiDAV sees a request.

The same WSGI app (same gunicorn, same workers) serves the JSON API and WebDAV: requests for
``/dav/`` and for Nextcloud's spellings of it (``/remote.php/dav/files/{user}/`` and the older
``/remote.php/webdav/``) are signed in with HTTP Basic here and handed to WsgiDAV over
:class:`webapi.dav.provider.Provider`; everything else goes on to Flask."""

from __future__ import annotations

import logging
import re
import time
from urllib.parse import unquote, urlparse

from werkzeug.wrappers import Response

from storage import errors as e
from storage import traffic
from wsgidav.error_printer import ErrorPrinter
from wsgidav.request_resolver import RequestResolver
from wsgidav.wsgidav_app import WsgiDAVApp

from .. import metrics
from ..errors import problem, problem_details, status_for
from .auth import basic_user
from .locks import DbLockManager, DbLockStorage
from .props import DbPropertyManager
from . import listing
from .provider import DavRequest, Provider, if_tags_to_ref_urls, lock_unmapped, oc_id

log = logging.getLogger("blockdrive.dav")
XML = "application/xml; charset=utf-8"
# the metrics' endpoint label of each mount: its rule, as the API's routes are labelled
ENDPOINT = {"/dav": "/dav/<path>", "/remote.php/webdav": "/remote.php/webdav/<path>",
            "/remote.php/dav/files": "/remote.php/dav/files/<user>/<path>"}

# /dav, /remote.php/webdav, /remote.php/dav/files/<user>: the mount, then the path inside
MOUNT = re.compile(r"^(/dav|/remote\.php/webdav|/remote\.php/dav/files/([^/]+))(/.*)?$")


def dav_config(lock_storage, prop_manager) -> dict:
    return {
        "provider_mapping": {"/": Provider(handlers=[if_tags_to_ref_urls, lock_unmapped, listing.handler])},
        "lock_storage": lock_storage,
        "property_manager": prop_manager,
        "middleware_stack": [ErrorPrinter, RequestResolver],  # signing in happens before
        "block_size": 1 << 20,  # bytes read from a PUT's body at a time
        "verbose": 1,
        "logging": {"enable": False},
        "suppress_version_info": True,
        "add_header_MS_Author_Via": True,
        "hotfixes": {"re_encode_path_info": True, "emulate_win32_lastmod": False},
        "dir_browser": {"enable": False},
        "http_authenticator": {"domain_controller": None, "accept_basic": True, "accept_digest": False},
    }


class DavMount:
    """WSGI middleware: WebDAV requests to WsgiDAV, the rest to ``next_app`` (Flask)."""

    def __init__(self, flask_app, next_app):
        self.flask, self.next_app = flask_app, next_app
        drive = flask_app.extensions["drive"]
        # Locks and dead properties in the database, shared by every worker and server. The
        # lock manager is set on the provider after WsgiDAV is built: WsgiDAV would wrap a
        # lock storage in its own manager, which is not atomic across processes.
        self.dav = WsgiDAVApp(dav_config(False, DbPropertyManager(drive)))
        for provider in self.dav.provider_map.values():
            provider.set_lock_manager(DbLockManager(DbLockStorage(drive)))

    def __call__(self, environ, start_response):
        m = MOUNT.match(environ.get("PATH_INFO", ""))
        if m is None:
            return self.next_app(environ, start_response)
        t0 = time.perf_counter()
        mount, url_user, rest = m.group(1), m.group(2), m.group(3) or "/"
        ext = self.flask.extensions
        with self.flask.request_context(environ):
            try:
                user = basic_user()
                if url_user is not None and unquote(url_user).lower() != user.email.lower():
                    raise e.NotFound("no such user folder")
            except e.BlockdriveError as exc:
                resp = problem(status_for(exc), exc.code, type(exc).__name__, exc.message,
                               **problem_details(exc))
                return resp(environ, start_response)
        refused = refusal(environ)
        if refused is not None:
            return refused(environ, start_response)
        environ["blockdrive.dav"] = DavRequest(ext["drive"], ext["sharing"], user, mount)
        environ["SCRIPT_NAME"] = environ.get("SCRIPT_NAME", "").rstrip("/") + mount
        environ["PATH_INFO"] = rest
        environ["wsgidav.auth.user_name"] = user.email
        dest = environ.get("HTTP_DESTINATION")
        if dest is not None:
            inner = destination_path(dest, user.email, request_hosts(environ))
            if inner is None:
                return Response("the Destination must be on this server's WebDAV mount, of this user\n", 502,
                                content_type="text/plain")(environ, start_response)
            environ["HTTP_DESTINATION"] = inner

        def respond(status, headers, exc_info=None):
            count_traffic(ext["drive"], user.id, environ, status, headers)
            endpoint = ENDPOINT[mount if url_user is None else "/remote.php/dav/files"]
            metrics.REQUESTS.labels(metrics.method_label(environ["REQUEST_METHOD"]), endpoint, status[:3]).inc()
            metrics.LATENCY.labels(endpoint).observe(time.perf_counter() - t0)
            if status[:3] in ("200", "204") and environ.get("blockdrive.dav.created"):
                status = "201 Created"  # a COPY, MOVE or LOCK that made its resource
            headers = [(k, XML if k.lower() == "content-type" and v == "application; charset=utf-8" else v)
                       for k, v in headers  # WsgiDAV 4.3's answer to a new LOCK
                       # a streamed listing has no length, and needs no new connection for it
                       if not (environ.get(listing.STREAMED) and k.lower() == "connection")]
            headers = [(k, f"<{v}>" if k.lower() == "lock-token" and not v.startswith("<") else v)
                       for k, v in headers]  # RFC 4918, 10.5: a Coded-URL, in angle brackets
            return start_response(status, headers + oc_headers(environ, status), exc_info)
        return self.dav(environ, respond)


def refusal(environ):
    """A plain-text answer for what we refuse before WsgiDAV sees it, or None:
    PROPFIND with Depth infinity (RFC 4918, 9.1: a whole drive in one answer), and a
    Request-URI with a fragment (a client bug that would act on the URI without it)."""
    if environ["REQUEST_METHOD"] == "PROPFIND" and environ.get("HTTP_DEPTH", "infinity").lower() == "infinity":
        return Response('<?xml version="1.0" encoding="utf-8"?>\n<d:error xmlns:d="DAV:">'
                        "<d:propfind-finite-depth/></d:error>", 403, content_type=XML)
    if "#" in environ.get("RAW_URI", ""):
        return Response("the request URI has a fragment (#...)\n", 400, content_type="text/plain")
    return None


def request_hosts(environ) -> tuple[str, ...]:
    """The host names this request reached us by (``Host`` and a proxy's ``X-Forwarded-Host``):
    a ``Destination`` on another host is not ours."""
    raw = (environ.get("HTTP_HOST", ""), *environ.get("HTTP_X_FORWARDED_HOST", "").split(","))
    return tuple(h.strip().lower() for h in raw if h.strip())


def destination_path(dest: str, email: str, hosts: tuple[str, ...]) -> str | None:
    """A Destination header's path inside our mount (any spelling of it, for this user, on
    one of ``hosts``), still quoted as the client sent it (WsgiDAV unquotes it), or None
    when it points elsewhere."""
    url = urlparse(dest)
    if url.netloc and url.netloc.lower() not in hosts:
        return None
    path = url.path
    m = MOUNT.match(unquote(path)) if path else None
    if m is None or (m.group(2) is not None and unquote(m.group(2)).lower() != email.lower()):
        return None
    segments = path.split("/")[m.group(1).count("/") + 1:]
    return "/" + "/".join(segments)


def count_traffic(drive, user_id: int, environ, status: str, headers) -> None:
    """Record a PUT that made a version and a GET that sends content, as the API's doors do
    (:mod:`storage.traffic`: the reports' uploads and downloads)."""
    method = environ["REQUEST_METHOD"]
    result = environ.get("blockdrive.dav.result")
    if method == "PUT" and result is not None and status.startswith("2"):
        traffic.record(drive.engine, user_id, uploads=1, bytes_in=result.node.size or 0)
    elif method == "GET" and status[:3] in ("200", "206"):
        size = next((v for k, v in headers if k.lower() == "content-length"), "0")
        traffic.record(drive.engine, user_id, downloads=1, bytes_out=int(size) if size.isdigit() else 0)


def oc_headers(environ, status: str) -> list[tuple[str, str]]:
    """Nextcloud's response headers after a PUT: the file's id and etag, and that its mtime
    was taken."""
    result = environ.get("blockdrive.dav.result")
    if result is None or not status.startswith("2"):
        return []
    node = result.node
    headers = [("OC-FileId", oc_id(node.id)), ("OC-ETag", f'"{node.sha256}"')]
    if environ.get("blockdrive.dav.mtime_accepted"):
        headers.append(("X-OC-MTime", "accepted"))
    return headers
