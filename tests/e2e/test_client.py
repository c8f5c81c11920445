"""The client (client/) against the real gunicorn server: delta push, resume after a
dropped connection, pull into an existing copy, sync of a tree with renames and deletions,
conflicts. Bytes are counted on the server side: by the server's own Prometheus counters of
block bytes received, and by a TCP proxy in front of it that counts every byte on the wire."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests

from harness.proxy import CountingProxy, relay
from client.api import Api, ClientError, ConflictError, NotFoundError, Unavailable
from client.sync import Client, Index

BIN = Path(sys.executable).parent / "blockdrive"
MiB = 1024 * 1024
CHUNK_MAX = MiB  # the e2e server's chunk_max (tests/e2e/conftest.py)


@pytest.fixture(scope="module")
def proxy(server):
    p = CountingProxy(server.url)
    yield p
    p.close()


def metric(server, name: str) -> float:
    text = requests.get(server.url + "/metrics", timeout=10).text
    m = re.search(rf"^{name}(?:\{{[^}}]*\}})? ([0-9.e+]+)$", text, re.M)
    return float(m.group(1)) if m else 0.0


def block_bytes(server) -> int:
    return int(metric(server, "blockdrive_batch_block_bytes_received_total"))


def make_client(proxy, user, tmp_path, **kw) -> Client:
    api = Api(proxy.url, user.token, retries=kw.pop("retries", 3), backoff=0.05, max_backoff=0.2)
    return Client(api, Index(tmp_path / "index.sqlite"), **kw)


def rand(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


def download(user, path: str) -> bytes:
    node = user.get("/api/v1/resolve", params={"path": path}).json()
    return user.get(f"/api/v1/nodes/{node['id']}/content").content


# ---- push ----------------------------------------------------------------------------------

def test_push_edit_push_sends_only_the_changed_blocks(server, proxy, tmp_path):
    u = server.user()
    c = make_client(proxy, u, tmp_path)
    data = bytearray(rand(6 * MiB, 1))
    f = tmp_path / "big.bin"
    f.write_bytes(data)
    b0 = block_bytes(server)
    st = c.push(str(f), "/docs/big.bin")
    assert st.uploaded == ["/docs/big.bin"] and st.bytes_sent == len(data)
    assert block_bytes(server) - b0 == len(data)  # the server received every block once
    assert download(u, "/docs/big.bin") == data

    data[len(data) // 2] ^= 0xFF
    f.write_bytes(data)
    b1 = block_bytes(server)
    proxy.reset()
    st = c.push(str(f), "/docs/big.bin")
    server_bytes = block_bytes(server) - b1
    assert 0 < server_bytes <= 2 * CHUNK_MAX, server_bytes
    assert st.blocks_sent <= 2 and st.bytes_sent == server_bytes
    assert proxy.up <= 2 * CHUNK_MAX + 64 * 1024, proxy.up  # everything on the wire, headers and JSON too
    assert st.bytes_skipped == len(data) - server_bytes
    assert download(u, "/docs/big.bin") == data
    node = u.get("/api/v1/resolve", params={"path": "/docs/big.bin"}).json()
    assert len(u.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 2

    # unchanged: no block data, no commit, no new version
    b2 = block_bytes(server)
    st = c.push(str(f), "/docs/big.bin")
    assert st.unchanged == ["/docs/big.bin"] and st.bytes_sent == 0 and block_bytes(server) == b2
    assert len(u.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 2
    # --checksum rehashes instead of trusting the index: same answer
    assert c.push(str(f), "/docs/", checksum=True).unchanged == ["/docs/big.bin"]


def test_interrupted_push_resumes_without_resending(server, proxy, tmp_path):
    u = server.user()
    data = rand(8 * MiB, 2)
    f = tmp_path / "resume.bin"
    f.write_bytes(data)
    c = make_client(proxy, u, tmp_path, batch_bytes=MiB, jobs=1, retries=1)
    b0 = block_bytes(server)
    proxy.cut_after(4 * MiB)
    try:
        with pytest.raises(Unavailable, match="did not answer after 2 attempts"):
            c.push(str(f), "/resume.bin")
    finally:
        proxy.heal()
    first = block_bytes(server) - b0
    assert 0 < first < len(data)  # some batches landed before the cut
    # nothing committed: the file does not exist yet
    assert u.get("/api/v1/resolve", params={"path": "/resume.bin"}).status_code == 404
    b1 = block_bytes(server)
    st = c.push(str(f), "/resume.bin")
    second = block_bytes(server) - b1
    assert first + second == len(data), (first, second)  # no block sent twice
    assert st.bytes_skipped == first and st.bytes_sent == second
    assert download(u, "/resume.bin") == data


def test_server_down_is_a_clear_error_and_exit_code(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    f = tmp_path / "x.txt"
    f.write_text("hello")
    env = {**os.environ, "BLOCKDRIVE_URL": f"http://127.0.0.1:{port}", "BLOCKDRIVE_TOKEN": "bd_x",
           "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    out = subprocess.run([str(BIN), "push", str(f), "/x.txt", "--retries", "1"], env=env, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 5, out
    assert "did not answer after 2 attempts" in out.stderr


# ---- pull ----------------------------------------------------------------------------------

def test_pull_into_an_existing_copy_fetches_only_missing_blocks(server, proxy, tmp_path):
    u = server.user()
    c = make_client(proxy, u, tmp_path)
    data = rand(6 * MiB, 3)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    c.push(str(src), "/p.bin")
    # a fresh copy: every block fetched, verified, renamed into place
    fresh = tmp_path / "fresh.bin"
    st = c.pull("/p.bin", str(fresh))
    assert fresh.read_bytes() == data and st.bytes_received == len(data)
    # an older local copy that differs in one place: only the covering blocks come over
    old = bytearray(data)
    old[3 * MiB:3 * MiB + 10] = b"x" * 10
    local = tmp_path / "local.bin"
    local.write_bytes(old)
    proxy.reset()
    st = c.pull("/p.bin", str(local), force=True)
    assert local.read_bytes() == data
    assert 0 < st.bytes_received <= 2 * CHUNK_MAX and st.bytes_skipped == len(data) - st.bytes_received
    assert proxy.down <= 2 * CHUNK_MAX + 64 * 1024, proxy.down  # counted on the wire
    assert not [p for p in tmp_path.iterdir() if ".blockdrive-" in p.name]


def test_pull_refuses_to_clobber_local_changes_and_a_dropped_download_leaves_nothing(server, proxy, tmp_path):
    u = server.user()
    c = make_client(proxy, u, tmp_path, retries=1)
    data = rand(3 * MiB, 4)
    src = tmp_path / "s.bin"
    src.write_bytes(data)
    c.push(str(src), "/s.bin")
    local = tmp_path / "copy.bin"
    c.pull("/s.bin", str(local))
    local.write_bytes(b"my unpushed edit")
    with pytest.raises(ConflictError, match="local changes"):
        c.pull("/s.bin", str(local))
    assert local.read_bytes() == b"my unpushed edit"
    proxy.cut_after(MiB, down=True)
    try:
        with pytest.raises(Unavailable):
            c.pull("/s.bin", str(local), force=True)
    finally:
        proxy.heal()
    assert local.read_bytes() == b"my unpushed edit"  # untouched
    assert not [p for p in tmp_path.iterdir() if ".blockdrive-" in p.name]  # no temp file left


# ---- conflicts ---------------------------------------------------------------------------

def test_push_stops_on_a_server_side_change(server, proxy, tmp_path):
    u = server.user()
    c = make_client(proxy, u, tmp_path)
    f = tmp_path / "c.txt"
    f.write_bytes(b"v1" * 1000)
    c.push(str(f), "/c.txt")
    node = u.get("/api/v1/resolve", params={"path": "/c.txt"}).json()
    # someone else (another device) writes a new version
    theirs = b"theirs" * 1000
    r = u.upload(node["parent_id"], "c.txt", theirs)
    assert r.status_code == 200
    f.write_bytes(b"mine" * 1000)
    with pytest.raises(ConflictError) as exc:
        c.push(str(f), "/c.txt")
    msg = str(exc.value)
    assert hashlib.sha256(b"v1" * 1000).hexdigest() in msg and hashlib.sha256(theirs).hexdigest() in msg
    assert download(u, "/c.txt") == theirs  # not overwritten
    # --force makes ours the newest version; theirs stays in the history
    c.push(str(f), "/c.txt", force=True)
    assert download(u, "/c.txt") == b"mine" * 1000
    assert len(u.get(f"/api/v1/nodes/{node['id']}/versions").json()["items"]) == 3


def test_push_stops_when_the_file_changes_between_look_and_commit(server, proxy, tmp_path):
    u = server.user()
    f = tmp_path / "race.bin"
    f.write_bytes(rand(300_000, 5))
    c = make_client(proxy, u, tmp_path)
    c.push(str(f), "/race.bin")
    node = u.get("/api/v1/resolve", params={"path": "/race.bin"}).json()
    theirs = rand(1000, 6)

    class Racing(Client):
        def send_blocks(self, *a, **kw):
            super().send_blocks(*a, **kw)
            assert u.upload(node["parent_id"], "race.bin", theirs).status_code == 200

    rc = Racing(c.api, c.index)
    f.write_bytes(rand(300_000, 7))
    with pytest.raises(ConflictError) as exc:
        rc.push(str(f), "/race.bin")
    assert node["etag"] in str(exc.value) and hashlib.sha256(theirs).hexdigest() in str(exc.value)
    assert download(u, "/race.bin") == theirs


# ---- sync ------------------------------------------------------------------------------

def cli(env, *args, ok=(0,)):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in ok, out
    return out


def remote_tree(u, path: str) -> dict[str, bytes | None]:
    root = u.get("/api/v1/resolve", params={"path": path}).json()
    out, frontier = {}, [("", root["id"])]
    while frontier:
        prefix, nid = frontier.pop()
        for it in u.get(f"/api/v1/nodes/{nid}/children", params={"limit": 1000}).json()["items"]:
            rel = f"{prefix}/{it['name']}" if prefix else it["name"]
            if it["kind"] == "folder":
                out[rel] = None
                frontier.append((rel, it["id"]))
            else:
                out[rel] = u.get(f"/api/v1/nodes/{it['id']}/content").content
    return out


def local_tree(root: Path) -> dict[str, bytes | None]:
    out = {}
    for p in root.rglob("*"):
        out[p.relative_to(root).as_posix()] = p.read_bytes() if p.is_file() else None
    return out


@pytest.fixture
def cli_env(server, proxy, tmp_path):
    def make(user):
        return {**os.environ, "BLOCKDRIVE_URL": proxy.url, "BLOCKDRIVE_TOKEN": user.token,
                "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg")}
    return make


def test_sync_tree_with_renames_and_deletions(server, proxy, tmp_path, cli_env):
    u = server.user()
    env = cli_env(u)
    root = tmp_path / "tree"
    rng = random.Random(8)
    for d in ["a", "a/b", "c", "empty"]:
        (root / d).mkdir(parents=True)
    files = {"top.txt": 100, "a/one.bin": 200_000, "a/b/two.bin": 1_500_000, "a/b/three.txt": 10,
             "c/four.bin": 50_000, "c/five.bin": 70_000, "zero.txt": 0}
    for rel, n in files.items():
        (root / rel).write_bytes(rng.randbytes(n))
    b0 = block_bytes(server)
    out = json.loads(cli(env, "sync", str(root), "/mirror", "--json").stdout)
    assert sorted(out["uploaded"]) == sorted(files) and out["conflicts"] == []
    assert block_bytes(server) - b0 == sum(files.values())
    assert remote_tree(u, "/mirror") == local_tree(root)
    ids = {p: u.get("/api/v1/resolve", params={"path": f"/mirror/{p}"}).json()["id"] for p in files}

    # second sync of an unchanged tree: nothing sent
    b1 = block_bytes(server)
    out = json.loads(cli(env, "sync", str(root), "/mirror", "--json").stdout)
    assert out["uploaded"] == [] and len(out["unchanged"]) == len(files) and block_bytes(server) == b1

    # rename, move across folders, delete a file and a folder, edit, add
    (root / "a/b/two.bin").rename(root / "a/b/two-renamed.bin")
    (root / "a/one.bin").rename(root / "c/one-moved.bin")
    (root / "top.txt").unlink()
    for p in (root / "c").glob("f*.bin"):  # four.bin, five.bin
        p.unlink()
    (root / "a/b/three.txt").write_bytes(b"edited")
    (root / "new").mkdir()
    (root / "new/six.txt").write_bytes(b"six")
    # (the "c" folder stays, holding one-moved.bin; "empty" stays empty)
    b2 = block_bytes(server)
    proxy.reset()
    out = json.loads(cli(env, "sync", str(root), "/mirror", "--json").stdout)
    assert sorted(map(tuple, out["moved"])) == [("a/b/two.bin", "a/b/two-renamed.bin"),
                                                ("a/one.bin", "c/one-moved.bin")]
    assert sorted(out["uploaded"]) == ["a/b/three.txt", "new/six.txt"]
    assert sorted(out["deleted"]) == ["c/five.bin", "c/four.bin", "top.txt"]
    assert remote_tree(u, "/mirror") == local_tree(root)
    # a rename is a move of the same node, not a re-upload
    assert u.get("/api/v1/resolve", params={"path": "/mirror/a/b/two-renamed.bin"}).json()["id"] == ids["a/b/two.bin"]
    assert u.get("/api/v1/resolve", params={"path": "/mirror/c/one-moved.bin"}).json()["id"] == ids["a/one.bin"]
    assert block_bytes(server) - b2 == len(b"edited") + len(b"six")
    assert proxy.up < 64 * 1024  # the 1.7 MB of renamed files did not travel again
    # deleted files are in the trash, restorable
    trash = {n["name"] for n in u.get("/api/v1/trash").json()["items"]}
    assert {"top.txt", "four.bin", "five.bin"} <= trash

    # a whole folder deleted locally goes to the trash as one node
    import shutil
    shutil.rmtree(root / "a")
    out = json.loads(cli(env, "sync", str(root), "/mirror", "--json").stdout)
    assert out["deleted"] == ["a"]
    assert remote_tree(u, "/mirror") == local_tree(root)


def test_sync_conflict_leaves_the_servers_change_and_exits_4(server, proxy, tmp_path, cli_env):
    u = server.user()
    env = cli_env(u)
    root = tmp_path / "t2"
    root.mkdir()
    (root / "shared.txt").write_bytes(b"base")
    (root / "other.txt").write_bytes(b"other")
    cli(env, "sync", str(root), "/m2")
    node = u.get("/api/v1/resolve", params={"path": "/m2/shared.txt"}).json()
    assert u.upload(node["parent_id"], "shared.txt", b"server edit").status_code == 200
    (root / "shared.txt").write_bytes(b"local edit")
    (root / "other.txt").write_bytes(b"other edited")
    out = cli(env, "sync", str(root), "/m2", "--json", ok=(4,))
    res = json.loads(out.stdout)
    assert [cf["path"] for cf in res["conflicts"]] == ["shared.txt"]
    assert "conflict: shared.txt" in out.stderr and hashlib.sha256(b"server edit").hexdigest() in out.stderr
    assert download(u, "/m2/shared.txt") == b"server edit"
    assert download(u, "/m2/other.txt") == b"other edited"  # the rest went through
    cli(env, "sync", str(root), "/m2", "--force")
    assert download(u, "/m2/shared.txt") == b"local edit"


# ---- the other commands ------------------------------------------------------------------

def test_login_and_the_remaining_commands(server, proxy, tmp_path):
    u = server.user()
    other = server.user()
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "BLOCKDRIVE_PASSWORD": "password123"}
    env.pop("BLOCKDRIVE_URL", None)
    env.pop("BLOCKDRIVE_TOKEN", None)
    out = cli(env, "remote", "ls", ok=(6,))
    assert "not signed in" in out.stderr
    cli(env, "login", "--url", proxy.url, "--email", u.email)
    cred = tmp_path / "cfg/blockdrive/credentials.json"
    assert cred.stat().st_mode & 0o777 == 0o600 and json.loads(cred.read_text())["url"] == proxy.url
    cli(env, "remote", "mkdir", "/x/y")
    f = tmp_path / "f.txt"
    f.write_bytes(b"one")
    assert json.loads(cli(env, "push", str(f), "/x/y/", "--json").stdout)["status"] == "pushed"
    f.write_bytes(b"two")
    cli(env, "push", str(f), "/x/y/f.txt")
    listing = json.loads(cli(env, "remote", "ls", "/x/y", "--json").stdout)["items"]
    assert [(i["name"], i["size"]) for i in listing] == [("f.txt", 3)]
    vs = json.loads(cli(env, "versions", "/x/y/f.txt", "--json").stdout)["items"]
    assert len(vs) == 2 and vs[0]["current"]
    cli(env, "restore", "/x/y/f.txt", "--version", str(vs[1]["id"]))
    assert download(u, "/x/y/f.txt") == b"one"
    cli(env, "mv", "/x/y/f.txt", "/x/g.txt")
    assert download(u, "/x/g.txt") == b"one"
    cli(env, "mv", "/x/g.txt", "/x/y")
    assert download(u, "/x/y/g.txt") == b"one"
    cli(env, "share", "/x", other.email, "--role", "viewer")
    assert [n["name"] for n in other.get("/api/v1/shared-with-me").json()["items"]] == ["x"]
    link = json.loads(cli(env, "link", "/x/y/g.txt", "--expires", "7d", "--json").stdout)
    assert link["expires_at"] and requests.get(server.url + f"/s/{link['token']}/content").content == b"one"
    cli(env, "rm", "/x/y/g.txt")
    assert u.get("/api/v1/resolve", params={"path": "/x/y/g.txt"}).status_code == 404
    cli(env, "restore", "--trash", "/x/y/g.txt")
    assert download(u, "/x/y/g.txt") == b"one"
    pulled = tmp_path / "pulled.txt"
    assert json.loads(cli(env, "pull", "/x/y/g.txt", str(pulled), "--json").stdout)["status"] == "pulled"
    assert pulled.read_bytes() == b"one"
    out = cli(env, "pull", "/nope", str(pulled), ok=(7,))
    assert "not found" in out.stderr


# ---- the batch routes themselves -----------------------------------------------------------

def test_batch_routes_check_each_file(server):
    import struct
    u = server.user()
    a, b = b"alpha" * 100, b"beta" * 100
    ha, hb = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    body = b"".join(struct.pack(">32sI", bytes.fromhex(h), len(d)) + d for h, d in ((ha, a),))
    r = u.post("/api/v1/batch/blocks", data=body, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200 and r.json()["received"] == 1
    bad = struct.pack(">32sI", bytes.fromhex(hb), len(a)) + a
    assert u.post("/api/v1/batch/blocks", data=bad).status_code == 422
    r = u.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": u.root, "name": "a.txt", "blocks": [ha], "size": len(a), "sha256": ha},
        {"parent_id": u.root, "name": "b.txt", "blocks": [hb], "size": len(b), "sha256": hb},  # never sent
        {"parent_id": u.root, "name": "c.txt", "blocks": [ha], "size": len(a), "sha256": hb},  # wrong hash
    ]})
    res = r.json()["results"]
    assert "ok" in res[0] and res[0]["ok"]["created"]
    assert res[1]["error"]["code"] == "invalid-input" and res[2]["error"]["code"] == "hash-mismatch"
    assert u.get("/api/v1/resolve", params={"path": "/b.txt"}).status_code == 404
    # If-None-Match on an existing file, If-Match on a stale ETag: per-file precondition errors
    r = u.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": u.root, "name": "a.txt", "blocks": [ha], "size": len(a), "sha256": ha, "if_none_match": True},
        {"parent_id": u.root, "name": "a.txt", "blocks": [ha], "size": len(a), "sha256": ha, "if_match": hb}]})
    assert [x["error"]["code"] for x in r.json()["results"]] == ["precondition-failed"] * 2
    # another user cannot build on blocks they never sent
    v = server.user()
    r = v.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": v.root, "name": "a.txt", "blocks": [ha], "size": len(a), "sha256": ha}]})
    assert r.json()["results"][0]["error"]["code"] == "invalid-input"
    # block map and folders
    node = res[0]["ok"]
    bm = u.get(f"/api/v1/nodes/{node['id']}/blocks").json()
    assert bm["blocks"] == [[ha, 0, len(a)]] and bm["sha256"] == ha
    assert v.get(f"/api/v1/nodes/{node['id']}/blocks").status_code == 404
    r = u.post("/api/v1/batch/folders", json={"folders": [{"parent_id": u.root, "name": "d"},
                                                          {"parent_id": u.root, "name": "d"},
                                                          {"parent_id": u.root, "name": "a.txt"}]})
    res = r.json()["results"]
    assert res[0]["ok"]["created"] and not res[1]["ok"]["created"] and res[0]["ok"]["id"] == res[1]["ok"]["id"]
    assert res[2]["error"]["code"] == "conflict"
    # ids past 64 bits are refused per entry, not a server error (found by schemathesis)
    r = u.post("/api/v1/batch/folders", json={"folders": [{"parent_id": 2**64, "name": "x"}]})
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid-input"
    r = u.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": 2**70, "name": "a.txt", "blocks": [ha], "size": len(a), "sha256": ha}]})
    assert r.status_code == 200 and r.json()["results"][0]["error"]["code"] == "invalid-input"
    # the whole tree in one request, parents first; nothing of it for a stranger
    assert u.post(f"/api/v1/nodes/{res[0]['ok']['id']}/children", json={"name": "e"}).status_code == 201
    t = u.get(f"/api/v1/nodes/{u.root}/tree").json()
    assert not t["truncated"]
    by_name = {i["name"]: i for i in t["items"]}
    assert by_name["a.txt"]["sha256"] == ha and by_name["a.txt"]["size"] == len(a)
    assert by_name["e"]["parent_id"] == by_name["d"]["id"] and by_name["d"]["kind"] == "folder"
    assert [i["name"] for i in t["items"]].index("d") < [i["name"] for i in t["items"]].index("e")
    assert v.get(f"/api/v1/nodes/{u.root}/tree").status_code == 404


def test_batch_folders_and_blocks_in_bulk(server):
    """Folders of several parents in one request, found again by a later one; a stranger's
    folder refused per entry; a block batch with a repeated block and a truncated one."""
    import struct
    u, v = server.user(), server.user()
    r = u.post("/api/v1/batch/folders", json={"folders": [{"parent_id": u.root, "name": n} for n in ("p1", "p2")]})
    p1, p2 = (x["ok"]["id"] for x in r.json()["results"])
    r = u.post("/api/v1/batch/folders", json={"folders": [
        {"parent_id": p1, "name": "x"}, {"parent_id": p2, "name": "x"}, {"parent_id": p1, "name": "x"},
        {"parent_id": u.root, "name": "p1"}]})
    res = [x["ok"] for x in r.json()["results"]]
    assert [x["created"] for x in res] == [True, True, False, False]
    assert res[0]["id"] == res[2]["id"] != res[1]["id"] and res[3]["id"] == p1
    assert (res[0]["parent_id"], res[1]["parent_id"]) == (p1, p2)
    r = v.post("/api/v1/batch/folders", json={"folders": [{"parent_id": u.root, "name": "z"},
                                                          {"parent_id": v.root, "name": "z"}]})
    res = r.json()["results"]
    assert res[0]["error"]["code"] == "not-found" and res[1]["ok"]["created"]
    assert u.get("/api/v1/resolve", params={"path": "/z"}).status_code == 404
    # blocks: one sent twice in a batch is stored once; a truncated batch is refused whole
    a, b = b"one" * 5000, b"two" * 7000
    ha, hb = hashlib.sha256(a).hexdigest(), hashlib.sha256(b).hexdigest()
    frame = lambda h, d: struct.pack(">32sI", bytes.fromhex(h), len(d)) + d  # noqa: E731
    r = u.post("/api/v1/batch/blocks", data=frame(ha, a) + frame(ha, a) + frame(hb, b)[:-1])
    assert r.status_code == 400 and "truncated" in r.json()["detail"]
    assert u.post("/api/v1/blocks/missing", json={"hashes": [ha, hb]}).json()["missing"] == [ha, hb]
    r = u.post("/api/v1/batch/blocks", data=frame(ha, a) + frame(ha, a) + frame(hb, b))
    assert r.json() == {"received": 3, "received_bytes": 2 * len(a) + len(b)}
    assert u.post("/api/v1/blocks/missing", json={"hashes": [ha, hb]}).json()["missing"] == []
    r = u.post("/api/v1/batch/commit", json={"files": [
        {"parent_id": p1, "name": "ab", "blocks": [ha, hb, ha], "size": 2 * len(a) + len(b),
         "sha256": hashlib.sha256(a + b + a).hexdigest()}]})
    node = r.json()["results"][0]["ok"]
    assert u.get(f"/api/v1/nodes/{node['id']}/content").content == a + b + a


class LostAnswerProxy:
    """Forwards to the server, except that the answer to the next request whose request line
    starts with ``arm(prefix)`` is swallowed and the connection dropped: the server handled
    the request, the client never hears so and retries."""

    def __init__(self, upstream: str):
        host, port = upstream.rsplit("//", 1)[1].split(":")
        self.upstream = (host, int(port))
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.prefix: bytes | None = None
        self.lost = 0
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, prefix: bytes) -> None:
        with self.lock:
            self.prefix = prefix

    def _accept(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(self.upstream)
            doomed = threading.Event()
            threading.Thread(target=self._pump, args=(c, u, doomed, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(u, c, doomed, False), daemon=True).start()

    def _pump(self, src, dst, doomed, up):
        relay(src, dst, lambda data: self._admit(data, doomed, up))

    def _admit(self, data: bytes, doomed: threading.Event, up: bool) -> bool:
        """Arm on the request line asked for; drop the server's answer on an armed connection."""
        if up:
            with self.lock:
                if self.prefix is not None and data.startswith(self.prefix):
                    self.prefix = None
                    doomed.set()
        elif doomed.is_set():  # the server's answer: dropped, not passed on
            with self.lock:
                self.lost += 1
            return False
        return True

    def close(self):
        self.sock.close()


