"""Block backends, chosen by URL scheme from one explicit registry.

Each scheme is registered once, here, by the dotted path of its class, and imported only when
a URL with that scheme is opened, so optional dependencies (hdfs-native, the hdfs package) are
needed only by those who use them. Registering a scheme twice is a programming error.
"""

from __future__ import annotations

import importlib
from urllib.parse import urlsplit

from ..errors import ConfigError
from .base import Backend

_REGISTRY: dict[str, str] = {}


def register(scheme: str, target: str) -> None:
    if scheme in _REGISTRY:
        raise ValueError(f"backend scheme {scheme!r} registered twice")
    _REGISTRY[scheme] = target


register("file", "storage.backends.local:LocalBackend")
register("s3", "storage.backends.s3:S3Backend")
register("hdfs", "storage.backends.hdfs:HdfsBackend")
register("webhdfs", "storage.backends.webhdfs:WebHdfsBackend")


def schemes() -> list[str]:
    return sorted(_REGISTRY)


def open_backend(url: str, timeout: float = 30) -> Backend:
    """Open the backend for ``url``. A bare path means local disk."""
    if not url:
        raise ConfigError("empty backend URL")
    scheme = urlsplit(url).scheme if "://" in url else ""
    if not scheme:
        from pathlib import Path
        url, scheme = Path(url).expanduser().resolve().as_uri(), "file"
    target = _REGISTRY.get(scheme)
    if target is None:
        raise ConfigError(f"unknown storage scheme {scheme!r} in {url.split('?')[0]}; "
                          f"known: {', '.join(schemes())}")
    module, cls = target.split(":")
    return getattr(importlib.import_module(module), cls)(url, timeout=timeout)


__all__ = ["Backend", "open_backend", "register", "schemes"]
