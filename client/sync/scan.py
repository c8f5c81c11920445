"""What the client knows about a local file: its size, SHA-256 and blocks, cut exactly as the
server cuts them (``storage.chunking`` with the server's announced settings)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field

from storage.wire import EMPTY_SHA256

from ..api import ClientError

KEEP_BYTES = 64 * 1024            # files up to this size are read once (kept from hashing to sending)


@dataclass
class FileScan:
    size: int
    sha256: str
    blocks: list[tuple[str, int, int]]  # (hex id, offset, size)
    # A small file's bytes, read once for hashing and kept until its block is queued to be
    # sent (or found not missing), so it is not opened and read a second time.
    data: bytes | None = field(default=None, repr=False, compare=False)
    # (size, mtime_ns, inode) when it was read: a file whose stat differs since has changed
    stat: tuple[int, int, int] | None = field(default=None, repr=False, compare=False)

    @property
    def hashes(self) -> list[str]:
        return [b for b, _, _ in self.blocks]


class ChangedWhileReading(ClientError):
    pass


def stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def scan_file(path: str | os.PathLike, chunker, small: int) -> FileScan:
    """Cut and hash a file. Files of at most ``small`` bytes (the chunker's minimum) are
    one block, whose hash is the file's: hashed once, no chunker call."""
    return scan_stat(path, chunker, small)[1]


def scan_stat(path: str | os.PathLike, chunker, small: int) -> tuple[os.stat_result, FileScan]:
    """:func:`scan_file`, and the stat the scan saw (for the local index). Files of at most
    ``KEEP_BYTES`` keep their bytes in the scan (``FileScan.data``)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size <= small:
            data = f.read()
            if len(data) != st.st_size:
                raise ChangedWhileReading(f"{path} changed while it was read")
            if not data:
                return st, FileScan(0, EMPTY_SHA256, [], stat=stat_key(st))
            h = hashlib.sha256(data).hexdigest()
            return st, FileScan(len(data), h, [(h, 0, len(data))], data if len(data) <= KEEP_BYTES else None,
                                stat_key(st))
        whole = hashlib.sha256()
        blocks, off = [], 0
        for view in chunker.chunks(f):
            whole.update(view)
            blocks.append((hashlib.sha256(view).hexdigest(), off, len(view)))
            off += len(view)
        if stat_key(os.fstat(f.fileno())) != stat_key(st) or off != st.st_size:
            raise ChangedWhileReading(f"{path} changed while it was read")
    return st, FileScan(off, whole.hexdigest(), blocks, stat=stat_key(st))
