"""What the ``blockdrive`` client says when things are not as expected: a server address
without a scheme, a server that is down, no sign-in, a 255-byte file name, symbolic links
and special files met by push and sync, a file deleted while a sync reads it."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import client.sync.client as sync_client
from client.main import main

BIN = Path(sys.executable).parent / "blockdrive"
INTERNALS = ("Traceback", "HTTPConnectionPool", "urllib3", "object at 0x", "Max retries")


def cli(env, *args, ok=(0,)):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in ok, out
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def bare_env(tmp_path):
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache"), "XDG_CONFIG_HOME": str(tmp_path / "cfg"),
           "BLOCKDRIVE_PASSWORD": "password123"}
    env.pop("BLOCKDRIVE_URL", None)
    env.pop("BLOCKDRIVE_TOKEN", None)
    return env


def test_address_without_scheme_and_a_server_that_is_down(bare_env):
    port = free_port()
    out = cli(bare_env, "login", f"127.0.0.1:{port}", "--email", "a@example.com", "--retries", "1", ok=(5,))
    assert f"assuming https://127.0.0.1:{port}" in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2 and "did not answer after 2 attempts" in lines[1], out.stderr
    assert "refused" in lines[1].lower() and not any(s in out.stderr for s in INTERNALS)

    out = cli(bare_env, "login", "ftp://example.com", "--email", "a@example.com", ok=(1,))
    assert "must start with https:// or http://" in out.stderr

    env = {**bare_env, "BLOCKDRIVE_URL": f"http://127.0.0.1:{port}", "BLOCKDRIVE_TOKEN": "bd_x"}
    out = cli(env, "remote", "ls", "/", "--retries", "0", ok=(5,))
    assert out.stderr.count("\n") == 1 and "refused" in out.stderr.lower(), out.stderr
    assert not any(s in out.stderr for s in INTERNALS)


def test_commands_without_a_login_say_how_to_sign_in(bare_env, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    for args in (("remote", "ls"), ("push", str(f), "/f.txt"), ("pull", "/f.txt", str(tmp_path / "g")),
                 ("trash", "ls"), ("shared",)):
        out = cli(bare_env, *args, ok=(6,))
        assert "not signed in" in out.stderr and "blockdrive login https://" in out.stderr, out.stderr


def test_a_refused_token_says_to_sign_in_again(server, bare_env):
    env = {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": "bd_not_a_token"}
    out = cli(env, "remote", "ls", ok=(6,))
    assert "sign in again with `blockdrive login`" in out.stderr


def test_pull_of_a_255_byte_name(server, bare_env, tmp_path):
    u = server.user()
    env = {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}
    name = "é" * 100 + "n" * 51 + ".txt"  # 255 bytes in UTF-8
    assert len(name.encode()) == 255
    assert u.upload(u.root, name, b"long name").status_code == 201
    dest = tmp_path / "down"
    dest.mkdir()
    cli(env, "pull", f"/{name}", str(dest))
    assert (dest / name).read_bytes() == b"long name"
    assert os.listdir(dest) == [name]  # no temporary file left behind


def test_links_and_special_files_are_reported_as_skipped(server, bare_env, tmp_path):
    u = server.user()
    env = {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}
    root = tmp_path / "tree"
    (root / "dir").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"a")
    (root / "link.txt").symlink_to(root / "a.txt")
    (root / "dirlink").symlink_to(root / "dir")
    os.mkfifo(root / "pipe")
    out = cli(env, "sync", str(root), "/m", "--json", ok=(1,))
    res = json.loads(out.stdout)
    assert sorted(Path(s["path"]).name for s in res["skipped"]) == ["dirlink", "link.txt", "pipe"]
    assert "skipped: " + str(root / "link.txt") + ": a symbolic link" in out.stderr
    assert "named pipe" in out.stderr and "3 file(s) skipped" in out.stderr
    names = {n["name"] for n in u.get(f"/api/v1/nodes/{u.get('/api/v1/resolve', params={'path': '/m'}).json()['id']}"
                                      "/children").json()["items"]}
    assert names == {"a.txt", "dir"}
    out = cli(env, "push", str(root / "link.txt"), "/l.txt", ok=(1,))
    assert "skipped" in out.stderr and "symbolic link" in out.stderr
    assert u.get("/api/v1/resolve", params={"path": "/l.txt"}).status_code == 404


def test_a_file_deleted_or_changed_while_sync_reads_it_is_skipped_and_the_rest_goes_on(
        server, bare_env, tmp_path, monkeypatch, capsys):
    u = server.user()
    for k, v in {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}.items():
        monkeypatch.setenv(k, v)
    root = tmp_path / "t"
    root.mkdir()
    for n in ("keep.txt", "gone.txt"):
        (root / n).write_bytes(n.encode())
    (root / "grow.bin").write_bytes(b"g" * 300_000)  # more than a block: cut by the chunker
    assert main(["sync", str(root), "/s", "-q"]) == 0
    (root / "keep.txt").write_bytes(b"keep, edited")
    (root / "gone.txt").write_bytes(b"gone, edited")
    (root / "new.txt").write_bytes(b"new")
    (root / "grow.bin").write_bytes(b"h" * 300_000)
    real, real_chunker = sync_client.scan_stat, sync_client.make_chunker

    def deleting(path, *a):  # the file goes away between the listing and its reading
        if os.path.basename(path) == "gone.txt":
            os.unlink(path)
        return real(path, *a)
    class Growing:  # the file grows while it is being cut into blocks
        def __init__(self, conf):
            self.inner = real_chunker(conf)

        def chunks(self, f):
            for i, view in enumerate(self.inner.chunks(f)):
                if i == 0 and f.name.endswith("grow.bin"):
                    with open(f.name, "ab") as w:
                        w.write(b"more")
                yield view
    monkeypatch.setattr(sync_client, "scan_stat", deleting)
    monkeypatch.setattr(sync_client, "make_chunker", Growing)
    capsys.readouterr()
    assert main(["sync", str(root), "/s", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"skipped: {root / 'gone.txt'}: deleted while it was read" in err and "2 file(s) skipped" in err
    assert f"skipped: {root / 'grow.bin'}: changed while it was read" in err

    def body(path):
        node = u.get("/api/v1/resolve", params={"path": path}).json()
        return u.get(f"/api/v1/nodes/{node['id']}/content").content
    assert body("/s/keep.txt") == b"keep, edited" and body("/s/new.txt") == b"new"
    assert body("/s/gone.txt") == b"gone.txt"  # their server copies were left as they were
    assert body("/s/grow.bin") == b"g" * 300_000
