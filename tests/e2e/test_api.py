"""Every route over HTTP against the real gunicorn server."""

from __future__ import annotations

import hashlib
import io
import os
import random
import time

import requests

PROBLEM = "application/problem+json"


def problem(r, status: int, code: str | None = None):
    assert r.status_code == status, (r.status_code, r.text)
    assert r.headers["Content-Type"].startswith(PROBLEM)
    body = r.json()
    assert body["status"] == status and body["type"].startswith("https://blockdrive.dev/problems/")
    if code:
        assert body["type"].endswith("/" + code), body
    return body


def test_login_account_and_rate_limit(server):
    alice = server.user()
    anon = server.anon()
    r = anon.post("/api/v1/auth/tokens", json={"email": alice.email, "password": "password123"})
    assert r.status_code == 201 and r.json()["token"].startswith("bd_")
    me = requests.get(server.url + "/api/v1/account", headers={"Authorization": "Bearer " + r.json()["token"]})
    assert me.json()["email"] == alice.email and me.json()["root_id"] == alice.root
    assert set(me.json()) >= {"email", "plan", "quota_bytes", "used_bytes", "root_id"}
    problem(anon.get("/api/v1/account"), 401, "unauthorized")
    problem(requests.get(server.url + "/api/v1/account", headers={"Authorization": "Bearer bd_nope"}), 401)
    for _ in range(5):  # the free failures
        problem(anon.post("/api/v1/auth/tokens", json={"email": alice.email, "password": "wrong-pass"}), 401)
    # Then each failure doubles the wait; once it runs for seconds, even the right password
    # from this address waits (the owner elsewhere does not: tests/e2e/test_auth_security.py).
    for _ in range(12):
        r = anon.post("/api/v1/auth/tokens", json={"email": alice.email, "password": "wrong-pass"})
        assert r.status_code in (401, 429), r.text
        if r.status_code == 429:
            if int(r.headers["Retry-After"]) >= 4:
                break
            time.sleep(int(r.headers["Retry-After"]))  # sat out, as a client would; the next failure doubles it
    r = anon.post("/api/v1/auth/tokens", json={"email": alice.email, "password": "password123"})
    body = problem(r, 429, "rate-limited")
    assert int(r.headers["Retry-After"]) > 0 and body["retry_after"] > 0
    problem(anon.post("/api/v1/auth/tokens", data="x" * 10, headers={"Content-Type": "application/json"}), 400)


