"""Uploads through the block routes are counted and bounded like a PUT, through the real server
on SQLite and MariaDB (users here have a 5 MB quota): a client's push shows in the traffic
counters; files that cannot fit are refused before any block is sent (``files`` on
``POST /blocks/missing``, and the client asks first); a batch commit lands the files that fit
and refuses, file by file, those that do not."""

from __future__ import annotations

import hashlib
import random
import subprocess

import pytest
import requests
import sqlalchemy as sa

from client.api import Api
from client.sync import Client, Index
from client.sync.push import QuotaError
from storage.config import load_config
from storage.drive import Drive
from storage.models import TrafficDaily
from tests.e2e.conftest import BIN, ENGINES, served
from tests.e2e.test_api import problem

QUOTA = 5_000_000
MB = 1_000_000


@pytest.fixture(scope="module", params=ENGINES)
def server(request, tmp_path_factory):
    with served(request, tmp_path_factory, "accounting", {"BLOCKDRIVE_QUOTA_FREE_BYTES": str(QUOTA)}) as srv:
        yield srv


def data(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def traffic(server, user_id: int) -> tuple[int, int]:
    """``(uploads, bytes_in)`` the server recorded for the user today."""
    drive = Drive(load_config(env=server.env))
    try:
        with drive.engine.connect() as conn:
            row = conn.execute(sa.select(TrafficDaily.__table__).where(TrafficDaily.user_id == user_id)).first()
    finally:
        drive.close()
    return (row.uploads, row.bytes_in) if row is not None else (0, 0)


def block_bytes(server) -> int:
    text = requests.get(server.url + "/metrics", timeout=10).text
    line = [x for x in text.splitlines() if x.startswith("blockdrive_batch_block_bytes_received_total ")]
    return int(float(line[0].split()[1])) if line else 0


def client(server, user, tmp_path, api_class=Api) -> Client:
    return Client(api_class(server.url, user.token, retries=1, backoff=0.05, max_backoff=0.2),
                  Index(tmp_path / "index.sqlite"))


def test_a_client_push_and_sync_are_in_the_traffic_counters(server, tmp_path):
    u = server.user()
    c = client(server, u, tmp_path)
    f = tmp_path / "one.bin"
    f.write_bytes(data(1_200_000, 1))
    c.push(str(f), "/one.bin")
    assert traffic(server, u.id) == (1, 1_200_000)
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.bin").write_bytes(data(300_000, 2))
    (tree / "b.txt").write_bytes(b"small")
    (tree / "copy.bin").write_bytes(data(1_200_000, 1))  # the server holds it: no byte sent
    _plan, st = c.sync(str(tree), "/tree")
    assert sorted(st.uploaded) == ["a.bin", "b.txt", "copy.bin"]
    assert traffic(server, u.id) == (4, 1_200_000 + 300_000 + 5)


def test_missing_with_files_answers_413_before_any_block(server):
    u = server.user()
    assert u.upload(u.root, "have.bin", data(2 * MB, 3)).status_code == 201
    raw = data(1000, 4)
    h = hashlib.sha256(raw).hexdigest()
    r = u.post("/api/v1/blocks/missing", json={"hashes": [h], "files": [{"size": 2 * MB, "blocks": 2},
                                                                         {"size": 1_500_000, "blocks": 2}]})
    p = problem(r, 413, "quota-exceeded")
    assert (p["needed"], p["available"], p["quota"], p["used"]) == (3_500_000, 3 * MB, QUOTA, 2 * MB)
    ok = u.post("/api/v1/blocks/missing", json={"hashes": [h], "files": [{"size": 2 * MB, "blocks": 2,
                                                                          "parent_id": u.root}]})
    assert ok.status_code == 200 and ok.json()["missing"] == [h]
    assert u.post("/api/v1/blocks/missing", json={"hashes": [h]}).status_code == 200  # as before
    problem(u.post("/api/v1/blocks/missing", json={"hashes": [], "files": [{"size": 1}]}), 400)
    other = server.user()
    problem(u.post("/api/v1/blocks/missing", json={"hashes": [], "files": [{"size": 1, "blocks": 1,
                                                                            "parent_id": other.root}]}), 404)


def test_a_push_over_quota_stops_before_sending_a_block(server, tmp_path):
    u = server.user()
    big = tmp_path / "big.bin"
    big.write_bytes(data(8 * MB, 5))
    b0 = block_bytes(server)
    with pytest.raises(QuotaError) as exc:
        client(server, u, tmp_path).push(str(big), "/big.bin")
    assert "8000000" in str(exc.value) and "nothing was sent" in str(exc.value)
    env = {**server.env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token,
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = subprocess.run([str(BIN), "push", str(big), "/big.bin"], env=env, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode != 0
    assert out.stderr.strip().count("\n") == 0 and "not enough room" in out.stderr, out.stderr
    assert block_bytes(server) == b0  # not a byte of it reached the server
    assert u.get("/api/v1/account").json()["pending_bytes"] == 0


def test_a_batch_commit_lands_the_files_that_fit(server):
    u = server.user()
    raw = data(2 * MB, 6)
    assert u.upload(u.root, "orig.bin", raw).status_code == 201
    blocks = u.get(f"/api/v1/nodes/{u.get('/api/v1/resolve', params={'path': '/orig.bin'}).json()['id']}/blocks"
                   ).json()["blocks"]
    hashes = [b[0] for b in blocks]
    small = b"a small new file"
    h = hashlib.sha256(small).hexdigest()
    assert u.put(f"/api/v1/blocks/{h}", data=small).status_code == 201
    copy = {"parent_id": u.root, "blocks": hashes, "size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    r = u.post("/api/v1/batch/commit", json={"files": [
        {**copy, "name": "copy1.bin"}, {**copy, "name": "copy2.bin"},
        {"parent_id": u.root, "name": "small.txt", "blocks": [h], "size": len(small), "sha256": h}]})
    assert r.status_code == 200, r.text
    res = r.json()["results"]
    assert "ok" in res[0] and "ok" in res[2], res
    assert res[1]["error"]["code"] == "quota-exceeded" and res[1]["error"]["needed"] == 2 * MB
    names = sorted(i["name"] for i in u.get(f"/api/v1/nodes/{u.root}/children").json()["items"])
    assert names == ["copy1.bin", "orig.bin", "small.txt"]
    assert u.get("/api/v1/account").json()["used_bytes"] == 4 * MB + len(small)


def test_sync_reports_the_files_refused_and_the_others_land(server, tmp_path):
    u = server.user()
    held = data(1_500_000, 7)
    assert u.upload(u.root, "held.bin", held).status_code == 201
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "a.bin").write_bytes(data(MB, 8))
    (tree / "dup.bin").write_bytes(held)  # stored already: costs its size, sends nothing

    class Filling(Api):
        """Another device fills the quota while this client's blocks are on their way."""

        def put_blocks(self, blocks):
            res = super().put_blocks(blocks)
            assert u.upload(u.root, "filler.bin", data(2 * MB, 9)).status_code == 201
            return res

    _plan, st = client(server, u, tmp_path, Filling).sync(str(tree), "/tree")
    assert st.uploaded == ["a.bin"]
    assert [(e["path"], e["code"]) for e in st.errors] == [("dup.bin", "quota-exceeded")]
    tree_id = u.get("/api/v1/resolve", params={"path": "/tree"}).json()["id"]
    assert [i["name"] for i in u.get(f"/api/v1/nodes/{tree_id}/children").json()["items"]] == ["a.bin"]
