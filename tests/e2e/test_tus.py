"""tus 1.0 over HTTP: the real tus client (tuspy), interrupted and resumed, and the protocol's
error answers."""

from __future__ import annotations

import base64
import hashlib
import io
import os
import socket
from urllib.parse import urlparse

import requests
from tusclient import client as tus

from .test_api import problem

TUS = {"Tus-Resumable": "1.0.0"}


def _create(c, name: str, length: int, parent: int | None = None) -> str:
    meta = f"filename {base64.b64encode(name.encode()).decode()}"
    if parent:
        meta += f",parent_id {base64.b64encode(str(parent).encode()).decode()}"
    r = c.post("/api/v1/uploads/", headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": meta})
    assert r.status_code == 201, r.text
    assert r.headers["Tus-Resumable"] == "1.0.0" and "Upload-Expires" in r.headers
    return urlparse(r.headers["Location"]).path


def _offset(c, path: str) -> int:
    r = c.request("HEAD", path, headers=TUS)
    assert r.status_code == 200 and r.headers["Cache-Control"] == "no-store"
    return int(r.headers["Upload-Offset"])


def test_tuspy_interrupted_then_resumed_finishes_with_the_right_sha256(server):
    a = server.user()
    folder = a.mkdir(a.root, "inbox")
    data = os.urandom(5 * 1024 * 1024 + 12345)
    c = tus.TusClient(server.url + "/api/v1/uploads/", headers={"Authorization": f"Bearer {a.token}"})
    up = c.uploader(file_stream=io.BytesIO(data), chunk_size=700_000, upload_checksum=True,
                    metadata={"filename": "movie.bin", "parent_id": str(folder["id"])})
    up.upload(stop_at=2_100_000)  # the client stops ("interrupted") after three chunks
    path = urlparse(up.url).path
    assert _offset(a, path) == 2_100_000
    # a fresh client resumes from the server's offset, as after a crash
    c2 = tus.TusClient(server.url + "/api/v1/uploads/", headers={"Authorization": f"Bearer {a.token}"})
    up2 = c2.uploader(file_stream=io.BytesIO(data), chunk_size=1_000_000, url=up.url, upload_checksum=True)
    assert up2.offset == 2_100_000
    up2.upload()
    node = a.get("/api/v1/resolve", params={"path": "/inbox/movie.bin"}).json()
    assert node["size"] == len(data) and node["etag"] == hashlib.sha256(data).hexdigest()
    assert hashlib.sha256(a.get(f"/api/v1/nodes/{node['id']}/content").content).hexdigest() == node["etag"]
    # the resumable upload cut exactly the blocks a one-shot PUT would: storing it again adds nothing
    r = a.upload(a.root, "again.bin", data)
    assert r.status_code == 201 and r.json()["new_bytes"] == 0


def test_connection_dropped_mid_patch_keeps_what_arrived(server):
    a = server.user()
    data = os.urandom(3_000_000)
    path = _create(a, "dropped.bin", len(data))
    u = urlparse(server.url)
    sent = 1_200_000
    with socket.create_connection((u.hostname, u.port)) as s:
        s.sendall((f"PATCH {path} HTTP/1.1\r\nHost: {u.hostname}\r\nAuthorization: Bearer {a.token}\r\n"
                   f"Tus-Resumable: 1.0.0\r\nUpload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\n"
                   f"Content-Length: {len(data)}\r\n\r\n").encode() + data[:sent])
        s.shutdown(socket.SHUT_WR)
        try:
            s.recv(100)
        except OSError:
            pass
    import time
    for _ in range(50):  # the server notices the drop asynchronously
        off = _offset(a, path)
        if off == sent:
            break
        time.sleep(0.1)
    assert off == sent
    r = a.patch(path, data=data[off:], headers={**TUS, "Upload-Offset": str(off),
                                                "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == str(len(data))
    node_id = int(r.headers["X-Blockdrive-Node-Id"])
    assert a.get(f"/api/v1/nodes/{node_id}/content").content == data


def test_tus_protocol_errors(server):
    a = server.user()
    data = os.urandom(200_000)
    path = _create(a, "p.bin", len(data))
    octets = {"Content-Type": "application/offset+octet-stream"}
    r = a.request("OPTIONS", "/api/v1/uploads/")
    assert r.status_code == 204 and "checksum" in r.headers["Tus-Extension"]
    assert "sha256" in r.headers["Tus-Checksum-Algorithm"]
    r = a.patch(path, data=data[:1000], headers={"Tus-Resumable": "0.2.2", "Upload-Offset": "0", **octets})
    problem(r, 412)
    assert r.headers["Tus-Version"] == "1.0.0"
    problem(a.patch(path, data=data[:1000], headers={**TUS, "Upload-Offset": "0",
                                                     "Content-Type": "application/json"}), 415)
    problem(a.patch(path, data=data[:1000], headers={**TUS, "Upload-Offset": "5", **octets}), 409)
    bad = base64.b64encode(hashlib.sha256(b"other").digest()).decode()
    r = a.patch(path, data=data[:1000], headers={**TUS, "Upload-Offset": "0", "Upload-Checksum": f"sha256 {bad}",
                                                 **octets})
    problem(r, 460, "checksum-mismatch")
    assert _offset(a, path) == 0
    good = base64.b64encode(hashlib.sha256(data[:1000]).digest()).decode()
    r = a.patch(path, data=data[:1000], headers={**TUS, "Upload-Offset": "0", "Upload-Checksum": f"sha256 {good}",
                                                 **octets})
    assert r.status_code == 204 and r.headers["Upload-Offset"] == "1000"
    r = a.patch(path, data=b"x" * 300_000, headers={**TUS, "Upload-Offset": "1000", **octets})
    problem(r, 400)
    # answered before the whole body was read: the connection is closed, and the client told,
    # so the next request does not land on a socket the server dropped
    assert r.headers["Connection"] == "close"
    assert _offset(a, path) == 1000
    # another user cannot see it; termination ends it
    assert server.user().request("HEAD", path, headers=TUS).status_code == 404
    assert a.delete(path, headers=TUS).status_code == 204
    gone = a.request("HEAD", path, headers=TUS)  # a HEAD's problem has its type but no body
    assert (gone.status_code, gone.headers["Content-Type"], gone.content) == (410, "application/problem+json", b"")
    # creation-with-upload: the first bytes ride on the POST
    meta = "filename " + base64.b64encode(b"cwu.bin").decode()
    r = a.post("/api/v1/uploads", data=data, headers={**TUS, "Upload-Length": str(len(data)),
                                                      "Upload-Metadata": meta, **octets})
    assert r.status_code == 201 and r.headers["Upload-Offset"] == str(len(data))
    assert a.get(f"/api/v1/nodes/{r.headers['X-Blockdrive-Node-Id']}/content").content == data
    problem(a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "10"}), 400)  # no filename
    problem(a.post("/api/v1/uploads", headers={**TUS, "Upload-Length": "10",
                                               "Upload-Metadata": "filename " + base64.b64encode(b"a/b").decode()}),
            400, "invalid-name")
    assert requests.post(server.url + "/api/v1/uploads", headers={**TUS, "Upload-Length": "1"}).status_code == 401
