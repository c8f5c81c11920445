"""Every stored byte is bounded by a quota, through the real server on SQLite and MariaDB.

Users here have a 4 MB quota. Old versions count (the "overwrite with an empty file" attack no
longer keeps unbounded data, and the retention policy thins them), tus creation reserves its
length, block PUTs are held as pending, a block session has a cap, the owner purges one trash
entry or the whole trash, and ``/api/v1/account`` splits what holds the quota."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import struct

import pytest

from storage import maintenance, quota
from storage.config import load_config
from storage.drive import Drive
from tests.e2e.conftest import BIN, ENGINES, served
from tests.e2e.test_api import problem

QUOTA = 4_000_000
MAX_BLOCKS = 6
TUS = {"Tus-Resumable": "1.0.0"}
MB = 1_000_000


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "quota", {"BLOCKDRIVE_QUOTA_FREE_BYTES": str(QUOTA),
                                                        "BLOCKDRIVE_QUOTA_BLOCK_SESSION_MAX_BLOCKS": str(MAX_BLOCKS)}) as srv:
        yield srv


def split(c) -> dict:
    """The account, checked: what holds the quota adds up to used + pending."""
    a = c.get("/api/v1/account").json()
    u = a["usage"]
    assert u["current_bytes"] + u["old_versions_bytes"] + u["trash_bytes"] == a["used_bytes"], a
    assert u["pending_bytes"] == a["pending_bytes"]
    return a


def data(n: int, seed: int) -> bytes:
    import random
    return random.Random(seed).randbytes(n)


def test_overwriting_with_an_empty_file_keeps_no_unbounded_data(server):
    c = server.user()
    for i in range(3):
        r = c.upload(c.root, "f.bin", data(MB, i))
        assert r.status_code in (200, 201), r.text
    node = r.json()["id"]
    assert c.upload(c.root, "f.bin", b"").status_code == 200  # the attack
    a = split(c)
    assert (a["used_bytes"], a["usage"]["current_bytes"], a["usage"]["old_versions_bytes"]) == (3 * MB, 0, 3 * MB)
    # the old bytes count: a new file that does not fit beside them is refused, naming them
    p = problem(c.upload(c.root, "g.bin", data(2 * MB, 9)), 413, "quota-exceeded")
    assert p["old_versions"] == 3 * MB and "old versions" in p["detail"]
    assert split(c)["used_bytes"] == 3 * MB
    # the retention policy, as gc runs it three days later: one old version a day is kept
    cfg = load_config(env=server.env)
    drive = Drive(cfg)
    try:
        stats = maintenance.apply_retention(drive.sm, quota.Retention.from_config(cfg),
                                            dt.datetime.now(dt.UTC).replace(tzinfo=None) + dt.timedelta(days=3),
                                            cfg["quota"]["block_floor_bytes"])
    finally:
        drive.close()
    assert stats["versions_thinned"] >= 1
    versions = c.get(f"/api/v1/nodes/{node}/versions").json()["items"]
    assert versions[0]["current"] and versions[0]["size"] == 0
    assert split(c)["used_bytes"] == sum(v["size"] for v in versions) < 3 * MB
    # the owner frees an old version at once; the current one cannot be purged that way
    problem(c.delete(f"/api/v1/nodes/{node}/versions/{versions[0]['id']}"), 409)
    for v in versions[1:]:
        r = c.delete(f"/api/v1/nodes/{node}/versions/{v['id']}")
        assert r.status_code == 200 and r.json()["freed_bytes"] == v["size"]
    assert split(c)["used_bytes"] == 0
    assert c.upload(c.root, "g.bin", data(2 * MB, 9)).status_code == 201
    # a stranger cannot purge someone's version
    problem(server.user().delete(f"/api/v1/nodes/{node}/versions/{versions[0]['id']}"), 404)


def _tus_create(c, name: str, length: int):
    meta = "filename " + __import__("base64").b64encode(name.encode()).decode()
    return c.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": meta})


def test_tus_reservations_add_up(server):
    c = server.user()
    first = _tus_create(c, "a.bin", 60 * QUOTA // 100)
    assert first.status_code == 201, first.text
    assert split(c)["pending_bytes"] == 60 * QUOTA // 100
    p = problem(_tus_create(c, "b.bin", 60 * QUOTA // 100), 413, "quota-exceeded")
    assert p["pending"] == 60 * QUOTA // 100
    # a plain PUT cannot take the reserved room either
    problem(c.upload(c.root, "c.bin", data(QUOTA // 2, 3)), 413, "quota-exceeded")
    assert c.delete(_path(first.headers["Location"]), headers=TUS).status_code == 204
    assert split(c)["pending_bytes"] == 0
    second = _tus_create(c, "b.bin", 60 * QUOTA // 100)
    assert second.status_code == 201
    body = data(60 * QUOTA // 100, 4)
    r = c.patch(_path(second.headers["Location"]), data=body,
                headers={**TUS, "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"})
    assert r.status_code == 204, r.text
    a = split(c)
    assert (a["used_bytes"], a["pending_bytes"], a["usage"]["current_bytes"]) == (len(body), 0, len(body))


def _path(location: str) -> str:
    return "/" + location.split("://", 1)[-1].split("/", 1)[1]


def _put_block(c, raw: bytes):
    return c.put(f"/api/v1/blocks/{hashlib.sha256(raw).hexdigest()}", data=raw)


def test_block_puts_past_the_quota_are_413_and_commits_release_them(server):
    c = server.user()
    blocks = [data(MB, 20 + i) for i in range(4)]
    for b in blocks:
        assert _put_block(c, b).status_code in (200, 201)
    assert split(c)["pending_bytes"] == 4 * MB
    p = problem(_put_block(c, data(10, 30)), 413, "quota-exceeded")
    assert p["pending"] == 4 * MB
    frame = data(10, 31)
    batch = struct.pack(">32sI", hashlib.sha256(frame).digest(), len(frame)) + frame
    problem(c.post("/api/v1/batch/blocks", data=batch, headers={"Content-Type": "application/octet-stream"}),
            413, "quota-exceeded")
    # committing turns the pending bytes into the file's charge
    whole = b"".join(blocks)
    r = c.post(f"/api/v1/nodes/{c.root}/children/f.bin/commit",
               json={"blocks": [hashlib.sha256(b).hexdigest() for b in blocks], "size": len(whole),
                     "sha256": hashlib.sha256(whole).hexdigest()})
    assert r.status_code == 201, r.text
    a = split(c)
    assert (a["used_bytes"], a["pending_bytes"]) == (4 * MB, 0)


def test_a_block_session_is_capped(server):
    c = server.user()
    for i in range(MAX_BLOCKS):
        assert _put_block(c, data(100, 40 + i)).status_code == 201
    p = problem(_put_block(c, data(100, 99)), 413, "session-limit")
    assert "commit" in p["detail"]
    assert split(c)["pending_bytes"] == MAX_BLOCKS * quota.BLOCK_FLOOR


def test_trash_purge_and_empty_free_quota(server):
    c, other = server.user(), server.user()
    ids = []
    for i in range(3):
        r = c.upload(c.root, f"t{i}.bin", data(MB // 2, 50 + i))
        ids.append(r.json()["id"])
        assert c.delete(f"/api/v1/nodes/{ids[-1]}").status_code == 200
    a = split(c)
    assert (a["used_bytes"], a["usage"]["trash_bytes"]) == (3 * MB // 2, 3 * MB // 2)
    problem(other.delete(f"/api/v1/trash/{ids[0]}"), 404)  # not theirs
    keep = c.upload(c.root, "live.bin", b"live").json()["id"]
    problem(c.delete(f"/api/v1/trash/{keep}"), 404)  # not in the trash
    r = c.delete(f"/api/v1/trash/{ids[0]}")
    assert r.status_code == 200 and r.json() == {"purged": 1, "versions": 1}
    assert split(c)["usage"]["trash_bytes"] == MB
    r = c.delete("/api/v1/trash")
    assert r.status_code == 200 and r.json() == {"purged": 2, "versions": 2, "more": False}
    a = split(c)
    assert (a["used_bytes"], a["usage"]["trash_bytes"]) == (4, 0)
    assert c.get("/api/v1/trash").json()["items"] == []
    problem(c.delete(f"/api/v1/trash/{ids[1]}"), 404)


def test_an_editors_uploads_charge_the_owner_who_can_clean_up(server):
    owner, editor = server.user(), server.user()
    folder = owner.mkdir(owner.root, "shared")
    r = owner.post(f"/api/v1/nodes/{folder['id']}/shares", json={"email": editor.email, "role": "editor"})
    assert r.status_code in (200, 201), r.text
    body = data(MB, 60)
    assert editor.upload(folder["id"], "e.bin", body).status_code == 201
    assert editor.upload(folder["id"], "e.bin", body[:10]).status_code == 200
    assert (split(owner)["used_bytes"], split(editor)["used_bytes"]) == (MB + 10, 0)
    # an editor's unfinished upload holds the editor's quota, not the owner's
    t = editor.post("/api/v1/uploads", headers={**TUS, "Upload-Length": str(MB), "Upload-Metadata": (
        "filename ZS5iaW4=,parent_id " + __import__("base64").b64encode(str(folder["id"]).encode()).decode())})
    assert t.status_code == 201, t.text
    assert (split(owner)["pending_bytes"], split(editor)["pending_bytes"]) == (0, MB)
    assert editor.delete(_path(t.headers["Location"]), headers=TUS).status_code == 204
    # the owner cleans up: delete the folder, then purge it
    assert owner.delete(f"/api/v1/nodes/{folder['id']}").status_code == 200
    problem(editor.delete(f"/api/v1/trash/{folder['id']}"), 404)
    assert owner.delete(f"/api/v1/trash/{folder['id']}").json() == {"purged": 1, "versions": 2}
    assert split(owner)["used_bytes"] == 0


def test_the_client_shows_the_split_and_manages_the_trash(server):
    c = server.user()
    c.upload(c.root, "x.bin", data(1000, 70))
    node = c.upload(c.root, "y.bin", data(2000, 71)).json()["id"]
    c.delete(f"/api/v1/nodes/{node}")
    env = {**server.env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": c.token,
           "XDG_CONFIG_HOME": str(server.home / "xdg")}

    def cli(*args):
        out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stdout + out.stderr
        return out.stdout

    acct = json.loads(cli("account", "--json"))
    assert acct["usage"]["current_bytes"] == 1000 and acct["usage"]["trash_bytes"] == 2000
    assert "old versions" in cli("account") and "trash" in cli("account")
    assert "y.bin" in cli("trash", "list")
    assert json.loads(cli("trash", "purge", "y.bin", "--json"))["id"] == node
    assert cli("trash", "list").strip() == "the trash is empty"
    c.delete(f"/api/v1/nodes/{c.get('/api/v1/resolve', params={'path': '/x.bin'}).json()['id']}")
    assert json.loads(cli("trash", "empty", "--json"))["purged"] == 1
    assert split(c)["used_bytes"] == 0
