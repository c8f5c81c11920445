"""``blockdrive bisync`` through a real server: two local replicas of one account, each with
its own state database and trash, kept alike both ways."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent / "blockdrive"


class Replica:
    """One device: a local folder, its own cache (state database, index) and trash."""

    def __init__(self, server, user, home: Path, remote: str = "/sync"):
        self.dir, self.home, self.remote = home / "files", home, remote
        self.dir.mkdir(parents=True)
        self.env = {**os.environ, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": user.token,
                    "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "cfg"),
                    "XDG_DATA_HOME": str(home / "data")}

    def bisync(self, *extra, ok=(0,)) -> str:
        out = subprocess.run([str(BIN), "bisync", str(self.dir), self.remote, "--device", self.home.name, *extra],
                             env=self.env, capture_output=True, text=True, timeout=300)
        assert out.returncode in ok, out
        return out.stdout

    def files(self) -> dict[str, bytes]:
        """The local files, but for the puller's own temporary ones (a kill -9 may leave one)."""
        out = {}
        for dirpath, _, names in os.walk(self.dir):
            for n in names:
                if n.startswith(".blockdrive-"):
                    continue
                p = Path(dirpath) / n
                out[str(p.relative_to(self.dir))] = p.read_bytes()
        return out

    def trashed(self) -> dict[str, bytes]:
        files = self.home / "data" / "Trash" / "files"
        return {p.name: p.read_bytes() for p in files.iterdir() if p.is_file()} if files.exists() else {}


def server_files(user, remote: str = "/sync") -> dict[str, bytes]:
    root = user.get("/api/v1/resolve", params={"path": remote}).json()
    items = user.get(f"/api/v1/nodes/{root['id']}/tree").json()["items"]
    paths, out = {root["id"]: ""}, {}
    for it in items:
        rel = f"{paths[it['parent_id']]}/{it['name']}".lstrip("/")
        paths[it["id"]] = rel
        if it["kind"] == "file":
            out[rel] = user.get(f"/api/v1/nodes/{it['id']}/content").content
    return out


@pytest.fixture
def pair(server, tmp_path):
    user = server.user()
    return user, Replica(server, user, tmp_path / "a"), Replica(server, user, tmp_path / "b")


def converge(user, *replicas):
    for r in replicas:
        r.bisync()
    want = server_files(user)
    for r in replicas:
        assert r.files() == want
    return want


def test_creates_edits_and_deletes_both_ways(pair):
    user, a, b = pair
    (a.dir / "docs").mkdir()
    (a.dir / "docs/plan.txt").write_bytes(b"plan v1")
    (a.dir / "big.bin").write_bytes(os.urandom(300_000))
    out = a.bisync()
    assert "up docs/plan.txt" in out and "bisync: 2 up, 0 down" in out
    out = b.bisync()
    assert "down docs/plan.txt" in out and "down big.bin" in out
    assert b.files() == a.files() == server_files(user)

    # an edit on b comes up, then down to a; a second run changes nothing
    (b.dir / "docs/plan.txt").write_bytes(b"plan v2 from b")
    assert "up docs/plan.txt" in b.bisync()
    assert "down docs/plan.txt" in a.bisync()
    assert (a.dir / "docs/plan.txt").read_bytes() == b"plan v2 from b"
    assert "bisync: 0 up, 0 down, 0 moved, 0 deleted, 0 conflicts" in a.bisync()

    # a new file on the server comes down to both
    root = user.get("/api/v1/resolve", params={"path": "/sync/docs"}).json()
    assert user.upload(root["id"], "web.txt", b"from the web").status_code in (200, 201)
    converge(user, a, b)
    assert (b.dir / "docs/web.txt").read_bytes() == b"from the web"

    # a local delete goes to the server's trash; on the other device, to the OS trash
    (a.dir / "docs/web.txt").unlink()
    assert "delete remote docs/web.txt" in a.bisync()
    assert "delete local docs/web.txt" in b.bisync()
    assert not (b.dir / "docs/web.txt").exists()
    assert b.trashed() == {"web.txt": b"from the web"}
    info = (b.home / "data/Trash/info/web.txt.trashinfo").read_text()
    assert info.startswith("[Trash Info]\nPath=") and "docs/web.txt" in info and "DeletionDate=" in info
    assert any(n["name"] == "web.txt" for n in user.get("/api/v1/trash").json()["items"])
    assert "web.txt" not in str(server_files(user))


def test_concurrent_edit_keeps_both(pair):
    user, a, b = pair
    (a.dir / "notes.md").write_bytes(b"base")
    converge(user, a, b)
    (a.dir / "notes.md").write_bytes(b"edit on a")
    (b.dir / "notes.md").write_bytes(b"edit on b")
    a.bisync()
    out = b.bisync()
    copy = f"notes (conflicted copy b {time.strftime('%Y-%m-%d')}).md"
    assert f"conflict notes.md: kept both, local copy saved as {copy}" in out
    assert "1 conflicts" in out
    assert b.files() == {"notes.md": b"edit on a", copy: b"edit on b"}
    assert converge(user, a, b) == {"notes.md": b"edit on a", copy: b"edit on b"}


