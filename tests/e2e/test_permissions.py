"""The permission matrix: owner, editor, viewer, stranger, anonymous and link holder against
every route, with the exact status each must get. What the caller may not see is 404, what
they see but may not change is 403, no credentials is 401."""

from __future__ import annotations

import base64
import hashlib
import os
from urllib.parse import urlparse

import pytest

ROLES = ("owner", "editor", "viewer", "stranger", "anon", "link")
EMPTY = hashlib.sha256(b"").hexdigest()
TUS = {"Tus-Resumable": "1.0.0"}


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


# (name, method, path, kwargs, expected statuses in ROLES order). Paths and bodies are
# formatted with the fresh world of each case: {folder} {file} {vid} {trashed} {viewer}
# {link_id} {upload} {third} {block}.
MATRIX = [
    ("account", "GET", "/api/v1/account", {}, (200, 200, 200, 200, 401, 401)),
    ("node", "GET", "/api/v1/nodes/{file}", {}, (200, 200, 200, 404, 401, 401)),
    ("children", "GET", "/api/v1/nodes/{folder}/children", {}, (200, 200, 200, 404, 401, 401)),
    ("mkdir", "POST", "/api/v1/nodes/{folder}/children", {"json": {"name": "new"}}, (201, 201, 403, 404, 401, 401)),
    ("upload", "PUT", "/api/v1/nodes/{folder}/children/up.txt", {"data": b"hi"}, (201, 201, 403, 404, 401, 401)),
    ("new-version", "PUT", "/api/v1/nodes/{folder}/children/f.txt", {"data": b"v3"}, (200, 200, 403, 404, 401, 401)),
    ("download", "GET", "/api/v1/nodes/{file}/content", {}, (200, 200, 200, 404, 401, 401)),
    ("rename", "PATCH", "/api/v1/nodes/{file}", {"json": {"name": "g.txt"}}, (200, 200, 403, 404, 401, 401)),
    ("move", "PATCH", "/api/v1/nodes/{file}", {"json": {"parent_id": "{sub}"}}, (200, 200, 403, 404, 401, 401)),
    ("copy", "POST", "/api/v1/nodes/{file}/copy", {"json": {"parent_id": "{folder}", "name": "c.txt"}},
     (201, 201, 403, 404, 401, 401)),
    ("delete", "DELETE", "/api/v1/nodes/{file}", {}, (200, 200, 403, 404, 401, 401)),
    ("trash", "GET", "/api/v1/trash", {}, (200, 200, 200, 200, 401, 401)),
    ("restore", "POST", "/api/v1/nodes/{trashed}/restore", {}, (200, 404, 404, 404, 401, 401)),
    ("versions", "GET", "/api/v1/nodes/{file}/versions", {}, (200, 200, 200, 404, 401, 401)),
    ("restore-version", "POST", "/api/v1/nodes/{file}/versions/{vid}/restore", {}, (200, 200, 403, 404, 401, 401)),
    ("resolve", "GET", "/api/v1/resolve?path=/{folder_name}/f.txt", {}, (200, 404, 404, 404, 401, 401)),
    ("shares", "GET", "/api/v1/nodes/{folder}/shares", {}, (200, 403, 403, 404, 401, 401)),
    ("grant", "POST", "/api/v1/nodes/{folder}/shares", {"json": {"email": "{third}", "role": "viewer"}},
     (201, 403, 403, 404, 401, 401)),
    ("revoke", "DELETE", "/api/v1/nodes/{folder}/shares/{viewer}", {}, (204, 403, 403, 404, 401, 401)),
    ("shared-with-me", "GET", "/api/v1/shared-with-me", {}, (200, 200, 200, 200, 401, 401)),
    ("links", "GET", "/api/v1/nodes/{folder}/links", {}, (200, 403, 403, 404, 401, 401)),
    ("link-create", "POST", "/api/v1/nodes/{folder}/links", {"json": {"role": "viewer"}},
     (201, 403, 403, 404, 401, 401)),
    ("link-revoke", "DELETE", "/api/v1/nodes/{folder}/links/{link_id}", {}, (204, 403, 403, 404, 401, 401)),
    ("blocks-missing", "POST", "/api/v1/blocks/missing", {"json": {"hashes": [EMPTY]}}, (200, 200, 200, 200, 401, 401)),
    ("block-put", "PUT", "/api/v1/blocks/{block}", {"data": "{block_data}"}, (201, 201, 201, 201, 401, 401)),
    ("commit", "POST", "/api/v1/nodes/{folder}/children/e.bin/commit",
     {"json": {"blocks": [], "size": 0, "sha256": EMPTY}}, (201, 201, 403, 404, 401, 401)),
    ("tus-create", "POST", "/api/v1/uploads",
     {"headers": {**TUS, "Upload-Length": "3", "Upload-Metadata": "filename " + _b64("t.bin") + ",parent_id {folder64}"}},
     (201, 201, 403, 404, 401, 401)),
    ("tus-head", "HEAD", "{upload}", {"headers": TUS}, (200, 404, 404, 404, 401, 401)),
    ("tus-patch", "PATCH", "{upload}", {"data": b"abc", "headers": {**TUS, "Upload-Offset": "0",
                                                                   "Content-Type": "application/offset+octet-stream"}},
     (204, 404, 404, 404, 401, 401)),
    ("tus-delete", "DELETE", "{upload}", {"headers": TUS}, (204, 404, 404, 404, 401, 401)),
    # public links: everyone holding the token reads; "anon" holds none (a made-up one)
    ("link-view", "GET", "/s/{token}", {}, (200, 200, 200, 200, 404, 200)),
    ("link-download", "GET", "/s/{token}/content?node_id={file}", {}, (200, 200, 200, 200, 404, 200)),
    ("link-outside", "GET", "/s/{token}/content?node_id={outside}", {}, (404, 404, 404, 404, 404, 404)),
]