def test_folders_upload_download_move_copy_trash_versions(server):
    a = server.user()
    docs = a.mkdir(a.root, "docs")
    assert docs["kind"] == "folder" and docs["parent_id"] == a.root and docs["permissions"]["role"] == "owner"
    problem(a.post(f"/api/v1/nodes/{a.root}/children", json={"name": "docs"}), 409, "conflict")
    problem(a.post(f"/api/v1/nodes/{a.root}/children", json={"name": "a/b"}), 400, "invalid-name")
    problem(a.post(f"/api/v1/nodes/{a.root}/children", json={"name": "x", "owner_id": 1}), 400)
    data = os.urandom(300_000)
    r = a.upload(docs["id"], "f.bin", data)
    assert r.status_code == 201, r.text
    f = r.json()
    assert f["size"] == len(data) and f["etag"] == hashlib.sha256(data).hexdigest()
    assert a.get(f"/api/v1/nodes/{f['id']}").json()["name"] == "f.bin"
    # download, conditional and ranged
    r = a.get(f"/api/v1/nodes/{f['id']}/content")
    assert r.content == data and r.headers["ETag"] == f'"{f["etag"]}"'
    assert r.headers["X-Content-Type-Options"] == "nosniff" and r.headers["Content-Security-Policy"] == "sandbox"
    assert r.headers["Content-Disposition"].startswith("attachment")
    assert a.get(f"/api/v1/nodes/{f['id']}/content", headers={"If-None-Match": r.headers["ETag"]}).status_code == 304
    r = a.get(f"/api/v1/nodes/{f['id']}/content", headers={"Range": "bytes=1000-1999"})
    assert r.status_code == 206 and r.content == data[1000:2000]
    assert r.headers["Content-Range"] == f"bytes 1000-1999/{len(data)}"
    r = a.get(f"/api/v1/nodes/{f['id']}/content", headers={"Range": "bytes=-10"})
    assert r.status_code == 206 and r.content == data[-10:]
    r = a.get(f"/api/v1/nodes/{f['id']}/content", headers={"Range": "bytes=0-9", "If-Range": '"stale"'})
    assert r.status_code == 200 and r.content == data
    r = a.get(f"/api/v1/nodes/{f['id']}/content", headers={"Range": f"bytes={len(data)}-"})
    problem(r, 416)
    assert r.headers["Content-Range"] == f"bytes */{len(data)}"
    # new version with If-Match; a stale one is 412
    v2 = os.urandom(1000)
    r = a.upload(docs["id"], "f.bin", v2, headers={"If-Match": f'"{f["etag"]}"'})
    assert r.status_code == 200 and r.json()["id"] == f["id"]
    problem(a.upload(docs["id"], "f.bin", b"x", headers={"If-Match": f'"{f["etag"]}"'}), 412)
    problem(a.upload(docs["id"], "f.bin", b"x", headers={"If-None-Match": "*"}), 412)
    vs = a.get(f"/api/v1/nodes/{f['id']}/versions").json()["items"]
    assert [v["size"] for v in vs] == [1000, len(data)] and vs[0]["current"]
    assert a.get(f"/api/v1/nodes/{f['id']}/content?version={vs[1]['id']}").content == data
    r = a.post(f"/api/v1/nodes/{f['id']}/versions/{vs[1]['id']}/restore")
    assert r.status_code == 200 and a.get(f"/api/v1/nodes/{f['id']}/content").content == data
    # listing, paged and sorted
    for i in range(3):
        a.upload(docs["id"], f"n{i}.txt", b"x" * (i + 1))
    page = a.get(f"/api/v1/nodes/{docs['id']}/children?limit=2&sort=name").json()
    assert [n["name"] for n in page["items"]] == ["f.bin", "n0.txt"] and page["next_cursor"]
    page2 = a.get(f"/api/v1/nodes/{docs['id']}/children?limit=2&sort=name&cursor={page['next_cursor']}").json()
    assert [n["name"] for n in page2["items"]] == ["n1.txt", "n2.txt"] and page2["next_cursor"] is None
    by_size = a.get(f"/api/v1/nodes/{docs['id']}/children?sort=size&order=desc").json()["items"]
    assert by_size[0]["name"] == "f.bin"
    problem(a.get(f"/api/v1/nodes/{docs['id']}/children?sort=owner"), 400)
    # resolve
    assert a.get("/api/v1/resolve", params={"path": "/docs/f.bin"}).json()["id"] == f["id"]
    problem(a.get("/api/v1/resolve", params={"path": "/docs/nope"}), 404)
    problem(a.get("/api/v1/resolve", params={"path": "docs"}), 400)
    # rename, move, no cycles
    sub = a.mkdir(docs["id"], "sub")
    r = a.patch(f"/api/v1/nodes/{f['id']}", json={"name": "g.bin", "parent_id": sub["id"]})
    assert r.status_code == 200 and r.json()["parent_id"] == sub["id"] and r.json()["name"] == "g.bin"
    problem(a.patch(f"/api/v1/nodes/{docs['id']}", json={"parent_id": sub["id"]}), 409)
    problem(a.patch(f"/api/v1/nodes/{docs['id']}", json={"size": 1}), 400)
    # copy references the same blocks
    used = a.get("/api/v1/account").json()["used_bytes"]
    r = a.post(f"/api/v1/nodes/{f['id']}/copy", json={"parent_id": a.root, "name": "copy.bin"})
    assert r.status_code == 201 and r.json()["etag"] == f["etag"]
    assert a.get("/api/v1/account").json()["used_bytes"] == used + len(data)
    # trash and restore
    r = a.delete(f"/api/v1/nodes/{docs['id']}")
    assert r.status_code == 200
    problem(a.get(f"/api/v1/nodes/{f['id']}"), 404)
    assert [n["id"] for n in a.get("/api/v1/trash").json()["items"]] == [docs["id"]]
    assert a.post(f"/api/v1/nodes/{docs['id']}/restore").status_code == 200
    assert a.get(f"/api/v1/nodes/{f['id']}").status_code == 200
    problem(a.get("/api/v1/nodes/999999999"), 404)


def test_upload_streams_without_content_length_and_quota(server):
    a = server.user()
    data = os.urandom(2_500_000)

    def gen():
        for i in range(0, len(data), 100_000):
            yield data[i:i + 100_000]
    r = a.put(f"/api/v1/nodes/{a.root}/children/chunked.bin", data=gen())  # Transfer-Encoding: chunked
    assert r.status_code == 201, r.text
    assert a.get(f"/api/v1/nodes/{r.json()['id']}/content").content == data
    # a declared length beyond the quota fails before any byte is stored
    quota = a.get("/api/v1/account").json()["quota_bytes"]
    used = a.get("/api/v1/account").json()["used_bytes"]
    body = a.request("POST", "/api/v1/uploads", headers={
        "Tus-Resumable": "1.0.0", "Upload-Length": str(quota + 1),
        "Upload-Metadata": "filename aHVnZS5iaW4="})
    p = problem(body, 413, "quota-exceeded")
    assert p["quota"] == quota and p["used"] == used and p["needed"] == quota + 1
    assert a.get("/api/v1/account").json()["used_bytes"] == used


