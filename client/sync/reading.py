"""Reading blocks back for sending, as they were when their files were scanned.

Between the scan of a file and the sending of its blocks, or the commit of its version, the
file may change or go away. A :class:`BlockReader` reads each block from a file that holds it
and is still as it was scanned (same size, mtime and inode), trying the other files holding
the same block when one is not. It remembers which files changed or vanished (``failed``) and
which blocks no file could give (``lost``), so that the uploader skips those files, and says
so, instead of stopping every other file of the run; :meth:`BlockReader.why_not_ready` tells
whether a file may be committed now.
"""

from __future__ import annotations

import os
import threading
from typing import Iterable

from .scan import FileScan, stat_key

CHANGED = "changed while reading"
DELETED = "deleted while reading"
SHARED_LOST = "a block it shares with a file that changed while reading could not be sent"
NEXT_RUN = " (will be sent next run)"  # what sync adds to CHANGED and SHARED_LOST


class BlockReader:
    """Where each block to send can be read, and what could not be read as scanned.
    Thread-safe: the uploader's sending threads and its commit thread share one."""

    def __init__(self):
        self.lock = threading.Lock()
        self.sources: dict[str, list[tuple[str, int, int]]] = {}  # block -> (path, offset, size) holding it
        self.stat_of: dict[str, tuple[int, int, int]] = {}        # path -> stat when scanned
        self.failed: dict[str, str] = {}                          # path -> CHANGED or DELETED
        self.lost: set[str] = set()

    def learn(self, files: Iterable[tuple[str, FileScan]], wanted) -> None:
        """Remember each file's scan stat, and where it holds each block in ``wanted`` (the
        blocks queued to be sent: any of their holders can give them)."""
        with self.lock:
            for path, sc in files:
                if sc.stat is not None:
                    self.stat_of[path] = sc.stat
                for h, off, n in sc.blocks:
                    if h in wanted:
                        self.sources.setdefault(h, []).append((path, off, n))

    def fail(self, path: str, why: str) -> None:
        with self.lock:
            self.failed.setdefault(path, why)

    def _source(self, h: str, path: str, off: int, n: int) -> tuple[str, int, int] | None:
        with self.lock:
            for src in [(path, off, n), *self.sources.get(h, ())]:
                if src[0] not in self.failed:
                    return src
            self.lost.add(h)
        return None

    def read(self, blocks: list[tuple[str, str, int, int]],
             data: dict[str, bytes]) -> tuple[list[tuple[str, bytes]], dict[str, str]]:
        """``(hex id, bytes)`` of each of ``blocks`` (``(hex id, path, offset, size)``), from
        ``data`` (small files' bytes kept from their scan) or from a file holding it that is
        still as scanned, and which file each read block came from. A block no such file can
        give is left out. No rehash: the server checks every block against its hash."""
        while True:
            payload, came_from, handles = [], {}, {}
            again = False
            try:
                for h, path, off, n in blocks:
                    raw = data.get(h)
                    if raw is not None:
                        payload.append((h, raw))
                        continue
                    src = self._source(h, path, off, n)
                    if src is None:
                        continue
                    p, o, k = src
                    try:
                        fd = handles.get(p)
                        if fd is None:
                            fd = handles[p] = os.open(p, os.O_RDONLY)
                        raw = os.pread(fd, k, o)
                    except OSError as exc:
                        self.fail(p, DELETED if isinstance(exc, FileNotFoundError) else CHANGED)
                        again = True
                        break
                    if len(raw) != k:
                        self.fail(p, CHANGED)
                        again = True
                        break
                    payload.append((h, raw))
                    came_from[h] = p
                # checked after reading: a write during the read changed the stat by now
                for p, fd in handles.items():
                    if not again and p in self.stat_of and stat_key(os.fstat(fd)) != self.stat_of[p]:
                        self.fail(p, CHANGED)
                        again = True
            finally:
                for fd in handles.values():
                    os.close(fd)
            if not again:  # else read again: each round fails one more file, so this ends
                return payload, came_from

    def why_not_ready(self, path: str, sc: FileScan) -> str | None:
        """Why the file at ``path`` scanned as ``sc`` must not be committed now (CHANGED,
        DELETED, SHARED_LOST), or None: its blocks were sent as scanned and it is unchanged."""
        with self.lock:
            if path in self.failed:
                return self.failed[path]
            if any(h in self.lost for h in sc.hashes):
                return SHARED_LOST
        try:
            st = os.stat(path)
        except FileNotFoundError:
            return DELETED
        if sc.stat is not None and stat_key(st) != sc.stat:
            return CHANGED
        return None