def test_remote_delete_of_a_locally_edited_file_keeps_it(pair):
    user, a, b = pair
    (a.dir / "keep.txt").write_bytes(b"v1")
    converge(user, a, b)
    (a.dir / "keep.txt").unlink()
    a.bisync()
    (b.dir / "keep.txt").write_bytes(b"v2 edited on b")
    out = b.bisync()
    assert "up keep.txt" in out and "delete local" not in out
    assert converge(user, a, b) == {"keep.txt": b"v2 edited on b"}


def test_renames_and_moves_both_ways(pair):
    user, a, b = pair
    (a.dir / "dir/sub").mkdir(parents=True)
    (a.dir / "dir/sub/x.bin").write_bytes(os.urandom(200_000))
    (a.dir / "y.txt").write_bytes(b"y")
    converge(user, a, b)
    ids = {p: user.get("/api/v1/resolve", params={"path": f"/sync/{p}"}).json()["id"] for p in ("dir", "y.txt")}
    # local rename and folder move on a: moves on the server, the same node ids
    os.rename(a.dir / "y.txt", a.dir / "z.txt")
    (a.dir / "moved").mkdir()
    os.rename(a.dir / "dir", a.dir / "moved/dir2")
    out = a.bisync()
    assert "move remote y.txt -> z.txt" in out and "move remote dir -> moved/dir2" in out and "up " not in out
    assert user.get("/api/v1/resolve", params={"path": "/sync/z.txt"}).json()["id"] == ids["y.txt"]
    assert user.get("/api/v1/resolve", params={"path": "/sync/moved/dir2"}).json()["id"] == ids["dir"]
    # ... and on b they are moved locally, nothing downloaded again
    ino = os.stat(b.dir / "dir/sub/x.bin").st_ino
    out = b.bisync()
    assert "move local y.txt -> z.txt" in out and "move local dir -> moved/dir2" in out and "down " not in out
    assert os.stat(b.dir / "moved/dir2/sub/x.bin").st_ino == ino
    assert b.files() == a.files() == server_files(user)
    # a move on the server comes down as a move
    r = user.patch(f"/api/v1/nodes/{ids['y.txt']}", json={"name": "w.txt"})
    assert r.status_code == 200, r.text
    for rep in (a, b):
        assert "move local z.txt -> w.txt" in rep.bisync()
    assert converge(user, a, b)["w.txt"] == b"y"


def test_symlink_skipped_and_dry_run_changes_nothing(pair):
    user, a, _ = pair
    (a.dir / "real.txt").write_bytes(b"r")
    os.symlink(a.dir / "real.txt", a.dir / "link.txt")
    out = a.bisync("--dry-run")
    assert "up real.txt" in out
    assert user.get("/api/v1/resolve", params={"path": "/sync/real.txt"}).status_code == 404
    out = a.bisync()
    assert "kept link.txt: skipped, a symbolic link" in out
    assert server_files(user) == {"real.txt": b"r"}


def test_kill_mid_run_then_rerun_converges(pair):
    user, a, b = pair
    for i in range(30):
        (b.dir / f"remote{i:02}.bin").write_bytes(os.urandom(70_000 + i))
    b.bisync()
    for i in range(30):
        (a.dir / f"local{i:02}.bin").write_bytes(os.urandom(70_000 + i))
    proc = subprocess.Popen([str(BIN), "bisync", str(a.dir), a.remote], env=a.env, stdout=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:  # killed (-9) after its first download, with more to come
        if line.startswith("down "):
            break
    proc.kill()
    proc.wait()
    out = a.bisync()
    assert "0 conflicts" in out and "up " not in out
    want = converge(user, a, b)
    assert len(want) == 60 and not user.get("/api/v1/trash").json()["items"]
    assert "bisync: 0 up, 0 down, 0 moved, 0 deleted, 0 conflicts" in a.bisync()
    # killed after its commits but before it recorded them: both sides alike, nothing to redo
    for p in (a.home / "cache/blockdrive/bisync").iterdir():
        p.unlink()
    (a.dir / "local00.bin").write_bytes(b"edited after the state was lost")
    out = a.bisync()
    assert "bisync: 1 up, 1 down, 0 moved, 0 deleted, 1 conflicts" in out
    assert "bisync: 0 up, 0 down, 0 moved, 0 deleted, 0 conflicts" in a.bisync()
    assert len(converge(user, a, b)) == 61


def test_watch_follows_local_and_remote_changes(pair):
    user, a, b = pair
    (a.dir / "start.txt").write_bytes(b"s")
    converge(user, a, b)
    procs = [subprocess.Popen([str(BIN), "bisync", str(r.dir), r.remote, "--watch"], env=r.env,
                              stdout=subprocess.DEVNULL) for r in (a, b)]
    try:
        (a.dir / "live.txt").write_bytes(b"typed on a")
        deadline = time.monotonic() + 60
        while not (b.dir / "live.txt").exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (b.dir / "live.txt").read_bytes() == b"typed on a"
        (b.dir / "start.txt").write_bytes(b"edited on b")
        while (a.dir / "start.txt").read_bytes() != b"edited on b" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert (a.dir / "start.txt").read_bytes() == b"edited on b"
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            assert p.wait(timeout=60) == 0