def test_a_delete_or_mkdir_whose_answer_was_lost_is_not_reported_as_failed(server, tmp_path):
    u = server.user()
    p = LostAnswerProxy(server.url)
    try:
        api = Api(p.url, u.token, retries=3, backoff=0.05, max_backoff=0.2)
        f = u.upload(u.root, "gone.txt", b"x").json()
        p.arm(b"DELETE /api/v1/nodes/")
        res = api.delete(f["id"])  # the retry finds it in the trash: done, not 404
        assert p.lost == 1 and res["id"] == f["id"]
        assert [n["id"] for n in u.get("/api/v1/trash").json()["items"]] == [f["id"]]
        p.arm(b"POST /api/v1/nodes/")
        res = api.mkdir(u.root, "made")  # the retry finds the folder: done, not 409
        assert p.lost == 2 and res["kind"] == "folder" and res["name"] == "made"
        assert u.get("/api/v1/resolve", params={"path": "/made"}).json()["id"] == res["id"]
        # without a lost answer the errors stand: a second delete is a 404, a second mkdir a 409
        with pytest.raises(NotFoundError):
            api.delete(f["id"])
        with pytest.raises(ClientError) as exc:
            api.mkdir(u.root, "made")
        assert exc.value.status == 409
        # a move is idempotent on the server: the retry of a lost answer succeeds as is
        g = u.upload(u.root, "m.txt", b"y").json()
        p.arm(b"PATCH /api/v1/nodes/")
        assert api.move(g["id"], name="moved.txt")["name"] == "moved.txt" and p.lost == 3
    finally:
        p.close()