def test_json_body_size_is_bounded(server):
    a = server.user()
    big = '{"name": "' + "x" * (2 * 1024 * 1024) + '"}'
    r = a.post(f"/api/v1/nodes/{a.root}/children", data=big, headers={"Content-Type": "application/json"})
    problem(r, 413)

    def gen():  # no Content-Length: the limit still holds
        for _ in range(40):
            yield b"x" * 65536
    try:
        r = a.post(f"/api/v1/nodes/{a.root}/children", data=gen(), headers={"Content-Type": "application/json"})
        assert r.status_code == 413
    except requests.ConnectionError:
        pass  # the server refused the rest of the body by closing the connection: also bounded


def test_shares_links_and_shared_with_me(server):
    owner, bob = server.user(), server.user()
    anon = server.anon()
    folder = owner.mkdir(owner.root, "shared")
    data = b"<html><script>alert(1)</script></html>"
    f = owner.upload(folder["id"], "page.html", data).json()
    r = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": bob.email, "role": "viewer"})
    assert r.status_code == 201 and r.json()["email"] == bob.email
    assert [(s["email"], s["user_id"]) for s in owner.get(f"/api/v1/nodes/{folder['id']}/shares").json()["items"]] \
        == [(bob.email, bob.id)]
    assert [n["id"] for n in bob.get("/api/v1/shared-with-me").json()["items"]] == [folder["id"]]
    r = bob.get(f"/api/v1/nodes/{f['id']}/content")
    assert r.content == data and r.headers["Content-Type"] == "application/octet-stream"
    problem(bob.upload(folder["id"], "x.txt", b"x"), 403)
    assert owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": bob.email, "role": "editor"}).status_code == 200
    assert bob.upload(folder["id"], "x.txt", b"x").status_code == 201
    assert owner.delete(f"/api/v1/nodes/{folder['id']}/shares/{bob.id}").status_code == 204
    problem(bob.get(f"/api/v1/nodes/{f['id']}"), 404)
    # links
    r = owner.post(f"/api/v1/nodes/{folder['id']}/links", json={"role": "viewer"})
    assert r.status_code == 201
    link = r.json()
    assert link["url"].endswith("/s/" + link["token"]) and len(link["token"]) >= 40
    view = anon.get(f"/s/{link['token']}").json()
    assert view["node"]["id"] == folder["id"] and {n["name"] for n in view["items"]} == {"page.html", "x.txt"}
    r = anon.get(f"/s/{link['token']}/content?node_id={f['id']}")
    assert r.content == data and r.headers["Content-Security-Policy"] == "sandbox"
    problem(anon.get(f"/s/{link['token']}/content?node_id={owner.root}"), 404)  # outside the link
    assert [x["id"] for x in owner.get(f"/api/v1/nodes/{folder['id']}/links").json()["items"]] == [link["id"]]
    assert owner.delete(f"/api/v1/nodes/{folder['id']}/links/{link['id']}").status_code == 204
    problem(anon.get(f"/s/{link['token']}"), 410, "gone")
    problem(anon.get("/s/bl_unknown"), 404)
    # password-protected link, with its own rate limit
    link = owner.post(f"/api/v1/nodes/{f['id']}/links", json={"password": "s3cret"}).json()
    problem(anon.get(f"/s/{link['token']}/content"), 401)
    assert anon.get(f"/s/{link['token']}/content", headers={"X-Link-Password": "s3cret"}).content == data
    for _ in range(5):
        problem(anon.get(f"/s/{link['token']}", headers={"X-Link-Password": "nope"}), 401)
    r = anon.get(f"/s/{link['token']}", headers={"X-Link-Password": "s3cret"})
    problem(r, 429)
    assert int(r.headers["Retry-After"]) > 0


def test_expired_link_is_gone(server):
    import time
    owner = server.user()
    f = owner.upload(owner.root, "a.txt", b"abc").json()
    # 5 s, not 1: on a busy machine the first GET can come more than a second after the link
    link = owner.post(f"/api/v1/nodes/{f['id']}/links", json={"expires_in": 5}).json()
    made = time.monotonic()  # the link was made before this: it is gone 5 s after
    assert server.anon().get(f"/s/{link['token']}").status_code == 200
    time.sleep(max(0.0, made + 5.2 - time.monotonic()))
    problem(server.anon().get(f"/s/{link['token']}"), 410)


