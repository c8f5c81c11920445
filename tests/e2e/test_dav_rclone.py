"""rclone against the server's WebDAV: a tree of a thousand small files (two thousand under
``make soak``), nested and
empty folders, awkward names, a 0-byte and a 20 MB file, copied up and down and synced after
edits, renames and deletions (``vendor=other`` on ``/dav/``); modification times kept through
``X-OC-Mtime`` (``vendor=nextcloud`` on ``/remote.php/dav/files/EMAIL/``, the Nextcloud
dialect); and ``rclone bisync`` between two local folders through the server.

What the server holds is read back through the JSON API and compared, file by file by
SHA-256, with the local folder. rclone runs with one try and few low-level retries, so a
request the server answers wrongly fails the test instead of being retried away."""

from __future__ import annotations

import os
import random
import shutil
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest

from tests.reliability.figures import scale

from .dav_support import dav_account, local_tree, require_tool

SMALL_FILES = scale(1000, 2000)  # with the 20 MB file; the first figure is what fits CI's budget
NEXTCLOUD_FILES = scale(200, 400)
BIG = 20 * 1024 * 1024
EPOCH = datetime(2021, 3, 4, 5, 6, 7, tzinfo=timezone.utc).timestamp()
# names a WebDAV server must escape and unescape right in hrefs and Destination headers
AWKWARD_NAMES = ["space in name.txt", "unicodé ✓ 文件.txt", "percent%20sign.txt", "hash#sign.txt",
                 "amp&semi;colon.txt", "plus+sign.txt", "quote'apostrophe.txt", "brackets [1] (2).txt"]


@pytest.fixture(scope="module", params=["sqlite"])
def dav(request, tmp_path_factory):
    """On SQLite only: the copies take most of this module's time, and the engines are
    compared request by request in test_dav.py and by litmus and cadaver."""
    with dav_account(request, tmp_path_factory) as account:
        yield account


