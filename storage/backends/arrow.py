"""A backend over any ``pyarrow.fs.FileSystem``; the local, S3 and HDFS backends build on it."""

from __future__ import annotations

from typing import Iterator

import pyarrow.fs as pafs
from pyarrow.lib import ArrowException

from ..errors import BackendError, BackendUnavailable, NotFound
from .base import Backend

# Phrases in backend error messages that mean "not now" rather than "not there".
_TRANSIENT = ("safemode", "safe mode", "slowdown", "slow down", "throttl", "503", "connection",
              "network", "timed out", "timeout", "refused", "unreachable", "broken pipe",
              "reset by peer", "retriable", "temporarily", "no route", "eof")


def translate(exc: BaseException, what: str, url: str) -> Exception:
    """Map a filesystem exception to NotFound / BackendUnavailable / BackendError."""
    from ..config import mask_url

    text = str(exc).lower()
    where = f"{what} on {mask_url(url)}"
    if isinstance(exc, FileNotFoundError) or "no such file" in text or "not found" in text \
            or "does not exist" in text or "path not found" in text:
        if not any(t in text for t in ("safemode", "safe mode", "bucket")):
            return NotFound(f"{where}: not found")
    if isinstance(exc, (ConnectionError, TimeoutError)) or any(t in text for t in _TRANSIENT):
        return BackendUnavailable(f"{where}: backend unavailable, retry later ({exc})")
    return BackendError(f"{where}: {exc}")


class ArrowBackend(Backend):
    def __init__(self, fs: pafs.FileSystem, root: str, url: str):
        self.fs, self.root, self.url = fs, root.rstrip("/"), url

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def _call(self, what, fn, *args):
        try:
            return fn(*args)
        except (OSError, ArrowException) as exc:
            raise translate(exc, what, self.url) from exc

    def create(self, key: str):
        path = self._path(key)
        parent = path.rsplit("/", 1)[0]
        self._call(f"mkdir {parent}", lambda: self.fs.create_dir(parent, recursive=True))
        return _Guarded(self._call(f"create {key}", self.fs.open_output_stream, path), self, key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        def read():
            with self.fs.open_input_file(self._path(key)) as f:
                return f.read_at(length, offset) if length else b""
        return self._call(f"read {key}", read)

    def size(self, key: str) -> int:
        info = self._call(f"stat {key}", self.fs.get_file_info, self._path(key))
        if info.type != pafs.FileType.File:
            raise NotFound(f"{key}: not found")
        return info.size

    def delete(self, key: str) -> None:
        try:
            self.fs.delete_file(self._path(key))
        except FileNotFoundError:
            pass
        except OSError as exc:
            err = translate(exc, f"delete {key}", self.url)
            if not isinstance(err, NotFound):
                raise err from exc

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self._path(prefix.rstrip("/"))
        selector = pafs.FileSelector(base, recursive=True, allow_not_found=True)
        infos = self._call(f"list {prefix}", self.fs.get_file_info, selector)
        skip = len(self.root) + 1
        for info in infos:
            if info.type == pafs.FileType.File:
                yield info.path[skip:] if info.path.startswith(self.root + "/") else info.path, info.size


class _Guarded:
    """Wraps an output stream so that write and close errors become backend errors."""

    def __init__(self, stream, backend: ArrowBackend, key: str):
        self._s, self._b, self._k = stream, backend, key

    def write(self, data) -> int:
        return self._b._call(f"write {self._k}", self._s.write, data)

    def close(self) -> None:
        self._b._call(f"close {self._k}", self._s.close)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
