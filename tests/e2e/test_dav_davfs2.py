"""davfs2: the server's ``/dav/`` mounted as a file system (FUSE), written, read, renamed
and deleted through the mount, and compared with what the JSON API says.

Mounting needs /dev/fuse and root with CAP_SYS_ADMIN. Containers often forbid mounts, so
where the machine does not allow one this test is skipped, saying why; it is the one
WebDAV client test allowed to skip in CI. A missing davfs2 still fails in CI."""

from __future__ import annotations

import grp
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from .dav_support import dav_fixture, require_tool  # noqa: F401  (the dav fixture)

CAP_SYS_ADMIN = 21


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def mount_unavailable() -> str | None:
    """Why this machine cannot mount a FUSE file system, or None when it can."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse does not exist"
    if os.geteuid() != 0:
        return "the tests do not run as root (mount.davfs mounts as root)"
    try:
        os.close(os.open("/dev/fuse", os.O_RDWR))
    except OSError as e:
        return f"/dev/fuse cannot be opened ({e.strerror})"
    status = Path("/proc/self/status").read_text()
    caps = int(re.search(r"^CapEff:\s*([0-9a-f]+)", status, re.M)[1], 16)
    if not caps & (1 << CAP_SYS_ADMIN):
        return "the tests run without CAP_SYS_ADMIN"
    return None


class Davfs2Mount:
    """``mount.davfs`` of a WebDAV URL with its own configuration, secrets and cache in a
    folder of its own (the daemon drops to the davfs2 user, so the folder must be open to
    it and the cache writable by its group)."""

    def __init__(self, url: str, email: str, password: str):
        self.binary = require_tool("mount.davfs")
        self.dir = Path(tempfile.mkdtemp(prefix="bd-davfs2-"))
        self.dir.chmod(0o755)
        self.url, self.mnt, cache = url, self.dir / "mnt", self.dir / "cache"
        self.mnt.mkdir()
        cache.mkdir()
        os.chown(cache, 0, grp.getgrnam("davfs2").gr_gid)  # as Debian sets up /var/cache/davfs2
        cache.chmod(0o775)
        secrets = self.dir / "secrets"
        secrets.write_text(f'{url} "{email}" "{password}"\n')
        secrets.chmod(0o600)
        self.conf = self.dir / "davfs2.conf"
        # buf_size 64: davfs2 before 1.7.2 cannot list a directory on Linux 6.16 and later
        # with its smaller default buffer (every readdir fails with EINVAL)
        self.conf.write_text(f"secrets {secrets}\ncache_dir {cache}\nask_auth 0\ndelay_upload 0\nbuf_size 64\n")
        self.mounted = False

    def mount(self) -> Path:
        out = subprocess.run([self.binary, self.url, str(self.mnt), "-o", f"conf={self.conf}"],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, f"mount.davfs (exit {out.returncode}): {out.stderr}"
        self.mounted = True
        return self.mnt

    def unmount(self) -> None:
        """Unmount; davfs2 uploads what is still dirty in its cache before it returns."""
        if self.mounted:
            out = subprocess.run(["umount", str(self.mnt)], capture_output=True, text=True, timeout=300)
            if out.returncode != 0:
                subprocess.run(["umount", "-l", str(self.mnt)], capture_output=True, timeout=60)
            self.mounted = False
            assert out.returncode == 0, f"umount (exit {out.returncode}): {out.stderr}"

    def remove(self) -> None:
        if not self.mounted:
            shutil.rmtree(self.dir, ignore_errors=True)


def test_davfs2_mount_write_read_rename_delete(dav):
    require_tool("mount.davfs")
    why = mount_unavailable()
    if why:
        pytest.skip(f"no FUSE mount here: {why}. Containers may forbid mounts; this is the one WebDAV "
                    "client test allowed to skip in CI")
    before, big, small = os.urandom(100_000), os.urandom(1_500_000), b"first words\n"
    r = dav.api.upload(dav.api.mkdir(dav.api.root, "pre")["id"], "hello.bin", before)
    assert r.status_code == 201, r.text
    fs = Davfs2Mount(dav.url, dav.email, dav.password)
    try:
        mnt = fs.mount()
        assert "pre" in os.listdir(mnt)
        assert (mnt / "pre" / "hello.bin").read_bytes() == before
        (mnt / "dv" / "sub").mkdir(parents=True)
        (mnt / "dv" / "a.bin").write_bytes(big)
        (mnt / "dv" / "b.txt").write_bytes(small)
        (mnt / "dv" / "a.bin").rename(mnt / "dv" / "sub" / "moved.bin")
        (mnt / "pre" / "hello.bin").unlink()
        with open(mnt / "dv" / "b.txt", "ab") as f:
            f.write(b"and more\n")
        assert (mnt / "dv" / "sub" / "moved.bin").read_bytes() == big
        fs.unmount()

        assert dav.tree("/dv") == {"sub": None, "sub/moved.bin": sha256(big), "b.txt": sha256(small + b"and more\n")}
        assert dav.node("/dv/a.bin") is None and dav.node("/pre/hello.bin") is None
        assert dav.content("/dv/sub/moved.bin") == big
        assert dav.content("/dv/b.txt") == small + b"and more\n"

        # a change made elsewhere shows through a new mount (davfs2 revalidates its cache by etag)
        b_txt = dav.node("/dv/b.txt")
        assert dav.api.upload(b_txt["parent_id"], "b.txt", b"changed through the API\n").status_code in (200, 201)
        mnt = fs.mount()
        assert (mnt / "dv" / "b.txt").read_bytes() == b"changed through the API\n"
        assert (mnt / "dv" / "sub" / "moved.bin").read_bytes() == big
        assert sorted(os.listdir(mnt / "dv")) == ["b.txt", "sub"]
    finally:
        fs.unmount()
        fs.remove()
