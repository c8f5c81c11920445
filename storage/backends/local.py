"""``file://`` — packs on a local (or mounted) disk. A bare path means this backend."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pyarrow.fs as pafs

from .arrow import ArrowBackend


class LocalBackend(ArrowBackend):
    def __init__(self, url: str, timeout: float = 30):
        parts = urlsplit(url)
        root = Path(unquote(parts.path)).resolve()
        root.mkdir(parents=True, exist_ok=True)
        super().__init__(pafs.LocalFileSystem(), str(root), root.as_uri())

    def create(self, key: str):
        # Plain files rather than pyarrow's stream: close() must fsync the file and its
        # directory, or a power cut could lose a pack the metadata already points to.
        path = Path(self._path(key))
        path.parent.mkdir(parents=True, exist_ok=True)
        return _SyncedFile(path)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        try:
            fd = os.open(self._path(key), os.O_RDONLY)
        except FileNotFoundError:
            from ..errors import NotFound
            raise NotFound(f"{key}: not found") from None
        try:
            return os.pread(fd, length, offset)
        finally:
            os.close(fd)


class _SyncedFile:
    def __init__(self, path: Path):
        self._path = path
        self._f = open(path, "wb", buffering=1024 * 1024)

    def write(self, data) -> int:
        return self._f.write(data)

    def close(self) -> None:
        if self._f.closed:
            return
        self._f.flush()
        os.fsync(self._f.fileno())
        self._f.close()
        dfd = os.open(self._path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
