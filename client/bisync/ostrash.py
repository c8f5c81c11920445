"""The user's trash on this computer, as the freedesktop.org Trash specification lays it out:
``$XDG_DATA_HOME/Trash`` (default ``~/.local/share/Trash``) with ``files/NAME`` and
``info/NAME.trashinfo``; a file on another file system goes to ``$topdir/.Trash-$uid`` of its
own mount point, so that trashing it is a rename, never a copy. Nothing is deleted for good."""

from __future__ import annotations

import errno
import os
import time
from pathlib import Path
from urllib.parse import quote


def home_trash() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "Trash"


def mount_point(path: str) -> str:
    path = os.path.realpath(path)
    while not os.path.ismount(path):
        path = os.path.dirname(path)
    return path


def _reserve(trash: Path, name: str, original: str) -> Path:
    """Write the ``.trashinfo`` under a name no other entry has; the path its file goes to."""
    (trash / "files").mkdir(parents=True, exist_ok=True, mode=0o700)
    (trash / "info").mkdir(parents=True, exist_ok=True, mode=0o700)
    stem, ext = os.path.splitext(name)
    n = 1
    info = ("[Trash Info]\nPath=" + quote(original) + "\nDeletionDate=" +
            time.strftime("%Y-%m-%dT%H:%M:%S") + "\n").encode()
    while True:
        cand = name if n == 1 else f"{stem}.{n}{ext}"
        try:
            fd = os.open(trash / "info" / f"{cand}.trashinfo", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            n += 1
            continue
        with os.fdopen(fd, "wb") as f:
            f.write(info)
        if not os.path.lexists(trash / "files" / cand):
            return trash / "files" / cand
        os.unlink(trash / "info" / f"{cand}.trashinfo")
        n += 1


def to_trash(path: str) -> Path:
    """Move ``path`` (a file or a folder) to the trash; where it went."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    for trash in (home_trash(), Path(mount_point(path)) / f".Trash-{os.getuid()}"):
        dest = _reserve(trash, name, path)
        try:
            os.rename(path, dest)
            return dest
        except OSError as exc:
            os.unlink(trash / "info" / f"{dest.name}.trashinfo")
            if exc.errno != errno.EXDEV:
                raise
    raise OSError(errno.EXDEV, f"{path}: no trash on its file system")