class Rclone:
    """``rclone`` with one remote, ``bd:``, set by environment variables (no config file is
    read or written); the password is given obscured, as rclone requires."""

    def __init__(self, url: str, vendor: str, email: str, password: str, tmp: Path):
        self.binary = require_tool("rclone")
        (tmp / "rclone.conf").touch()
        env = {**os.environ, "TZ": "UTC", "RCLONE_CONFIG": str(tmp / "rclone.conf"), "RCLONE_CACHE_DIR": str(tmp / "cache")}
        obscured = subprocess.run([self.binary, "obscure", password], env=env, capture_output=True, text=True,
                                  check=True).stdout.strip()
        self.env = {**env, "RCLONE_CONFIG_BD_TYPE": "webdav", "RCLONE_CONFIG_BD_URL": url,
                    "RCLONE_CONFIG_BD_VENDOR": vendor, "RCLONE_CONFIG_BD_USER": email,
                    "RCLONE_CONFIG_BD_PASS": obscured}

    def __call__(self, *args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([self.binary, *args, "--retries", "1", "--low-level-retries", "2",
                              "--transfers", "8", "--checkers", "8"],
                             env=self.env, capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, f"rclone {' '.join(args)} (exit {out.returncode}):\n{out.stderr[-4000:]}"
        return out


def make_tree(root: Path, files: int, seed: int) -> dict[str, float]:
    """``files`` small files (1–3 KiB) in nested folders, the awkward names, an empty file,
    an empty folder and the 20 MB file, each with its own modification time (whole
    seconds, in the past); returns {relative path: mtime}."""
    rnd = random.Random(seed)
    paths = [f"d{i % 20:02d}" + ("/sub" if i % 3 == 0 else "") + ("/deep" if i % 9 == 0 else "") + f"/f{i:05d}.txt"
             for i in range(files)]
    paths += [f"names/{n}" for n in AWKWARD_NAMES] + ["empty.txt", "big.bin"]
    mtimes = {}
    for n, rel in enumerate(paths):
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        size = {"empty.txt": 0, "big.bin": BIG}.get(rel, rnd.randint(1024, 3072))
        p.write_bytes(rnd.randbytes(size))
        mtimes[rel] = EPOCH + n * 37
        os.utime(p, (mtimes[rel], mtimes[rel]))
    (root / "empty-folder").mkdir()
    return mtimes


def edit_tree(root: Path, seed: int, same_size: bool) -> None:
    """What a person does between two syncs: grow some files, with ``same_size`` rewrite one
    in place at the same size and an older mtime (only a remote that keeps mtimes can see
    that change: rclone compares by size alone where it cannot), rename files (in place and across folders) and a folder, delete files and a
    folder, add files and a nested folder."""
    rnd = random.Random(seed)
    files = sorted(p for p in root.rglob("*.txt") if p.parent.name != "names")
    for p in files[0:50]:
        with open(p, "ab") as f:
            f.write(rnd.randbytes(100))
    if same_size:
        rewritten = files[50]
        rewritten.write_bytes(rnd.randbytes(rewritten.stat().st_size))
        os.utime(rewritten, (EPOCH - 86400, EPOCH - 86400))
    for i, p in enumerate(files[60:90]):
        target = p.with_name("renamed-" + p.name) if i % 2 else root / "d01" / ("moved-" + p.name)
        p.rename(target)
    for p in files[100:140]:
        p.unlink(missing_ok=True)
    (root / "d05").rename(root / "d05 renamed")
    shutil.rmtree(root / "d07")
    for i in range(20):
        p = root / "new" / "nested" / f"n{i}.txt"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(rnd.randbytes(2000))


def lsl(rc: Rclone, remote: str) -> dict[str, tuple[int, float]]:
    """``rclone lsl``: {path: (size, mtime as a POSIX timestamp)}."""
    out = {}
    for line in rc("lsl", remote).stdout.splitlines():
        size, day, clock, path = line.strip().split(" ", 3)
        stamp = datetime.fromisoformat(f"{day}T{clock[:15]}").replace(tzinfo=timezone.utc)
        out[path] = (int(size), stamp.timestamp())
    return out


def test_rclone_copy_up_down_check_and_sync_after_edits(dav, tmp_path):
    up, down = tmp_path / "up", tmp_path / "down"
    make_tree(up, SMALL_FILES, seed=1)
    rc = Rclone(dav.url, "other", dav.email, dav.password, tmp_path)
    rc("copy", "--create-empty-src-dirs", str(up), "bd:tree")
    assert dav.tree("/tree") == local_tree(up)
    rc("check", "--download", str(up), "bd:tree")
    rc("copy", "--create-empty-src-dirs", "bd:tree", str(down))
    assert local_tree(down) == local_tree(up)

    edit_tree(up, seed=2, same_size=False)
    rc("sync", "--create-empty-src-dirs", str(up), "bd:tree")
    assert dav.tree("/tree") == local_tree(up)
    assert dav.node("/tree/d07") is None and dav.node("/tree/d05 renamed")["kind"] == "folder"


def test_rclone_nextcloud_vendor_keeps_modification_times(dav, tmp_path):
    """Needs the Nextcloud dialect: ``/remote.php/dav/files/EMAIL/`` and X-OC-Mtime."""
    up, down = tmp_path / "up", tmp_path / "down"
    mtimes = make_tree(up, NEXTCLOUD_FILES, seed=3)
    rc = Rclone(dav.nextcloud_url, "nextcloud", dav.email, dav.password, tmp_path)
    rc("copy", "--create-empty-src-dirs", str(up), "bd:nc")
    assert dav.tree("/nc") == local_tree(up)
    listed = lsl(rc, "bd:nc")
    assert {p: (s, int(t)) for p, (s, t) in listed.items()} == {
        p: ((up / p).stat().st_size, int(mtimes[p])) for p in mtimes}
    rc("check", "--download", str(up), "bd:nc")
    rc("copy", "bd:nc", str(down))
    assert {p: int((down / p).stat().st_mtime) for p in mtimes} == {p: int(t) for p, t in mtimes.items()}

    edit_tree(up, seed=4, same_size=True)
    rc("sync", "--create-empty-src-dirs", str(up), "bd:nc")
    assert dav.tree("/nc") == local_tree(up)
    assert {p: int(t) for p, (_s, t) in lsl(rc, "bd:nc").items()} == {
        p.relative_to(up).as_posix(): int(p.stat().st_mtime) for p in up.rglob("*") if p.is_file()}


def test_rclone_bisync_two_local_folders_through_the_server(dav, tmp_path):
    """Needs the Nextcloud dialect: bisync refuses a remote without modification times,
    which rclone's WebDAV remote has only with a vendor that sends X-OC-Mtime."""
    one, two, work = tmp_path / "one", tmp_path / "two", tmp_path / "bisync"
    for p in (one, two, work):
        p.mkdir()
    rnd = random.Random(5)
    for i in range(40):
        p = one / f"g{i % 4}" / f"file{i:02d}.txt"
        p.parent.mkdir(exist_ok=True)
        p.write_bytes(rnd.randbytes(1500))
    rc = Rclone(dav.nextcloud_url, "nextcloud", dav.email, dav.password, tmp_path)

    def bisync(local: Path, *flags: str):
        rc("bisync", str(local), "bd:bi", "--workdir", str(work), *flags)

    rc("mkdir", "bd:bi")  # bisync wants both sides to exist
    bisync(one, "--resync")
    bisync(two, "--resync")
    start = local_tree(one)
    assert local_tree(two) == start and dav.tree("/bi") == start

    # different changes on both sides, none touching the same file
    (one / "g0" / "file00.txt").write_bytes(b"edited on one, and longer than before" * 100)
    (one / "g0" / "from-one.txt").write_bytes(b"new on one")
    (one / "g1" / "file01.txt").unlink()
    (two / "g2" / "file02.txt").write_bytes(b"edited on two")
    (two / "g3" / "from-two.txt").write_bytes(b"new on two")
    (two / "g3" / "file03.txt").unlink()
    (two / "g2" / "file06.txt").rename(two / "g2" / "file06-renamed.txt")
    ones, twos = local_tree(one), local_tree(two)
    expected = {**start, "g0/file00.txt": ones["g0/file00.txt"], "g0/from-one.txt": ones["g0/from-one.txt"],
                "g2/file02.txt": twos["g2/file02.txt"], "g3/from-two.txt": twos["g3/from-two.txt"],
                "g2/file06-renamed.txt": start["g2/file06.txt"]}
    for gone in ("g1/file01.txt", "g3/file03.txt", "g2/file06.txt"):
        del expected[gone]

    bisync(one)  # one's changes reach the server
    bisync(two)  # two gets them, and sends its own
    bisync(one)  # one gets two's
    assert local_tree(one) == expected
    assert local_tree(two) == expected
    assert dav.tree("/bi") == expected