@pytest.fixture(scope="module")
def people(server):
    owner, editor, viewer, stranger, third = (server.user() for _ in range(5))
    return {"owner": owner, "editor": editor, "viewer": viewer, "stranger": stranger, "third": third,
            "anon": server.anon()}


def _world(server, p) -> dict:
    """A fresh shared folder for one case: owner's /shared-<n> with f.txt (two versions) and
    a subfolder, shared to editor and viewer, with a public link; plus a trashed file."""
    o = p["owner"]
    folder = o.mkdir(o.root, f"shared-{os.urandom(4).hex()}")
    f = o.upload(folder["id"], "f.txt", b"v1").json()
    o.upload(folder["id"], "f.txt", b"v2")
    vid = o.get(f"/api/v1/nodes/{f['id']}/versions").json()["items"][-1]["id"]
    sub = o.mkdir(folder["id"], "sub")
    trashed = o.upload(folder["id"], "t.txt", b"t").json()
    assert o.delete(f"/api/v1/nodes/{trashed['id']}").status_code == 200
    for who in ("editor", "viewer"):
        r = o.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": p[who].email, "role": who})
        assert r.status_code == 201
    link = o.post(f"/api/v1/nodes/{folder['id']}/links", json={}).json()
    outside = o.upload(o.root, f"outside-{os.urandom(3).hex()}.txt", b"o").json()
    meta = "filename " + _b64("u.bin")
    r = o.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "3", "Upload-Metadata": meta})
    block_data = os.urandom(1000)
    return {"folder_name": folder["name"], "folder": folder["id"], "file": f["id"], "vid": vid, "sub": sub["id"], "trashed": trashed["id"],
            "viewer": p["viewer"].id, "link_id": link["id"], "token": link["token"], "third": p["third"].email,
            "outside": outside["id"], "upload": urlparse(r.headers["Location"]).path,
            "folder64": _b64(str(folder["id"])), "block": hashlib.sha256(block_data).hexdigest(),
            "block_data": block_data}


def _fill(value, w):
    if isinstance(value, str):
        if value == "{block_data}":
            return w["block_data"]
        out = value.format(**w)
        return int(out) if value in ("{sub}", "{folder}") else out
    if isinstance(value, dict):
        return {k: _fill(v, w) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, w) for v in value]
    return value


@pytest.mark.parametrize("name,method,path,kwargs,expected", MATRIX, ids=[m[0] for m in MATRIX])
def test_permission_matrix(server, people, name, method, path, kwargs, expected):
    from .conftest import Client
    got = {}
    for role, want in zip(ROLES, expected):
        w = _world(server, people)
        if role == "link":
            client = Client(server.url, w["token"])  # a link token is not an API token
        elif role == "anon" and path.startswith("/s/"):
            w = {**w, "token": "bl_" + "x" * 43}
            client = people["anon"]
        else:
            client = people[role]
        r = client.request(method, _fill(path, w), **_fill(kwargs, w))
        got[role] = r.status_code
        if r.status_code >= 400 and method != "HEAD":
            assert r.headers["Content-Type"].startswith("application/problem+json"), (role, r.text)
    assert got == dict(zip(ROLES, expected))