def test_delta_sync_round_sends_at_most_two_blocks(server):
    from storage.chunking import FastCDCChunker
    a = server.user()
    chunking = a.post("/api/v1/blocks/missing", json={"hashes": []}).json()["chunking"]
    chunker = FastCDCChunker(chunking["min"], chunking["avg"], chunking["max"])
    data = bytearray(random.Random(7).randbytes(64 * 1024 * 1024))

    def sync(content: bytes, expect_created: bool) -> int:
        blocks = [bytes(c) for c in chunker.chunks(io.BytesIO(content))]
        hashes = [hashlib.sha256(b).hexdigest() for b in blocks]
        missing = a.post("/api/v1/blocks/missing", json={"hashes": hashes}).json()["missing"]
        by_hash = dict(zip(hashes, blocks))
        for h in missing:
            r = a.put(f"/api/v1/blocks/{h}", data=by_hash[h])
            assert r.status_code in (200, 201), r.text
        r = a.post(f"/api/v1/nodes/{a.root}/children/big.bin/commit",
                   json={"blocks": hashes, "size": len(content), "sha256": hashlib.sha256(content).hexdigest()})
        assert r.status_code == (201 if expect_created else 200), r.text
        return len(missing)
    first = sync(bytes(data), True)
    assert first > 32
    data[len(data) // 2] ^= 0xFF
    assert sync(bytes(data), False) <= 2
    node = a.get("/api/v1/resolve", params={"path": "/big.bin"}).json()
    assert node["etag"] == hashlib.sha256(data).hexdigest()
    got = hashlib.sha256(a.get(f"/api/v1/nodes/{node['id']}/content").content).hexdigest()
    assert got == node["etag"]


def test_block_api_rejects_bad_blocks_and_unowned_hashes(server):
    a, b = server.user(), server.user()
    secret = os.urandom(5000)
    a.upload(a.root, "secret.bin", secret)
    h = hashlib.sha256(secret).hexdigest()
    # b cannot learn that someone stores this block
    assert b.post("/api/v1/blocks/missing", json={"hashes": [h]}).json()["missing"] == [h]
    assert a.post("/api/v1/blocks/missing", json={"hashes": [h]}).json()["missing"] == []
    problem(b.post(f"/api/v1/nodes/{b.root}/children/s.bin/commit",
                   json={"blocks": [h], "size": 5000, "sha256": h}), 400)
    problem(b.put(f"/api/v1/blocks/{'0' * 64}", data=b"not that"), 422, "hash-mismatch")
    # sending bytes someone else stores answers exactly as for new bytes: no confirmation oracle
    fresh = os.urandom(5000)
    for block in (secret, fresh):
        r = b.put(f"/api/v1/blocks/{hashlib.sha256(block).hexdigest()}", data=block)
        assert (r.status_code, r.json()["stored"]) == (201, True)
    r = b.put(f"/api/v1/blocks/{h}", data=secret)  # only "you sent this already" is told
    assert (r.status_code, r.json()["stored"]) == (200, False)
    assert b.post("/api/v1/blocks/missing", json={"hashes": [h]}).json()["missing"] == []
    r = b.post(f"/api/v1/nodes/{b.root}/children/s.bin/commit", json={"blocks": [h], "size": 5000, "sha256": h})
    assert r.status_code == 201 and b.get(f"/api/v1/nodes/{r.json()['id']}/content").content == secret
    problem(b.post(f"/api/v1/nodes/{b.root}/children/t.bin/commit",
                   json={"blocks": [h], "size": 5000, "sha256": "ab" * 32}), 422)


def test_openapi_docs_health_metrics(server):
    anon = server.anon()
    doc = anon.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.") and "/api/v1/uploads/{sid}" in doc["paths"]
    assert anon.get("/api/v1/docs").status_code == 200
    assert anon.get("/healthz").json()["status"] == "ok"
    assert anon.get("/readyz").status_code == 200
    m = anon.get("/metrics")
    assert m.status_code == 200 and "blockdrive_http_requests_total" in m.text


def test_a_chunked_upload_past_the_upload_limit_is_refused_not_cut_short(tmp_path):
    from tests.e2e.conftest import start_server, stop_server
    proc, srv = start_server(tmp_path, None, workers=1, extra_env={"BLOCKDRIVE_SERVER_MAX_UPLOAD_BYTES": "1000000"})
    try:
        a = srv.user()

        def gen(n):
            for _ in range(n):
                yield b"y" * 100_000
        try:
            r = a.upload(a.root, "big.bin", gen(15))  # 1.5 MB, no Content-Length
            assert r.status_code == 413, r.text
        except requests.ConnectionError:
            pass  # the server refused the rest of the body by closing the connection
        a.s.close()  # that connection is closed by the server: do not reuse it
        assert a.get("/api/v1/resolve", params={"path": "/big.bin"}).status_code == 404
        r = a.upload(a.root, "ok.bin", gen(10))  # exactly the limit: stored whole
        assert r.status_code == 201 and r.json()["size"] == 1_000_000
    finally:
        stop_server(proc)
