"""``webhdfs://namenode:http-port/path?user=NAME`` — packs on HDFS over its REST gateway,
through the ``hdfs`` package. Needs nothing but HTTP, so it works through firewalls and on
machines without a Hadoop client."""

from __future__ import annotations

from typing import Iterator
from urllib.parse import parse_qs, urlsplit

from ..errors import BackendUnavailable, ConfigError, NotFound
from .arrow import translate
from .base import Backend


class WebHdfsBackend(Backend):
    def __init__(self, url: str, timeout: float = 30):
        try:
            from hdfs import InsecureClient
        except ImportError:
            raise ConfigError("webhdfs:// needs the hdfs package: pip install 'blockdrive[hdfs]'") from None
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"{url}: a webhdfs:// URL needs a host (webhdfs://host:9870/path)")
        q = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        scheme = "https" if q.get("tls") in ("1", "true") else "http"
        self.url = url
        self.root = parts.path.rstrip("/") or "/"
        self.client = InsecureClient(f"{scheme}://{parts.hostname}:{parts.port or 9870}",
                                     user=q.get("user", "blockdrive"), timeout=timeout)

    def _path(self, key: str) -> str:
        return f"{self.root}/{key}" if key else self.root

    def _call(self, what, fn, *args, **kwargs):
        from hdfs.util import HdfsError
        import requests
        try:
            return fn(*args, **kwargs)
        except HdfsError as exc:
            raise translate(exc, what, self.url) from exc
        except requests.RequestException as exc:
            raise BackendUnavailable(f"{what}: webhdfs unavailable, retry later ({exc})") from exc

    def create(self, key: str):
        return _BufferedUpload(self, key)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        if not length:
            return b""

        def read():
            with self.client.read(self._path(key), offset=offset, length=length) as r:
                return r.read()
        return self._call(f"read {key}", read)

    def size(self, key: str) -> int:
        st = self._call(f"stat {key}", self.client.status, self._path(key), strict=False)
        if st is None or st.get("type") != "FILE":
            raise NotFound(f"{key}: not found")
        return st["length"]

    def delete(self, key: str) -> None:
        self._call(f"delete {key}", self.client.delete, self._path(key))

    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        base = self._path(prefix.rstrip("/"))
        if self._call(f"stat {prefix}", self.client.status, base, strict=False) is None:
            return
        skip = len(self.root.rstrip("/")) + 1
        for dirpath, _dirs, files in self._call(f"list {prefix}", self.client.walk, base, status=True):
            for name, st in files:
                path = f"{dirpath[0].rstrip('/')}/{name}"
                yield path[skip:], st["length"]


class _BufferedUpload:
    """WebHDFS creates a file in one HTTP request, so a pack is spooled to a temporary file
    (bounded memory) and sent on close(); the NameNode acknowledges only after the DataNode
    pipeline has the bytes."""

    def __init__(self, backend: WebHdfsBackend, key: str):
        import tempfile
        self._b, self._k = backend, key
        self._tmp = tempfile.SpooledTemporaryFile(max_size=8 * 1024 * 1024)

    def write(self, data) -> int:
        return self._tmp.write(data)

    def close(self) -> None:
        if self._tmp.closed:
            return
        self._tmp.seek(0)
        try:
            self._b._call(f"create {self._k}", self._b.client.write, self._b._path(self._k),
                          data=self._tmp, overwrite=True)
        finally:
            self._tmp.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
