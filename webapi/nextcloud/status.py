"""``/status.php``: what Nextcloud clients ask first to learn that a server is a Nextcloud
one, which version it speaks and that it is ready."""

from __future__ import annotations

from flask import Blueprint, jsonify

bp = Blueprint("nextcloud_status", __name__)

# The Nextcloud release whose dialect this server speaks; clients refuse too old a server
VERSION = "28.0.0.0"
VERSIONSTRING = "28.0.0"
PRODUCT = "blockdrive"


@bp.get("/status.php")
def status():
    return jsonify({"installed": True, "maintenance": False, "needsDbUpgrade": False, "version": VERSION,
                    "versionstring": VERSIONSTRING, "edition": "", "productname": PRODUCT,
                    "extendedSupport": False})
