"""The OpenAPI document describes every route the app serves, with its methods."""

import re

from tests.conftest import make_config
from webapi import create_app
from webapi.openapi import document


def test_every_flask_route_is_documented(tmp_path):
    app = create_app(make_config(tmp_path))
    paths = document()["paths"]
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        if rule.endpoint.startswith("nextcloud."):
            # Nextcloud's protocol (status.php, OCS, chunked upload with MKCOL, MOVE and
            # PROPFIND), documented with WebDAV in docs/webdav.md, not the JSON API's
            continue
        if rule.endpoint.startswith("web.") or rule.rule.startswith(("/admin/users", "/admin/jobs/")):
            continue  # the web app's and the admin's pages and forms, for people: docs/web.md
        path = re.sub(r"<(?:[a-z]+(?:\([^)]*\))?:)?([a-z0-9_]+)>", r"{\1}", rule.rule).rstrip("/") or "/"
        path = path.replace("{node_id}", "{id}").replace("{version_id}", "{vid}")
        for method in rule.methods - {"HEAD", "OPTIONS"} | ({"HEAD"} if "tus" in rule.endpoint and "HEAD" in rule.methods else set()) | ({"OPTIONS"} if rule.endpoint == "tus.options" else set()):
            if method.lower() not in paths.get(path, {}):
                missing.append(f"{method} {path}")
    assert missing == []


def test_every_operation_documents_its_errors():
    for path, item in document()["paths"].items():
        for method, op in item.items():
            if method == "parameters":
                continue
            codes = set(op["responses"])
            form = "application/x-www-form-urlencoded" in op.get("requestBody", {}).get("content", {})
            # a browser form's success is a redirect (post/redirect/get)
            assert any(c.startswith("2") for c in codes) or (form and "303" in codes), (method, path)
            if op.get("security") != [] and not path.startswith("/s/"):
                assert "401" in codes, (method, path)
