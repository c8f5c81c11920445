"""The Nextcloud dialect beside WebDAV, so Nextcloud's own clients (and rclone's
``vendor=nextcloud``) sync with blockdrive: ``/status.php``, the OCS capabilities and user
routes, chunked upload under ``/remote.php/dav/uploads/``, and the apps' browser sign-in
(Login Flow v2, ``/index.php/login/v2``). The files themselves
(``/remote.php/dav/files/{user}/``) are the WebDAV provider's."""

from __future__ import annotations

from flask import Blueprint

from . import chunked, loginflow, ocs, status

bp = Blueprint("nextcloud", __name__)
for _part in (status, ocs, chunked, loginflow):
    bp.register_blueprint(_part.bp)
