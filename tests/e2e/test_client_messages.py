"""What the ``blockdrive`` client says when things are not as expected: a server address
without a scheme, a server that is down, no sign-in, a 255-byte file name, symbolic links
and special files met by push and sync, a file deleted or changed while sync, push or pull
reads it (between the scan and the sending of its blocks, or before its commit)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import client.sync.client as sync_client
from client.api import Api
from client.main import main
from client.sync import Client

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
    assert f"skipped: {root / 'gone.txt'}: deleted while reading" in err and "2 file(s) skipped" in err
    assert f"skipped: {root / 'grow.bin'}: changed while reading (will be sent next run)" in err

    def body(path):
        node = u.get("/api/v1/resolve", params={"path": path}).json()
        return u.get(f"/api/v1/nodes/{node['id']}/content").content
    assert body("/s/keep.txt") == b"keep, edited" and body("/s/new.txt") == b"new"
    assert body("/s/gone.txt") == b"gone.txt"  # their server copies were left as they were
    assert body("/s/grow.bin") == b"g" * 300_000


def signed_in(monkeypatch, server, bare_env):
    """The environment of a signed-in user, for commands run in this process (``main``)."""
    u = server.user()
    for k, v in {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}.items():
        monkeypatch.setenv(k, v)
    return u


def content(u, path):
    r = u.get("/api/v1/resolve", params={"path": path})
    return None if r.status_code == 404 else u.get(f"/api/v1/nodes/{r.json()['id']}/content").content


def before_blocks_are_asked_for(monkeypatch, change):
    """Run ``change()`` once, after the scan and before any block is read to be sent."""
    done = []
    for name in ("missing", "missing_if_room"):
        real = getattr(Api, name)

        def hooked(self, *a, _real=real, **kw):
            if not done:
                done.append(1)
                change()
            return _real(self, *a, **kw)
        monkeypatch.setattr(Api, name, hooked)


def test_files_changed_or_deleted_after_the_scan_are_skipped_by_sync_and_sent_next_run(
        server, bare_env, tmp_path, monkeypatch, capsys):
    u = signed_in(monkeypatch, server, bare_env)
    root = tmp_path / "t"
    root.mkdir()
    old = {"grows.bin": b"a" * 300_000, "inplace.bin": b"b" * 300_000, "vanishes.bin": b"c" * 300_000,
           "late.txt": b"late"}
    for n, data in old.items():
        (root / n).write_bytes(data)
    assert main(["sync", str(root), "/s", "-q"]) == 0
    for n, data in old.items():  # every file edited: each is sent again
        (root / n).write_bytes(data.upper())
    (root / "new.txt").write_bytes(b"new")

    def change():
        with open(root / "grows.bin", "ab") as f:  # read short of nothing, but no longer as scanned
            f.write(b"more")
        st = os.stat(root / "inplace.bin")  # same size, same mtime: only the server's hash check sees it
        with open(root / "inplace.bin", "r+b") as f:
            f.write(b"X")
        os.utime(root / "inplace.bin", ns=(st.st_atime_ns, st.st_mtime_ns))
        os.unlink(root / "vanishes.bin")
    before_blocks_are_asked_for(monkeypatch, change)
    real_put = Api.put_blocks

    def put_then_edit(self, blocks):  # late.txt (sent from memory) changes before its commit
        res = real_put(self, blocks)
        with open(root / "late.txt", "ab") as f:
            f.write(b", edited again")
        return res
    monkeypatch.setattr(Api, "put_blocks", put_then_edit)
    capsys.readouterr()
    assert main(["sync", str(root), "/s", "-q"]) == 1
    err = capsys.readouterr().err
    for n in ("grows.bin", "inplace.bin", "late.txt"):
        assert f"skipped: {root / n}: changed while reading (will be sent next run)" in err, err
    assert f"skipped: {root / 'vanishes.bin'}: deleted while reading" in err and "4 file(s) skipped" in err
    assert "Traceback" not in err
    for n, data in old.items():  # left as they were on the server
        assert content(u, f"/s/{n}") == data, n
    assert content(u, "/s/new.txt") == b"new"  # the rest went on

    monkeypatch.undo()
    for k, v in {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}.items():
        monkeypatch.setenv(k, v)
    assert main(["sync", str(root), "/s", "-q"]) == 0
    for n in ("grows.bin", "inplace.bin", "late.txt"):
        assert content(u, f"/s/{n}") == (root / n).read_bytes(), n
    # vanishes.bin was uploaded from here and is unchanged on the server since: deleted now
    assert content(u, "/s/vanishes.bin") is None


def test_push_of_a_file_changed_or_deleted_after_its_scan_commits_nothing(server, bare_env, tmp_path, monkeypatch,
                                                                          capsys):
    u = signed_in(monkeypatch, server, bare_env)
    f = tmp_path / "f.bin"
    f.write_bytes(b"1" * 300_000)
    assert main(["push", str(f), "/f.bin", "-q"]) == 0
    f.write_bytes(b"2" * 300_000)
    before_blocks_are_asked_for(monkeypatch, lambda: f.write_bytes(b"3" * 300_001))
    capsys.readouterr()
    assert main(["push", str(f), "/f.bin", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {f}: changed while reading; nothing was committed (push it again)" in err, err
    assert content(u, "/f.bin") == b"1" * 300_000

    monkeypatch.setattr(Api, "missing_if_room", Api.missing_if_room)
    f.write_bytes(b"4" * 300_000)
    before_blocks_are_asked_for(monkeypatch, lambda: f.unlink())
    assert main(["push", str(f), "/f.bin", "-q"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {f}: deleted while reading; nothing was committed" in err and "Traceback" not in err, err
    assert content(u, "/f.bin") == b"1" * 300_000
    assert main(["push", str(f), "/f.bin", "-q"]) == 1
    assert f"{f}: no such file" in capsys.readouterr().err


def test_pull_leaves_a_local_copy_changed_while_it_runs_and_writes_one_deleted(server, bare_env, tmp_path,
                                                                              monkeypatch, capsys):
    u = signed_in(monkeypatch, server, bare_env)
    assert u.upload(u.root, "p.bin", b"s" * 300_000).status_code == 201
    local = tmp_path / "p.bin"
    assert main(["pull", "/p.bin", str(local), "-q"]) == 0
    node = u.get("/api/v1/resolve", params={"path": "/p.bin"}).json()
    assert u.upload(node["parent_id"], "p.bin", b"s" * 200_000 + b"t" * 100_000).status_code == 200
    real_range = Api.read_range

    def edit_then_read(self, *a, **kw):  # the user saves the file while the pull fetches
        local.write_bytes(b"my edit, made during the pull")
        return real_range(self, *a, **kw)
    monkeypatch.setattr(Api, "read_range", edit_then_read)
    capsys.readouterr()
    assert main(["pull", "/p.bin", str(local), "-q"]) == 1
    err = capsys.readouterr().err
    assert f"skipped {local}: changed while pulling; it was left as it is" in err, err
    assert local.read_bytes() == b"my edit, made during the pull"
    assert [p for p in os.listdir(tmp_path) if ".blockdrive-" in p] == []

    # changed right after it was read for the blocks it shares: no false SHA-256 error either
    local.write_bytes(b"s" * 300_000)
    monkeypatch.setattr(Api, "read_range", real_range)
    real_scan = Client.scan

    def scan_then_edit(self, path, *a, **kw):
        res = real_scan(self, path, *a, **kw)
        with open(path, "r+b") as f:  # its first block, and its size
            f.write(b"Z" * 10)
            f.seek(0, os.SEEK_END)
            f.write(b"more")
        return res
    monkeypatch.setattr(Client, "scan", scan_then_edit)
    assert main(["pull", "/p.bin", str(local), "-q", "--force"]) == 1
    err = capsys.readouterr().err
    assert "changed while pulling" in err and "SHA-256" not in err, err
    assert local.read_bytes()[:10] == b"Z" * 10

    # deleted while the pull runs: the server's version is written, nothing is lost
    monkeypatch.setattr(Client, "scan", real_scan)

    def delete_then_read(self, *a, **kw):
        if local.exists():
            local.unlink()
        return real_range(self, *a, **kw)
    monkeypatch.setattr(Api, "read_range", delete_then_read)
    assert main(["pull", "/p.bin", str(local), "-q", "--force"]) == 0
    assert local.read_bytes() == b"s" * 200_000 + b"t" * 100_000
    assert [p for p in os.listdir(tmp_path) if ".blockdrive-" in p] == []


def test_a_url_without_a_scheme_from_the_environment_is_named_and_a_plain_http_server_explained(server, bare_env):
    u = server.user()
    bare = server.url.split("://", 1)[1]
    env = {**bare_env, "BLOCKDRIVE_URL": bare, "BLOCKDRIVE_TOKEN": u.token}
    out = cli(env, "remote", "ls", "/", "--retries", "0", ok=(5,))
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 2, out.stderr
    assert f"{bare!r} has no scheme: assuming https://{bare}" in lines[0]
    assert "TLS handshake failed (is the server plain http://?)" in lines[1]
    assert not any(s in out.stderr for s in INTERNALS + ("SSLError", "ssl.c"))
    # with the scheme it works
    assert cli({**env, "BLOCKDRIVE_URL": server.url}, "remote", "ls", "/").stderr == ""


def test_every_client_command_against_a_server_that_is_down_says_one_line(bare_env, tmp_path):
    port = free_port()
    env = {**bare_env, "BLOCKDRIVE_URL": f"http://127.0.0.1:{port}", "BLOCKDRIVE_TOKEN": "bd_x"}
    f = tmp_path / "f.txt"
    f.write_text("x")
    d = tmp_path / "d"
    d.mkdir()
    for args in (("push", str(f), "/f.txt"), ("pull", "/f.txt", str(tmp_path / "g")), ("sync", str(d), "/d"),
                 ("trash", "ls"), ("shared",), ("account",), ("versions", "/f.txt"), ("rm", "/f.txt")):
        out = cli(env, *args, "--retries", "1", ok=(5,))
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "did not answer after 2 attempts" in lines[0], (args, out.stderr)
        assert "refused" in lines[0].lower() and not any(s in out.stderr for s in INTERNALS), (args, out.stderr)


def test_every_client_command_without_a_login_says_how_to_sign_in(bare_env, tmp_path):
    f = tmp_path / "f.txt"
    f.write_text("x")
    for args in (("sync", str(tmp_path), "/d"), ("account",), ("versions", "/f"), ("rm", "/f"), ("mv", "/a", "/b"),
                 ("remote", "mkdir", "/x"), ("restore", "/f", "--version", "1"), ("share", "/f", "e@example.com",
                 "--role", "viewer"), ("link", "/f"), ("tokens", "list"), ("logout",), ("trash", "restore", "/f")):
        out = cli(bare_env, *args, ok=(6,))
        assert "not signed in" in out.stderr and "blockdrive login https://" in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1, (args, out.stderr)


def test_push_of_a_named_pipe_or_a_socket_is_refused_by_name(server, bare_env, tmp_path):
    u = server.user()
    env = {**bare_env, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": u.token}
    os.mkfifo(tmp_path / "pipe")
    out = cli(env, "push", str(tmp_path / "pipe"), "/pipe", ok=(1,))
    assert f"skipped {tmp_path / 'pipe'}: not a regular file (named pipe)" in out.stderr
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(tmp_path / "sock"))
        out = cli(env, "push", str(tmp_path / "sock"), "/sock", ok=(1,))
    assert f"skipped {tmp_path / 'sock'}: not a regular file (socket)" in out.stderr
    assert [n["name"] for n in u.get(f"/api/v1/nodes/{u.root}/children").json()["items"]] == []
