"""The WsgiDAV peer of ``bench/dav.py``: WsgiDAV's own filesystem provider (the engine under
Seafile's seafdav) over one folder, as a WSGI app that gunicorn serves the way ``blockdrive
serve`` is served (gthread workers, the same number of workers and threads, an access log):

    gunicorn --worker-class gthread --workers 2 --threads 64 --bind 127.0.0.1:PORT \\
        --timeout 300 --access-logfile - 'bench.wsgidav_fs:app("/folder", "user", "password")'

The folder is the share ``/dav/``, behind HTTP Basic with the one user given, as blockdrive's
``/dav/`` is. Locks and dead properties live in each worker's memory (WsgiDAV's defaults): the
benchmark takes no locks and sets no properties.
"""

from __future__ import annotations

from wsgidav.fs_dav_provider import FilesystemProvider
from wsgidav.wsgidav_app import WsgiDAVApp

MOUNT = "/dav"


def app(root: str, user: str, password: str) -> WsgiDAVApp:
    """The WSGI app: ``root`` served read-write at ``/dav/`` to ``user`` with ``password``."""
    return WsgiDAVApp({
        "provider_mapping": {MOUNT: FilesystemProvider(root)},
        "simple_dc": {"user_mapping": {"*": {user: {"password": password}}}},
        "http_authenticator": {"accept_basic": True, "accept_digest": False, "default_to_digest": False},
        "dir_browser": {"enable": False},
        "lock_storage": True,
        "property_manager": True,
        "verbose": 1,
        "logging": {"enable": False},
    })
