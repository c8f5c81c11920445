"""The block backend interface: where pack files live.

A backend stores opaque objects under keys (``packs/ab/ab12....pack``) below one root URL.
Every method is idempotent where that makes sense: creating an object that exists replaces
it, deleting a missing object is not an error, and reads have no side effects. A missing
object raises :class:`storage.errors.NotFound`; a backend that cannot be reached, or says
"come back later" (HDFS safe mode, S3 throttling), raises
:class:`storage.errors.BackendUnavailable`, never NotFound. ``list`` walks the whole tree
below a prefix and yields ``(key, size)`` pairs in no particular order.
"""

from __future__ import annotations

import abc
from typing import BinaryIO, Iterator


class Backend(abc.ABC):
    #: URL of the root, exactly as configured (with secrets, never print it unmasked)
    url: str
    #: True when the streams of ``create()`` also offer ``sync()``: make every byte written so
    #: far durable without closing, while readers (in any process) can already read them. A
    #: shared open pack needs it; backends without it get one pack per request instead.
    appends_durably: bool = False

    @abc.abstractmethod
    def create(self, key: str) -> BinaryIO:
        """A writable stream for a new object. Its ``close()`` makes the object durable
        (fsync on local disk, HDFS close, S3 multipart complete); after a failure the
        object may be absent or partial, never reported as written."""

    @abc.abstractmethod
    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """Exactly ``length`` bytes from ``offset`` (fewer only if the object is shorter)."""

    @abc.abstractmethod
    def size(self, key: str) -> int:
        """Size in bytes of an existing object."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; a missing one is not an error."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> Iterator[tuple[str, int]]:
        """Every object below ``prefix``, recursively, as ``(key, size)``."""

    def read(self, key: str) -> bytes:
        return self.read_range(key, 0, self.size(key))

    def exists(self, key: str) -> bool:
        from ..errors import NotFound
        try:
            self.size(key)
            return True
        except NotFound:
            return False

    def put(self, key: str, data: bytes) -> None:
        out = self.create(key)
        try:
            out.write(data)
        finally:
            out.close()

    def url_for(self, key: str) -> str:
        base = self.url.split("?", 1)[0].rstrip("/")
        return f"{base}/{key}"

    def key_for(self, url: str) -> str | None:
        """The key of a full object URL if it lies under this backend's root, else None."""
        base = self.url.split("?", 1)[0].rstrip("/") + "/"
        return url[len(base):] if url.startswith(base) else None

    def close(self) -> None:
        """Release connections. The backend must not be used afterwards."""
