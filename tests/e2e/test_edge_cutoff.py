"""A body cut off before its Content-Length (the client closes its side, FIN) is refused on
every upload route, through the real server (gunicorn) on SQLite and MariaDB: a 400, and
nothing committed or charged (no node, no new version, used bytes unchanged, the blocks still
missing), and a tus upload's offset never past the bytes that really arrived."""

from __future__ import annotations

import hashlib
import json
import os
import socket
from urllib.parse import urlparse

from storage import batch

TUS = {"Tus-Resumable": "1.0.0"}


def send_cut(server, method: str, path: str, headers: dict, body: bytes, declared: int | None = None,
             chunked_head: bytes = b"") -> tuple[int | None, dict]:
    """Send ``body`` under a Content-Length of ``declared`` (or chunked when None, after
    ``chunked_head``), close the sending side, and read the answer: (status, JSON body), or
    (None, {}) when the server closed without answering."""
    u = urlparse(server.url)
    head = [f"{method} {path} HTTP/1.1", f"Host: {u.hostname}:{u.port}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in headers.items()]
    head.append("Transfer-Encoding: chunked" if declared is None else f"Content-Length: {declared}")
    with socket.create_connection((u.hostname, u.port), timeout=60) as s:
        s.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + chunked_head + body)
        s.shutdown(socket.SHUT_WR)
        raw = b""
        for _ in range(10_000):  # bounded: the answer is small
            try:
                data = s.recv(65536)
            except ConnectionResetError:
                break
            if not data:
                break
            raw += data
    if not raw:
        return None, {}
    status = int(raw.split(b" ", 2)[1])
    _, _, payload = raw.partition(b"\r\n\r\n")
    try:
        return status, json.loads(payload or b"{}")
    except ValueError:
        return status, {}


def refused(status, problem) -> bool:
    """A 400 saying the body ended early (or no answer at all): never a 2xx."""
    if status is None:
        return True
    return status == 400 and problem.get("type", "").endswith("/body-ended-early")


def auth(user) -> dict:
    return {"Authorization": f"Bearer {user.token}"}


def used(user) -> int:
    return user.get("/api/v1/account").json()["used_bytes"]


def test_cut_put_of_a_new_file_creates_nothing(server):
    a = server.user()
    before = used(a)
    data = os.urandom(600_000)
    status, problem = send_cut(server, "PUT", f"/api/v1/nodes/{a.root}/children/cut.bin",
                               {**auth(a), "Content-Type": "application/octet-stream"}, data[:250_000], len(data))
    assert refused(status, problem), (status, problem)
    assert a.get("/api/v1/resolve", params={"path": "/cut.bin"}).status_code == 404
    # chunked: the chunk announces 300,000 bytes, 200,000 arrive, then FIN
    status, problem = send_cut(server, "PUT", f"/api/v1/nodes/{a.root}/children/chunked.bin",
                               {**auth(a), "Content-Type": "application/octet-stream"}, data[:200_000],
                               chunked_head=b"%x\r\n" % 300_000)
    assert status is None or status == 400, (status, problem)
    assert a.get("/api/v1/resolve", params={"path": "/chunked.bin"}).status_code == 404
    assert used(a) == before


def test_cut_put_over_a_file_adds_no_version(server):
    a = server.user()
    v1 = os.urandom(300_000)
    node = a.upload(a.root, "doc.bin", v1).json()
    before = used(a)
    data = os.urandom(500_000)
    status, problem = send_cut(server, "PUT", f"/api/v1/nodes/{a.root}/children/doc.bin",
                               {**auth(a), "Content-Type": "application/octet-stream"}, data[:1], len(data))
    assert refused(status, problem), (status, problem)
    assert len(a.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 1
    assert a.get(f"/api/v1/nodes/{node['id']}/content").content == v1
    assert used(a) == before


def test_cut_tus_patch_is_refused_and_the_offset_never_passes_what_arrived(server):
    a = server.user()
    data = os.urandom(900_000)
    r = a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(len(data)),
                                           "Upload-Metadata": "filename Y3V0LmJpbg=="})  # cut.bin
    assert r.status_code == 201, r.text
    path = urlparse(r.headers["Location"]).path
    sent = 400_000
    status, problem = send_cut(server, "PATCH", path,
                               {**auth(a), **TUS, "Upload-Offset": "0",
                                "Content-Type": "application/offset+octet-stream"}, data[:sent], len(data))
    assert refused(status, problem), (status, problem)
    offset = int(a.request("HEAD", path, headers=TUS).headers["Upload-Offset"])
    assert offset <= sent  # tus keeps what arrived, never more
    assert a.get("/api/v1/resolve", params={"path": "/cut.bin"}).status_code == 404
    # and the upload resumes from there to the right content
    r = a.patch(path, data=data[offset:], headers={**TUS, "Upload-Offset": str(offset),
                                                    "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    assert a.get(f"/api/v1/nodes/{r.headers['X-Blockdrive-Node-Id']}/content").content == data


def test_cut_block_put_stores_nothing(server):
    a = server.user()
    block = os.urandom(100_000)
    h = hashlib.sha256(block).hexdigest()
    before = used(a)
    status, problem = send_cut(server, "PUT", f"/api/v1/blocks/{h}",
                               {**auth(a), "Content-Type": "application/octet-stream"}, block[:60_000], len(block))
    assert refused(status, problem), (status, problem)
    assert a.post("/api/v1/blocks/missing", json={"hashes": [h]}).json()["missing"] == [h]
    assert used(a) == before


def test_cut_batch_routes_store_nothing(server):
    a = server.user()
    blocks = [os.urandom(50_000) for _ in range(3)]
    hashes = [hashlib.sha256(b).hexdigest() for b in blocks]
    frames = b"".join(batch.FRAME.pack(hashlib.sha256(b).digest(), len(b)) + b for b in blocks)
    before = used(a)
    # every frame whole, the body cut where the last one ends: only the length tells it
    status, problem = send_cut(server, "POST", "/api/v1/batch/blocks",
                               {**auth(a), "Content-Type": "application/octet-stream"}, frames,
                               len(frames) + batch.FRAME.size + 10)
    assert refused(status, problem), (status, problem)
    assert sorted(a.post("/api/v1/blocks/missing", json={"hashes": hashes}).json()["missing"]) == sorted(hashes)
    # a JSON body cut after a complete object: refused, not parsed as what came
    folders = json.dumps({"folders": [{"parent_id": a.root, "name": "cutdir"}]}).encode()
    status, problem = send_cut(server, "POST", "/api/v1/batch/folders",
                               {**auth(a), "Content-Type": "application/json"}, folders, len(folders) + 5)
    assert refused(status, problem), (status, problem)
    assert a.get("/api/v1/resolve", params={"path": "/cutdir"}).status_code == 404
    assert used(a) == before
