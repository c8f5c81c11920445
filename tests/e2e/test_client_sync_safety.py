"""One-way ``sync`` from two devices on one account: a device's sync deletes (or moves away) on
the server only what it uploaded or pulled itself and is unchanged there since; the rest is
kept, named on stderr and counted. Each device has its own local index (``XDG_CACHE_HOME``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

BIN = Path(sys.executable).parent / "blockdrive"


def cli(env, *args, ok=(0,)):
    out = subprocess.run([str(BIN), *args], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode in ok, out
    return out


def device(server, user, tmp_path, name: str) -> dict:
    """The environment of one device: the account's server and token, its own index."""
    env = {**os.environ, "BLOCKDRIVE_URL": server.url, "BLOCKDRIVE_TOKEN": user.token,
           "XDG_CACHE_HOME": str(tmp_path / name / "cache"), "XDG_CONFIG_HOME": str(tmp_path / name / "cfg")}
    return env


def two_devices(server, tmp_path, files: dict[str, bytes]):
    """One account, two devices; the first syncs a tree of ``files`` to /m. Returns the
    user, both devices' environments and the first one's tree."""
    u = server.user()
    root = tmp_path / "tree"
    root.mkdir()
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    first = device(server, u, tmp_path, "one")
    cli(first, "sync", str(root), "/m")
    return u, first, device(server, u, tmp_path, "two"), root


def body(u, path: str) -> bytes | None:
    r = u.get("/api/v1/resolve", params={"path": path})
    if r.status_code == 404:
        return None
    node = r.json()
    return None if node["kind"] == "folder" else u.get(f"/api/v1/nodes/{node['id']}/content").content


def exists(u, path: str) -> bool:
    return u.get("/api/v1/resolve", params={"path": path}).status_code == 200


def trash(u) -> set[str]:
    return {n["name"] for n in u.get("/api/v1/trash").json()["items"]}


def test_a_file_pushed_from_another_device_is_kept_not_deleted(server, tmp_path):
    u, first, second, root = two_devices(server, tmp_path, {"mine.txt": b"mine", "gone.txt": b"gone"})
    other = tmp_path / "other.txt"
    other.write_bytes(b"from the second device")
    cli(second, "push", str(other), "/m/other.txt")

    (root / "gone.txt").unlink()  # deleted here: uploaded from here, so it goes
    out = cli(first, "sync", str(root), "/m", "--json")
    res = json.loads(out.stdout)
    assert res["deleted"] == ["gone.txt"] and not exists(u, "/m/gone.txt")
    assert body(u, "/m/other.txt") == b"from the second device" and "other.txt" not in trash(u)
    assert [k["path"] for k in res["kept"]] == ["other.txt"]
    assert out.stderr.count("kept on the server: ") == 1
    assert "kept on the server: /m/other.txt (not uploaded from here;" in out.stderr
    assert "bisync" in out.stderr and "blockdrive rm /m/other.txt" in out.stderr
    # the text summary counts it; --force overwrites changed files but deletes nothing it never sent
    out = cli(first, "sync", str(root), "/m", "--force")
    assert "0 deleted" in out.stdout and "1 kept on the server" in out.stdout
    assert body(u, "/m/other.txt") == b"from the second device"
    # once pulled here, it is this device's to delete
    pulled = root / "other.txt"
    cli(first, "pull", "/m/other.txt", str(pulled))
    pulled.unlink()
    res = json.loads(cli(first, "sync", str(root), "/m", "--json").stdout)
    assert res["deleted"] == ["other.txt"] and res["kept"] == [] and "other.txt" in trash(u)


