"""``file://`` — packs on a local (or mounted) disk. A bare path means this backend.

Plain POSIX I/O rather than pyarrow's LocalFileSystem: ``close()`` must fsync the file and
its directory (pyarrow's stream cannot), ``os.pread`` serves a block without an open-and-seek
round, and the embedded default then never loads pyarrow (about 50 MB per server process).
"""

from __future__ import annotations

import ctypes
import os
import stat
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

from ..errors import BackendError, NotFound
from .base import Backend


class LocalBackend(Backend):
    appends_durably = True

    def __init__(self, url: str, timeout: float = 30):
        root = Path(unquote(urlsplit(url).path)).resolve()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BackendError(f"cannot use {root} for packs: {exc.strerror}") from None
        self.root, self.url = str(root), root.as_uri()

    def _path(self, key: str) -> str:
        return os.path.join(self.root, key) if key else self.root

    def create(self, key: str):
        path = Path(self._path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        return _SyncedFile(path)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            raise NotFound(f"{key}: not found") from None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)

    def size(self, key: str) -> int:
        try:
            st = os.stat(self._path(key))
        except FileNotFoundError:
            raise NotFound(f"{key}: not found") from None
        if not stat.S_ISREG(st.st_mode):
            raise NotFound(f"{key}: not a file")
        return st.st_size

    def delete(self, key: str) -> None:
        try:
            os.unlink(self._path(key))
        except FileNotFoundError:
            pass

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self._path(prefix.rstrip("/"))
        skip = len(self.root) + 1
        for dirpath, _dirs, files in os.walk(base):
            for name in files:
                path = os.path.join(dirpath, name)
                try:
                    yield path[skip:], os.stat(path).st_size
                except FileNotFoundError:
                    continue  # deleted while we walked


WRITEBACK_EVERY = 8 * 1024 * 1024
"""Bytes a pack file takes before the kernel is told to start writing them out."""


def _writeback_starter():
    """Linux's ``sync_file_range(fd, offset, nbytes, SYNC_FILE_RANGE_WRITE)``: start writing
    a range out without waiting for it, or None where the C library has no such call."""
    try:
        call = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_uint]
    call.restype = ctypes.c_int
    return lambda fd, offset, nbytes: call(fd, offset, nbytes, 2)  # SYNC_FILE_RANGE_WRITE


start_writeback = _writeback_starter()


class _SyncedFile:
    """A pack being written. Every ``WRITEBACK_EVERY`` bytes the kernel is asked to start
    writing what came before, so the fsync that makes a pack durable finds most of it on
    disk already: without that hint a 64 MiB pack's fsync took about 45 ms, time in which
    a stream's reader waited on a full ingest budget (docs/performance.md). The hint is only
    a hint: durability still comes from ``sync`` and ``close``."""

    def __init__(self, path: Path):
        self._path = path
        self._f = open(path, "wb", buffering=1024 * 1024)
        self._dir_synced = False
        self._written = self._started = 0

    def write(self, data) -> int:
        n = self._f.write(data)
        self._written += n
        if start_writeback is not None and self._written - self._started >= WRITEBACK_EVERY:
            self._f.flush()
            start_writeback(self._f.fileno(), self._started, self._written - self._started)
            self._started = self._written
        return n

    def sync(self) -> None:
        """Durable up to here, the file left open: a shared pack acknowledges each group of
        appends this way. The directory entry is made durable on the first call, or a crash
        could lose a file whose records blocks already point to."""
        self._f.flush()
        os.fsync(self._f.fileno())
        if not self._dir_synced:
            self._sync_dir()
            self._dir_synced = True

    def _sync_dir(self) -> None:
        dfd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        self._sync_dir()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
