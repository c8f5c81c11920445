"""The local index: a SQLite cache of each local file's scan (keyed by its stat) and of the
last ETag synced per remote path. It is a cache: deleting it costs a rehash."""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Iterable

from .scan import FileScan, stat_key


class Index:
    """The local cache: stat -> hash and blocks per local file, and the last ETag synced per
    remote path. One SQLite file; safe to delete."""

    def __init__(self, path: str | os.PathLike | None):
        self.path = str(path) if path else ":memory:"
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS files (path TEXT, chunking TEXT, size INT, mtime_ns INT, "
                        "ino INT, sha256 TEXT, blocks TEXT, PRIMARY KEY (path, chunking))")
        self.db.execute("CREATE TABLE IF NOT EXISTS synced (server TEXT, rpath TEXT, etag TEXT, "
                        "PRIMARY KEY (server, rpath))")

    def lookup(self, path: str, chunking: str, st: os.stat_result) -> FileScan | None:
        with self.lock:
            row = self.db.execute("SELECT size, mtime_ns, ino, sha256, blocks FROM files WHERE path=? AND chunking=?",
                                  (path, chunking)).fetchone()
        if row is None or tuple(row[:3]) != stat_key(st):
            return None
        return FileScan(row[0], row[3], [tuple(b) for b in json.loads(row[4])], stat=stat_key(st))

    def all(self, chunking: str) -> dict[str, tuple]:
        """Every entry cut with ``chunking``: path -> (size, mtime_ns, ino, sha256, blocks json)."""
        with self.lock:
            rows = self.db.execute("SELECT path, size, mtime_ns, ino, sha256, blocks FROM files WHERE chunking=?",
                                   (chunking,)).fetchall()
        return {r[0]: r[1:] for r in rows}

    def store(self, rows: Iterable[tuple[str, str, os.stat_result, FileScan]]) -> None:
        data = [(p, c, *stat_key(st), sc.sha256, json.dumps(sc.blocks)) for p, c, st, sc in rows]
        if data:
            with self.lock:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?)", data)
                self.db.execute("COMMIT")

    def forget(self, paths: Iterable[str]) -> None:
        """Drop the scans of ``paths``: read again next time, whatever their stat (one found
        changed although its stat was not)."""
        data = [(p,) for p in paths]
        if data:
            with self.lock:
                self.db.executemany("DELETE FROM files WHERE path=?", data)

    def synced(self, server: str, rpaths: Iterable[str] | None = None) -> dict[str, str]:
        with self.lock:
            rows = self.db.execute("SELECT rpath, etag FROM synced WHERE server=?", (server,)).fetchall()
        out = dict(rows)
        return out if rpaths is None else {p: out[p] for p in rpaths if p in out}

    def set_synced(self, server: str, items: Iterable[tuple[str, str | None]]) -> None:
        items = list(items)
        if not items:
            return
        with self.lock:
            self.db.execute("BEGIN")
            for rpath, etag in items:
                if etag is None:
                    self.db.execute("DELETE FROM synced WHERE server=? AND (rpath=? OR rpath LIKE ?)",
                                    (server, rpath, rpath.rstrip("/") + "/%"))
                else:
                    self.db.execute("INSERT OR REPLACE INTO synced VALUES (?,?,?)", (server, rpath, etag))
            self.db.execute("COMMIT")


def default_index_path() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "blockdrive" / "index.sqlite"