def test_a_folder_holding_anything_not_uploaded_from_here_is_not_deleted(server, tmp_path):
    u, first, second, root = two_devices(server, tmp_path, {"d/a.txt": b"a", "d/sub/b.txt": b"b"})
    (root / "solo").mkdir()
    cli(first, "sync", str(root), "/m")
    # the second device adds a file inside d/sub and a folder of its own
    src = tmp_path / "two-src"
    (src / "theirs").mkdir(parents=True)
    (src / "theirs" / "t.txt").write_bytes(b"t")
    cli(second, "push", str(src / "theirs" / "t.txt"), "/m/d/sub/t.txt")
    cli(second, "remote", "mkdir", "/m/empty-from-two")

    import shutil
    shutil.rmtree(root / "d")
    (root / "solo").rmdir()
    out = cli(first, "sync", str(root), "/m", "--json")
    res = json.loads(out.stdout)
    # what this device sent goes; what the other one made stays, with its folders
    assert sorted(res["deleted"]) == ["d/a.txt", "d/sub/b.txt", "solo"]
    assert sorted(k["path"] for k in res["kept"]) == ["d/sub/t.txt", "empty-from-two"]
    assert body(u, "/m/d/sub/t.txt") == b"t" and exists(u, "/m/empty-from-two")
    assert not exists(u, "/m/d/a.txt") and not exists(u, "/m/d/sub/b.txt") and not exists(u, "/m/solo")
    assert "kept on the server: /m/d/sub/t.txt (not uploaded from here;" in out.stderr
    assert "kept on the server: /m/empty-from-two" in out.stderr
    # a folder this device made, emptied and then removed here goes as one node
    (root / "e" / "f").mkdir(parents=True)
    (root / "e" / "f" / "x.txt").write_bytes(b"x")
    cli(first, "sync", str(root), "/m")
    shutil.rmtree(root / "e")
    res = json.loads(cli(first, "sync", str(root), "/m", "--json").stdout)
    assert res["deleted"] == ["e"] and not exists(u, "/m/e")


def test_no_move_away_of_a_file_not_uploaded_from_here_nor_of_one_changed_since(server, tmp_path):
    u, first, second, root = two_devices(server, tmp_path, {"base.txt": b"base"})
    other = tmp_path / "orig.txt"
    other.write_bytes(b"same content")
    cli(second, "push", str(other), "/m/orig.txt")
    # here: a new file holding the other device's content; a rename is not derived from it
    (root / "new.txt").write_bytes(b"same content")
    res = json.loads(cli(first, "sync", str(root), "/m", "--json").stdout)
    assert res["moved"] == [] and res["uploaded"] == ["new.txt"]
    assert body(u, "/m/orig.txt") == b"same content" and body(u, "/m/new.txt") == b"same content"
    assert [k["path"] for k in res["kept"]] == ["orig.txt"]

    # a file uploaded from here, changed by the other device, deleted here: even --force keeps it
    theirs = tmp_path / "base-theirs.txt"
    theirs.write_bytes(b"their edit")
    cli(second, "push", str(theirs), "/m/base.txt", "--force")
    (root / "base.txt").unlink()
    out = cli(first, "sync", str(root), "/m", ok=(4,))
    assert "conflict: base.txt" in out.stderr and body(u, "/m/base.txt") == b"their edit"
    out = cli(first, "sync", str(root), "/m", "--force", "--json")
    res = json.loads(out.stdout)
    assert res["deleted"] == [] and sorted(k["path"] for k in res["kept"]) == ["base.txt", "orig.txt"]
    assert "kept on the server: /m/base.txt (changed on the server since the last sync;" in out.stderr
    assert body(u, "/m/base.txt") == b"their edit"


def test_dry_run_names_what_it_would_keep(server, tmp_path):
    u = server.user()
    first = device(server, u, tmp_path, "one")
    assert u.upload(u.root, "already.txt", b"on the server before any sync").status_code == 201
    root = tmp_path / "tree"
    root.mkdir()
    (root / "a.txt").write_bytes(b"a")
    res = json.loads(cli(first, "sync", str(root), "/", "--dry-run", "--json").stdout)
    assert res["plan"]["deletes"] == [] and res["plan"]["kept"] == ["already.txt"]
    out = cli(first, "sync", str(root), "/", "--dry-run")
    assert "keep 1 on the server" in out.stdout
    cli(first, "sync", str(root), "/")
    assert body(u, "/already.txt") == b"on the server before any sync"


def test_a_local_folder_where_another_device_put_a_file_is_a_conflict_that_keeps_both(server, tmp_path):
    u, first, second, root = two_devices(server, tmp_path, {"a.txt": b"a"})
    theirs = tmp_path / "x"
    theirs.write_bytes(b"their file named x")
    cli(second, "push", str(theirs), "/m/x")
    (root / "x").mkdir()
    (root / "x" / "inner.txt").write_bytes(b"inner")
    (root / "b.txt").write_bytes(b"b")
    for force in ((), ("--force",)):
        out = cli(first, "sync", str(root), "/m", "--json", *force, ok=(4,))
        res = json.loads(out.stdout)
        assert [c["path"] for c in res["conflicts"]] == ["x"] and res["deleted"] == []
        assert "conflict: x: a folder here, a file on the server (not uploaded from here); both left" in out.stderr
        assert body(u, "/m/x") == b"their file named x" and "x" not in trash(u)
        assert body(u, "/m/b.txt") == b"b"  # the rest went on
