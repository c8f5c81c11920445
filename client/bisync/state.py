"""The bisync state database: the last synced tree, the merge base of a two-way sync.

One SQLite file per (server, remote root, local folder). Each entry is a path both sides held
alike after the last round: its kind, the node id on the server, its SHA-256 and size, and the
local file's stat (size, mtime_ns, inode) when it was synced, so that an unchanged local file
is recognised without reading it and a renamed one is found by its inode. ``meta`` holds the
change feed's cursor and the remote root's id. Every write is one transaction: a kill at any
point leaves the last applied action recorded, and the next run re-plans from there.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable


@dataclass(unsafe_hash=True)
class BaseEntry:
    """One path of the last synced tree (``sha256``/``size`` None for a folder). Not changed
    once made, though not frozen: a frozen dataclass is three times as slow to make, and a
    run makes one per path."""

    kind: str                          # "file" | "folder"
    node_id: int
    sha256: str | None = None
    size: int | None = None
    stat: tuple[int, int, int] | None = None  # the local (size, mtime_ns, inode) when synced


def default_state_path(server: str, root_id: int, local: str) -> Path:
    """``$XDG_CACHE_HOME/blockdrive/bisync/<sha256(server|root id|realpath)[:16]>.sqlite``."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    key = hashlib.sha256(f"{server}|{root_id}|{os.path.realpath(local)}".encode()).hexdigest()[:16]
    return Path(base) / "blockdrive" / "bisync" / f"{key}.sqlite"


class State:
    """The last synced tree of one bisync pair, and its change feed cursor."""

    def __init__(self, path: str | os.PathLike):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS entries (path TEXT PRIMARY KEY, kind TEXT NOT NULL, "
                        "node_id INT NOT NULL, sha256 TEXT, size INT, lsize INT, mtime_ns INT, ino INT)")
        self.db.execute("CREATE INDEX IF NOT EXISTS entries_node ON entries (node_id)")
        self.db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT)")

    def close(self) -> None:
        self.db.close()

    def entries(self) -> dict[str, BaseEntry]:
        with self.lock:
            rows = self.db.execute("SELECT path, kind, node_id, sha256, size, lsize, mtime_ns, ino "
                                   "FROM entries").fetchall()
        return {r[0]: BaseEntry(r[1], r[2], r[3], r[4], None if r[5] is None else (r[5], r[6], r[7]))
                for r in rows}

    def get(self, key: str) -> str | None:
        with self.lock:
            row = self.db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return None if row is None else row[0]

    def update(self, put: Iterable[tuple[str, BaseEntry]] = (), drop: Iterable[str] = (),
               meta: dict[str, str | None] | None = None) -> None:
        """In one transaction: record ``put`` (a node is at one path: its row at any other path
        goes), forget each path of ``drop`` and what is below it, and set ``meta`` (None
        removes a key)."""
        put, drop = list(put), list(drop)
        if not (put or drop or meta):
            return
        with self.lock:
            self.db.execute("BEGIN")
            try:
                for rel in drop:
                    self.db.execute("DELETE FROM entries WHERE path=? OR substr(path, 1, ?)=?",
                                    (rel, len(rel) + 1, rel + "/"))
                self.db.executemany("DELETE FROM entries WHERE node_id=? AND path<>?",
                                    [(e.node_id, rel) for rel, e in put])
                self.db.executemany(
                    "INSERT OR REPLACE INTO entries VALUES (?,?,?,?,?,?,?,?)",
                    [(rel, e.kind, e.node_id, e.sha256, e.size, *(e.stat or (None, None, None))) for rel, e in put])
                for k, v in (meta or {}).items():
                    if v is None:
                        self.db.execute("DELETE FROM meta WHERE key=?", (k,))
                    else:
                        self.db.execute("INSERT OR REPLACE INTO meta VALUES (?,?)", (k, v))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise

    def move(self, src: str, dst: str) -> None:
        """Rename ``src`` and everything below it to ``dst`` (one transaction)."""
        if src == dst:
            return
        with self.lock:
            self.db.execute("BEGIN")
            try:
                self.db.execute("DELETE FROM entries WHERE path=? OR substr(path, 1, ?)=?",
                                (dst, len(dst) + 1, dst + "/"))
                self.db.execute("UPDATE entries SET path=? || substr(path, ?) WHERE path=? OR substr(path, 1, ?)=?",
                                (dst, len(src) + 1, src, len(src) + 1, src + "/"))
                self.db.execute("COMMIT")
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
