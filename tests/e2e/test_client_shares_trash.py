"""The client's paths into what others shared (``/Shared with me/NAME/…``), ``blockdrive
shared``, the trash by full path (``trash ls``/``restore``/``purge``, ``restore --trash``)
and ``pull --version``, run as the ``blockdrive`` command against a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "blockdrive"
SHARED = "/Shared with me"


def cli(env, *args, ok=(0,)):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in ok, out
    return out


@pytest.fixture
def env_of(server, tmp_path):
    def make(user, name="c"):
        return {**os.environ, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": user.token,
                "XDG_CACHE_HOME": str(tmp_path / name / "cache"), "XDG_CONFIG_HOME": str(tmp_path / name / "cfg")}
    return make


def content(u, path: str) -> bytes:
    node = u.get("/api/v1/resolve", params={"path": path}).json()
    return u.get(f"/api/v1/nodes/{node['id']}/content").content


def test_shared_folder_by_path_in_every_command(server, tmp_path, env_of):
    owner, me = server.user(), server.user()
    eo, em = env_of(owner, "owner"), env_of(me, "me")
    cli(eo, "remote", "mkdir", "/team/docs")
    f = tmp_path / "plan.txt"
    f.write_bytes(b"v1")
    cli(eo, "push", str(f), "/team/docs/plan.txt")
    cli(eo, "share", "/team", me.email, "--role", "editor")

    shared = json.loads(cli(em, "shared", "--json").stdout)["items"]
    assert [(n["name"], n["owner"]) for n in shared] == [("team", owner.email)]
    text = cli(em, "shared").stdout
    assert owner.email in text and "editor" in text and f"{SHARED}/team" in text
    assert [n["name"] for n in json.loads(cli(em, "remote", "ls", SHARED, "--json").stdout)["items"]] == ["team"]
    ls = json.loads(cli(em, "remote", "ls", f"{SHARED}/team/docs", "--json").stdout)["items"]
    assert [n["name"] for n in ls] == ["plan.txt"]

    got = tmp_path / "got.txt"
    cli(em, "pull", f"{SHARED}/team/docs/plan.txt", str(got))
    assert got.read_bytes() == b"v1"
    got.write_bytes(b"v2 by me")
    cli(em, "push", str(got), f"{SHARED}/team/docs/plan.txt")
    assert content(owner, "/team/docs/plan.txt") == b"v2 by me"
    vs = json.loads(cli(em, "versions", f"{SHARED}/team/docs/plan.txt", "--json").stdout)["items"]
    assert len(vs) == 2

    cli(em, "remote", "mkdir", f"{SHARED}/team/new/deeper")
    assert owner.get("/api/v1/resolve", params={"path": "/team/new/deeper"}).json()["kind"] == "folder"
    cli(em, "mv", f"{SHARED}/team/docs/plan.txt", f"{SHARED}/team/new/plan2.txt")
    assert content(owner, "/team/new/plan2.txt") == b"v2 by me"
    cli(em, "restore", f"{SHARED}/team/new/plan2.txt", "--version", str(vs[1]["id"]))
    assert content(owner, "/team/new/plan2.txt") == b"v1"

    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)
    (tree / "sub/a.txt").write_bytes(b"a")
    cli(em, "sync", str(tree), f"{SHARED}/team/synced")
    assert content(owner, "/team/synced/sub/a.txt") == b"a"
    cli(em, "rm", f"{SHARED}/team/synced/sub/a.txt")
    assert owner.get("/api/v1/resolve", params={"path": "/team/synced/sub/a.txt"}).status_code == 404

    # nothing of the caller's own was made on the way, and a wrong name says what exists
    assert me.get("/api/v1/resolve", params={"path": SHARED}).status_code == 404
    out = cli(em, "remote", "ls", f"{SHARED}/nope", ok=(7,))
    assert "nothing shared with you is named 'nope'" in out.stderr
    out = cli(em, "remote", "mkdir", f"{SHARED}/nope", ok=(7,))
    assert me.get("/api/v1/resolve", params={"path": SHARED}).status_code == 404
    # an owner's own paths are unchanged
    assert json.loads(cli(eo, "remote", "ls", "/team/new", "--json").stdout)["items"]


def test_trash_restores_the_exact_path_only(server, tmp_path, env_of):
    u = server.user()
    env = env_of(u)
    for i, sub in enumerate(("sub0", "sub1")):
        f = tmp_path / f"f{i}.txt"
        f.write_bytes(f"in {sub}".encode())
        cli(env, "push", str(f), f"/a/{sub}/f.txt")
    cli(env, "rm", "/a/sub1/f.txt")  # deleted first: the older entry
    cli(env, "rm", "/a/sub0/f.txt")

    items = json.loads(cli(env, "trash", "ls", "--json").stdout)["items"]
    assert sorted(n["path"] for n in items) == ["/a/sub0/f.txt", "/a/sub1/f.txt"]
    assert "/a/sub1/f.txt" in cli(env, "trash", "list").stdout  # the older form too

    cli(env, "restore", "--trash", "/a/sub1/f.txt")
    assert content(u, "/a/sub1/f.txt") == b"in sub1"
    assert u.get("/api/v1/resolve", params={"path": "/a/sub0/f.txt"}).status_code == 404

    out = cli(env, "trash", "restore", "/a/sub2/f.txt", ok=(7,))
    assert "nothing in the trash was at /a/sub2/f.txt" in out.stderr and "/a/sub0/f.txt" in out.stderr
    out = cli(env, "restore", "--trash", "/never/was.txt", ok=(7,))
    assert "nothing in the trash was at /never/was.txt" in out.stderr
    assert [n["path"] for n in json.loads(cli(env, "trash", "ls", "--json").stdout)["items"]] == ["/a/sub0/f.txt"]

    cli(env, "trash", "restore", "/a/sub0/f.txt")
    assert content(u, "/a/sub0/f.txt") == b"in sub0"

    # a file inside a folder deleted later keeps its full path
    cli(env, "rm", "/a/sub0/f.txt")
    cli(env, "rm", "/a/sub0")
    paths = {n["path"] for n in json.loads(cli(env, "trash", "ls", "--json").stdout)["items"]}
    assert paths == {"/a/sub0/f.txt", "/a/sub0"}

    # the same path deleted twice: the newest comes back, and the answer says so
    f = tmp_path / "g.txt"
    for body in (b"old", b"new"):
        f.write_bytes(body)
        cli(env, "push", str(f), "/a/g.txt", "--force")
        cli(env, "rm", "/a/g.txt")
    out = cli(env, "trash", "restore", "/a/g.txt")
    assert content(u, "/a/g.txt") == b"new" and "newest of 2" in out.stdout

    out = cli(env, "trash", "purge", "/a/nothing.txt", ok=(7,))
    assert "nothing in the trash was at /a/nothing.txt" in out.stderr
    cli(env, "trash", "purge", "/a/sub0/f.txt")
    paths = {n["path"] for n in json.loads(cli(env, "trash", "ls", "--json").stdout)["items"]}
    assert paths == {"/a/sub0", "/a/g.txt"}
    cli(env, "trash", "purge", "--all")
    assert json.loads(cli(env, "trash", "ls", "--json").stdout)["items"] == []


def test_pull_an_older_version(server, tmp_path, env_of):
    u = server.user()
    env = env_of(u)
    f = tmp_path / "doc.txt"
    for body in (b"first " * 30000, b"second " * 30000):
        f.write_bytes(body)
        cli(env, "push", str(f), "/doc.txt")
    vs = json.loads(cli(env, "versions", "/doc.txt", "--json").stdout)["items"]
    old = tmp_path / "old.txt"
    out = cli(env, "pull", "/doc.txt", str(old), "--version", str(vs[1]["id"]))
    assert old.read_bytes() == b"first " * 30000 and f"version {vs[1]['id']}" in out.stdout
    out = cli(env, "pull", "/doc.txt", str(tmp_path / "x.txt"), "--version", "999999", ok=(7,))
    assert "has no version 999999" in out.stderr and not (tmp_path / "x.txt").exists()
    # the old version pulled is not taken as synced: the current one still pulls over it
    cli(env, "pull", "/doc.txt", str(old), "--force")
    assert old.read_bytes() == b"second " * 30000
