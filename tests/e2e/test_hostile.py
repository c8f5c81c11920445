"""Hostile uploads against the real server, on SQLite and MariaDB.

- HTML, SVG and XHTML content is never rendered: every route that serves a file's bytes (the
  owner's download, a given version, ranges, HEAD, a 304, a share recipient's download, public
  links with and without a password, a file below a linked folder) answers with
  ``Content-Disposition: attachment``, ``X-Content-Type-Options: nosniff``, a CSP with
  ``sandbox`` and a non-HTML content type.
- traversal and odd names (``..``, ``../``, ``%2e%2e%2f`` percent-encoded in the URL and
  decoded in a JSON body, NUL, U+202E, ``/``, more than 255 UTF-8 bytes) are a clear 4xx on
  every route that names a node (upload PUT, mkdir, rename, move, copy, tus creation, block
  commit, the batch routes) and create nothing.
- one byte over the upload size limit and one byte over the quota is a 413, with a
  Content-Length and chunked, on PUT, tus and the block API; and nothing is kept: used bytes
  unchanged, no new node or version, no new live block after gc, and the pack bytes on disk
  back where they were once gc and compact have run.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import pytest
import requests
import sqlalchemy as sa

from storage.config import load_config
from storage.drive import Drive
from storage.models import Block, FileVersion, Node
from tests.e2e.conftest import BIN, own_mysql_database, start_server, stop_server
from tests.e2e.test_api import problem
from tests.reliability import figures
from tests.unit.jobs.conftest import spark  # noqa: F401  (the session-wide SparkSession fixture)

UPLOAD_LIMIT = 6_000_000
# free plan (premium users get the default 1 TB and meet only the upload limit). Over 64
# blocks each, so a refused body has had some of its blocks written to a pack.
QUOTA = 5_000_000
TUS = {"Tus-Resumable": "1.0.0"}

PAYLOADS = {
    "page.html": b"<!doctype html><html><body><script>alert(document.cookie)</script></body></html>",
    "image.svg": (b'<svg xmlns="http://www.w3.org/2000/svg" onload="alert(1)">'
                  b"<script>alert(2)</script><rect width='10' height='10'/></svg>"),
    "doc.xhtml": (b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><body>'
                  b"<script>alert(3)</script></body></html>"),
}

# name -> how it travels in a URL path segment (percent-encoded) and in a JSON body
BAD_NAMES = {
    "dotdot": "..",
    "dotdot-slash": "../",
    "traversal": "../../etc/passwd",
    "slash": "a/b",
    "nul": "a\x00b.txt",
    "rlo": "invoice\u202egpj.exe",
    "long": "é" * 128,  # 256 UTF-8 bytes
}


@pytest.fixture(scope="module", params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def limited(request, tmp_path_factory):
    """A server with a small upload limit and a small free quota, whose gc and compact
    reclaim at once (no grace period), so that "nothing kept" can be checked on disk."""
    env = {"BLOCKDRIVE_SERVER_MAX_UPLOAD_BYTES": str(UPLOAD_LIMIT), "BLOCKDRIVE_QUOTA_FREE_BYTES": str(QUOTA),
           "BLOCKDRIVE_GC_GRACE_SECONDS": "0", "BLOCKDRIVE_JOBS_OPEN_PACK_GRACE_SECONDS": "0",
           "BLOCKDRIVE_JOBS_SHUFFLE_PARTITIONS": "2",
           # compact deletes what gc retired and rewrites dead packs, but merges no small packs
           # (a merge leaves old and new on disk until the next run)
           "BLOCKDRIVE_JOBS_FILL_THRESHOLD": "0",
           # small blocks: a refused body has blocks cut and written before its last byte
           "BLOCKDRIVE_STORAGE_CHUNK_MIN": str(16 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(64 * 1024),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(256 * 1024),
           # every upload in a pack of its own: a shared pack gains its footer when it is sealed
           # (idle, exit), which would count as bytes kept between the two measures of the disk
           "BLOCKDRIVE_STORAGE_SHARED_PACK_REQUEST_BYTES": "0"}
    with contextlib.ExitStack() as stack:
        db_url = None if request.param == "sqlite" else \
            stack.enter_context(own_mysql_database(request.getfixturevalue("mysql_url")))
        proc, srv = start_server(tmp_path_factory.mktemp("hostile"), db_url, extra_env=env)
        srv.drive = Drive(load_config(env=srv.env))  # the same store, read directly by the checks
        yield srv
        srv.drive.close()
        stop_server(proc)
        out = subprocess.run([str(BIN), "fsck", "--deep"], env=srv.env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def _safe_headers(r, what: str) -> None:
    h = r.headers
    assert h.get("Content-Disposition", "").startswith("attachment"), (what, h)
    assert h.get("X-Content-Type-Options") == "nosniff", (what, h)
    assert "sandbox" in h.get("Content-Security-Policy", "").split(";")[0].split(), (what, h)
    if r.status_code != 304:
        ctype = h.get("Content-Type", "")
        assert "html" not in ctype and "svg" not in ctype and "xml" not in ctype, (what, ctype)


# ---- 1. served bytes are never rendered -----------------------------------------------------

def test_html_svg_xhtml_are_attachments_on_every_download_path(limited):
    owner, viewer, editor = limited.user(), limited.user(), limited.user()
    anon = limited.anon()
    folder = owner.mkdir(owner.root, "site")
    files = {}
    for name, data in PAYLOADS.items():
        first = owner.upload(folder["id"], name, b"<p>old</p>" + data)
        assert first.status_code == 201, first.text
        r = owner.upload(folder["id"], name, data)
        assert r.status_code == 200, r.text
        files[name] = (r.json(), first.json()["version_id"])
    assert owner.post(f"/api/v1/nodes/{folder['id']}/shares",
                      json={"email": viewer.email, "role": "viewer"}).status_code == 201
    open_link = owner.post(f"/api/v1/nodes/{folder['id']}/links", json={}).json()["token"]
    paths = 0
    for name, data in PAYLOADS.items():
        node, old_vid = files[name]
        nid = node["id"]
        assert owner.post(f"/api/v1/nodes/{nid}/shares", json={"email": editor.email, "role": "editor"}).status_code == 201
        file_link = owner.post(f"/api/v1/nodes/{nid}/links", json={}).json()["token"]
        pw_link = owner.post(f"/api/v1/nodes/{nid}/links", json={"password": "s3cret-pw"}).json()["token"]
        pw = {"X-Link-Password": "s3cret-pw"}
        etag = f'"{hashlib.sha256(data).hexdigest()}"'
        # (who, method, path, headers, expected status, expected body or None)
        cases = [
            (owner, "GET", f"/api/v1/nodes/{nid}/content", {}, 200, data),
            (owner, "HEAD", f"/api/v1/nodes/{nid}/content", {}, 200, b""),
            (owner, "GET", f"/api/v1/nodes/{nid}/content?version={old_vid}", {}, 200, b"<p>old</p>" + data),
            (owner, "GET", f"/api/v1/nodes/{nid}/content", {"Range": "bytes=0-9"}, 206, data[:10]),
            (owner, "GET", f"/api/v1/nodes/{nid}/content", {"Range": "bytes=-7"}, 206, data[-7:]),
            (owner, "GET", f"/api/v1/nodes/{nid}/content?version={old_vid}", {"Range": "bytes=3-"}, 206,
             (b"<p>old</p>" + data)[3:]),
            (owner, "GET", f"/api/v1/nodes/{nid}/content", {"If-None-Match": etag}, 304, b""),
            (viewer, "GET", f"/api/v1/nodes/{nid}/content", {}, 200, data),
            (viewer, "GET", f"/api/v1/nodes/{nid}/content", {"Range": "bytes=5-20"}, 206, data[5:21]),
            (editor, "GET", f"/api/v1/nodes/{nid}/content?version={old_vid}", {}, 200, b"<p>old</p>" + data),
            (anon, "GET", f"/s/{file_link}/content", {}, 200, data),
            (anon, "HEAD", f"/s/{file_link}/content", {}, 200, b""),
            (anon, "GET", f"/s/{file_link}/content", {"Range": "bytes=1-2"}, 206, data[1:3]),
            (anon, "GET", f"/s/{pw_link}/content", pw, 200, data),
            (anon, "GET", f"/s/{pw_link}/content", {**pw, "Range": "bytes=0-0"}, 206, data[:1]),
            (anon, "GET", f"/s/{open_link}/content?node_id={nid}", {}, 200, data),
        ]
        for who, method, path, headers, status, body in cases:
            r = who.request(method, path, headers=headers)
            assert r.status_code == status, (name, method, path, headers, r.status_code, r.text[:200])
            assert r.content == body, (name, method, path, headers)
            _safe_headers(r, (name, method, path, headers))
            paths += 1
        # a password link asked without its password serves no bytes at all
        r = anon.get(f"/s/{pw_link}/content")
        problem(r, 401)
        assert data not in r.content
    figures.record("hostile downloads", runs=paths, faults=0, detected=0)


# ---- 2. traversal and odd names -------------------------------------------------------------

def _tree(c, folder_id: int) -> list[str]:
    return sorted(n["name"] for n in c.get(f"/api/v1/nodes/{folder_id}/children?limit=1000").json()["items"])


def _is_clear_4xx(r, what) -> None:
    assert 400 <= r.status_code < 500, (what, r.status_code, r.text[:300])
    assert r.headers.get("Content-Type", "").startswith("application/problem+json"), (what, r.headers)
    assert r.json()["status"] == r.status_code and r.json().get("title"), (what, r.text)


def test_traversal_and_odd_names_are_refused_on_every_naming_route(limited):
    a = limited.user()
    box = a.mkdir(a.root, "box")
    sub = a.mkdir(box["id"], "sub")
    f = a.upload(box["id"], "f.txt", b"hello").json()
    block = b"block content for commits"
    h = hashlib.sha256(block).hexdigest()
    assert a.put(f"/api/v1/blocks/{h}", data=block).status_code in (200, 201)
    before_root, before_box, before_sub = _tree(a, a.root), _tree(a, box["id"]), _tree(a, sub["id"])
    used = a.get("/api/v1/account").json()["used_bytes"]
    refused = 0
    for label, bad in BAD_NAMES.items():
        seg = quote(bad, safe="")  # '/' travels as %2F, NUL as %00, U+202E as %E2%80%AE
        attempts = {
            "upload PUT": a.put(f"/api/v1/nodes/{sub['id']}/children/{seg}", data=b"x"),
            "mkdir": a.post(f"/api/v1/nodes/{sub['id']}/children", json={"name": bad, "kind": "folder"}),
            "rename": a.patch(f"/api/v1/nodes/{f['id']}", json={"name": bad}),
            "move+rename": a.patch(f"/api/v1/nodes/{f['id']}", json={"name": bad, "parent_id": sub["id"]}),
            "copy": a.post(f"/api/v1/nodes/{f['id']}/copy", json={"parent_id": sub["id"], "name": bad}),
            "tus creation": a.post("/api/v1/uploads", headers={
                **TUS, "Upload-Length": "5",
                "Upload-Metadata": f"filename {_b64(bad)},parent_id {_b64(str(sub['id']))}"}),
            "block commit": a.post(f"/api/v1/nodes/{sub['id']}/children/{seg}/commit",
                                   json={"blocks": [h], "size": len(block), "sha256": h}),
        }
        for what, r in attempts.items():
            _is_clear_4xx(r, (label, what))
            refused += 1
        for route, key, entry in (
                ("/api/v1/batch/folders", "folders", {"parent_id": sub["id"], "name": bad}),
                ("/api/v1/batch/commit", "files", {"parent_id": sub["id"], "name": bad, "blocks": [h],
                                                   "size": len(block), "sha256": h})):
            r = a.post(route, json={key: [entry]})
            assert r.status_code == 200, r.text
            (res,) = r.json()["results"]
            assert res.get("error", {}).get("code") == "invalid-name", (label, route, res)
            refused += 1
    # "%2e%2e%2f" sent percent-encoded is decoded by the server to "../": refused like it
    for seg in ("%2e%2e%2f", "%2E%2E%2Fx", "%2e%2e", "..%2f..%2fescape"):
        for r in (a.put(f"/api/v1/nodes/{sub['id']}/children/{seg}", data=b"x"),
                  a.post(f"/api/v1/nodes/{sub['id']}/children/{seg}/commit",
                         json={"blocks": [h], "size": len(block), "sha256": h})):
            _is_clear_4xx(r, seg)
            refused += 1
    # Sent twice encoded it reaches the drive as the literal text "%2e%2e%2f": names are never
    # decoded again, so it is an ordinary name in the folder it was put in, not a way out of it.
    r = a.put(f"/api/v1/nodes/{sub['id']}/children/%252e%252e%252fescape", data=b"literal")
    assert r.status_code == 201 and r.json()["parent_id"] == sub["id"] and r.json()["name"] == "%2e%2e%2fescape"
    assert a.get("/api/v1/resolve", params={"path": "/box/sub/%2e%2e%2fescape"}).json()["id"] == r.json()["id"]
    assert a.delete(f"/api/v1/nodes/{r.json()['id']}").status_code == 200
    # nothing was created, renamed or moved by any refused request, and nothing charged
    assert (_tree(a, a.root), _tree(a, box["id"]), _tree(a, sub["id"])) == (before_root, before_box, before_sub)
    assert a.get(f"/api/v1/nodes/{f['id']}").json()["name"] == "f.txt"
    assert a.get("/api/v1/account").json()["used_bytes"] == used + len(b"literal")  # in the trash, still kept
    assert a.get("/api/v1/trash").json()["items"][0]["name"] == "%2e%2e%2fescape"
    figures.record("hostile names", runs=len(BAD_NAMES), faults=refused, detected=refused)


# ---- 3. one byte over the limits ------------------------------------------------------------

def _chunks(data: bytes, n: int = 65536):
    for i in range(0, len(data), n):
        yield data[i:i + n]


def _pack_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "packs").rglob("*") if p.is_file())


def _store(drive) -> dict:
    with drive.sm() as s:
        return {"live_blocks": s.execute(sa.select(sa.func.count()).select_from(Block)
                                         .where(Block.gc_marked_at.is_(None))).scalar_one(),
                "blocks": s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one(),
                "versions": s.execute(sa.select(sa.func.count()).select_from(FileVersion)).scalar_one(),
                "nodes": s.execute(sa.select(sa.func.count()).select_from(Node)).scalar_one()}


def _gc_and_compact(drive, spark) -> None:  # noqa: F811
    """gc retires the open packs the refused uploads left (their bytes were written before
    the limit was hit); compact then deletes retired packs. Both without a grace period."""
    from jobs.runner import run_job
    time.sleep(1.1)  # "older than the grace period" needs a clock second to have passed
    run_job("gc", drive, spark)
    time.sleep(1.1)
    run_job("compact", drive, spark)


def _over(c, label: str, attempt) -> None:
    """``attempt()`` must answer 413 (problem+json). A server may also stop reading an
    oversized chunked body and close the connection after its 413: that is refused too,
    and then no answer reaches the client."""
    try:
        r = attempt()
    except requests.ConnectionError:
        c.s.close()
        return
    assert r.status_code == 413, (label, r.status_code, r.text[:300])
    assert r.headers["Content-Type"].startswith("application/problem+json"), label
    c.s.close()  # the server may have left the body unread: a fresh connection for the next one


def test_one_byte_over_the_upload_limit_or_the_quota_is_413_and_keeps_nothing(limited, spark):  # noqa: F811
    big, small = limited.user(premium=True), limited.user()
    d = limited.drive
    keep = big.upload(big.root, "keep.bin", os.urandom(300_000))  # something live, that must stay
    assert keep.status_code == 201
    over_limit = os.urandom(UPLOAD_LIMIT + 1)
    over_quota = os.urandom(QUOTA + 1)
    assert len(over_quota) < UPLOAD_LIMIT  # the quota, not the upload limit, refuses it
    # The block API: blocks within the per-block limit are sent first (and kept, pinned in the
    # sender's block session and held as pending bytes); the one that would take the session
    # past the quota is refused before it is stored, so the commit lacks it.
    pieces = [over_quota[i:i + 200_000] for i in range(0, len(over_quota), 200_000)]
    hashes = []
    for p in pieces:
        h = hashlib.sha256(p).hexdigest()
        r = small.put(f"/api/v1/blocks/{h}", data=p)
        if p is pieces[-1]:
            problem(r, 413, "quota-exceeded")
        else:
            assert r.status_code == 201, r.text
        hashes.append(h)
    store0, disk0 = _store(d), _pack_bytes(limited.home)
    used0 = {c: c.get("/api/v1/account").json()["used_bytes"] for c in (big, small)}
    cases = 0

    for c, data, code in ((big, over_limit, None), (small, over_quota, "quota-exceeded")):
        name = f"over-{len(data)}.bin"
        _over(c, (code, "PUT with Content-Length"), lambda: c.upload(c.root, name, data))
        _over(c, (code, "PUT chunked"), lambda: c.upload(c.root, name, _chunks(data)))
        # tus: the declared length is refused before any byte is sent ...
        _over(c, (code, "tus creation"), lambda: c.post("/api/v1/uploads", headers={
            **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": f"filename {_b64(name)}"}))
        # ... and creation-with-upload carrying the bytes too
        _over(c, (code, "tus creation-with-upload"), lambda: c.post("/api/v1/uploads", data=data, headers={
            **TUS, "Upload-Length": str(len(data)), "Upload-Metadata": f"filename {_b64(name)}",
            "Content-Type": "application/offset+octet-stream"}))
        cases += 4
    sha = hashlib.sha256(over_quota).hexdigest()
    r = small.post(f"/api/v1/nodes/{small.root}/children/blocks.bin/commit",
                   json={"blocks": hashes, "size": len(over_quota), "sha256": sha})
    assert problem(r, 400, "invalid-input")["missing"] == 1
    r = small.post("/api/v1/batch/commit", json={"files": [{
        "parent_id": small.root, "name": "batch.bin", "blocks": hashes, "size": len(over_quota), "sha256": sha}]})
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid-input", r.text
    cases += 2

    # nothing kept: no name, no charge, no version, no ref; after gc + compact no new block
    # and no pack byte more than before
    for c in (big, small):
        assert c.get("/api/v1/account").json()["used_bytes"] == used0[c]
        names = _tree(c, c.root)
        assert not [n for n in names if n.startswith("over-") or n in ("blocks.bin", "batch.bin")], names
    with d.sm() as s:
        refs = s.execute(sa.select(sa.func.sum(Block.refcount)).where(
            Block.id.in_([bytes.fromhex(h) for h in hashes]))).scalar_one()
    assert refs == 0
    assert _store(d) == store0
    grown = _pack_bytes(limited.home)
    assert grown > disk0  # the refused chunked bodies did reach a pack: the check below means something
    _gc_and_compact(d, spark)
    store1, disk1 = _store(d), _pack_bytes(limited.home)
    assert store1 == store0, (store0, store1)
    assert disk1 <= disk0, (disk0, disk1)
    assert big.get(f"/api/v1/nodes/{keep.json()['id']}/content").status_code == 200
    # exactly at the limits is accepted: the refusals above were for the one byte
    r = big.upload(big.root, "at-limit.bin", _chunks(over_limit[:-1]))
    assert r.status_code == 201 and r.json()["size"] == UPLOAD_LIMIT, r.text
    # (by another user: the block session above still holds the first one's whole quota)
    fresh = limited.user()
    r = fresh.upload(fresh.root, "at-quota.bin", over_quota[:-1], headers={"If-None-Match": "*"})
    assert r.status_code == 201 and r.json()["size"] == QUOTA, r.text
    figures.record("hostile limits (413)", faults=cases, detected=cases, lost=0,
                   pack_bytes_before=disk0, pack_bytes_refused=grown - disk0, pack_bytes_after_gc=disk1)


def test_one_byte_over_the_block_limit_is_413_with_and_without_content_length(limited):
    """The block API's bound is the chunker's largest block: one byte past it is refused the
    same way whether the body comes with a Content-Length or chunked, and stores nothing."""
    c = limited.user()
    biggest = 256 * 1024  # BLOCKDRIVE_STORAGE_CHUNK_MAX above
    data = os.urandom(biggest + 1)
    h = hashlib.sha256(data).hexdigest()
    _over(c, "block PUT with Content-Length", lambda: c.put(f"/api/v1/blocks/{h}", data=data))
    _over(c, "block PUT chunked", lambda: c.put(f"/api/v1/blocks/{h}", data=_chunks(data)))
    r = c.post("/api/v1/blocks/missing", json={"hashes": [h]})
    assert r.json()["missing"] == [h]
    at = data[:-1]
    r = c.put(f"/api/v1/blocks/{hashlib.sha256(at).hexdigest()}", data=_chunks(at))
    assert r.status_code == 201, r.text
