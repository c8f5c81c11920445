"""Push, pull and one-way sync over the block API.

Push: cut the local file with the server's own chunker (``storage.chunking``, settings read
from the server), ask which blocks the server lacks, send only those (batched, a bounded
number of requests in flight), then commit the version with If-Match on the ETag we saw (or
"must not exist" for a new file). A push that died half-way resumes by simply running again:
hashing is recomputed (or read from the local index), and ``missing`` leaves out every block
the server already holds for us, including those the dead push sent (they are pinned in our
block session on the server).

Pull: read the version's block map; blocks the local copy already has (same hash) are copied
from it, the rest are fetched with ranged reads guarded by If-Range; the result is assembled
in a temporary file next to the target, its SHA-256 checked, then renamed over the target.
Nothing half-written is ever left at the target path.

Sync (one-way mirror of a local folder): :func:`plan_sync` compares the local tree with the
remote one (pure: tested without a server): folders to create, files to upload, renames
(a vanished remote file whose content reappears under a new local path is moved, not
re-sent), deletions, and conflicts. :class:`Client.sync` executes the plan in a safe order:
folders, moves, uploads (blocks of many files per request, commits of many files per
request), and deletions last, so nothing is deleted before its replacement is stored.

Conflicts: a file changed on the server since we last pushed or pulled it (the local index
remembers the ETag per remote path), or between our look and our commit (If-Match), stops
that file with :class:`ConflictError` naming both versions; nothing is overwritten silently.
``force`` overrides the first check (the second is the server's and always holds).

The local index (``$XDG_CACHE_HOME/blockdrive/index.sqlite``) maps a local path and its stat
(size, mtime, inode) to its hash and block list, so an unchanged file is not read again, and
remembers the last ETag synced per remote path. It is a cache: deleting it costs a rehash.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable

from storage.chunking import make_chunker

from .api import Api, ClientError, ConflictError, NotFoundError

BATCH_BYTES = 16 * 1024 * 1024    # block bytes per POST /batch/blocks (each costs the server a pack and two commits)
BATCH_BLOCKS = 4096               # the server's MAX_BATCH_BLOCKS
COMMIT_FILES = 1000               # the server's MAX_BATCH_FILES
COMMIT_JSON = 768 * 1024          # stay under the server's max_json_bytes (1 MiB by default)
RANGE_BYTES = 16 * 1024 * 1024    # largest ranged read when pulling
SCAN_SLICE = 1000                 # files hashed before their missing blocks start to be sent
SCAN_TASK = 64                    # files per task of the hashing threads
KEEP_BYTES = 64 * 1024            # files up to this size are read once (kept from hashing to sending)
EMPTY_SHA = hashlib.sha256(b"").hexdigest()


# ---- what we know about a local file ------------------------------------------------------

@dataclass
class FileScan:
    size: int
    sha256: str
    blocks: list[tuple[str, int, int]]  # (hex id, offset, size)
    # A small file's bytes, read once for hashing and kept until its block is queued to be
    # sent (or found not missing), so it is not opened and read a second time.
    data: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def hashes(self) -> list[str]:
        return [b for b, _, _ in self.blocks]


class ChangedWhileReading(ClientError):
    pass


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return st.st_size, st.st_mtime_ns, st.st_ino


def scan_file(path: str | os.PathLike, chunker, small: int) -> FileScan:
    """Cut and hash a file. Files of at most ``small`` bytes (the chunker's minimum) are
    one block, whose hash is the file's: hashed once, no chunker call."""
    return _scan_stat(path, chunker, small)[1]


def _scan_stat(path: str | os.PathLike, chunker, small: int) -> tuple[os.stat_result, FileScan]:
    """:func:`scan_file`, and the stat the scan saw (for the local index). Files of at most
    ``KEEP_BYTES`` keep their bytes in the scan (``FileScan.data``)."""
    with open(path, "rb") as f:
        st = os.fstat(f.fileno())
        if st.st_size <= small:
            data = f.read()
            if len(data) != st.st_size:
                raise ChangedWhileReading(f"{path} changed while it was read")
            if not data:
                return st, FileScan(0, EMPTY_SHA, [])
            h = hashlib.sha256(data).hexdigest()
            return st, FileScan(len(data), h, [(h, 0, len(data))], data if len(data) <= KEEP_BYTES else None)
        whole = hashlib.sha256()
        blocks, off = [], 0
        for view in chunker.chunks(f):
            whole.update(view)
            blocks.append((hashlib.sha256(view).hexdigest(), off, len(view)))
            off += len(view)
        if _stat_key(os.fstat(f.fileno())) != _stat_key(st) or off != st.st_size:
            raise ChangedWhileReading(f"{path} changed while it was read")
    return st, FileScan(off, whole.hexdigest(), blocks)


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
        if row is None or tuple(row[:3]) != _stat_key(st):
            return None
        return FileScan(row[0], row[3], [tuple(b) for b in json.loads(row[4])])

    def all(self, chunking: str) -> dict[str, tuple]:
        """Every entry cut with ``chunking``: path -> (size, mtime_ns, ino, sha256, blocks json)."""
        with self.lock:
            rows = self.db.execute("SELECT path, size, mtime_ns, ino, sha256, blocks FROM files WHERE chunking=?",
                                   (chunking,)).fetchall()
        return {r[0]: r[1:] for r in rows}

    def store(self, rows: Iterable[tuple[str, str, os.stat_result, FileScan]]) -> None:
        data = [(p, c, *_stat_key(st), sc.sha256, json.dumps(sc.blocks)) for p, c, st, sc in rows]
        if data:
            with self.lock:
                self.db.execute("BEGIN")
                self.db.executemany("INSERT OR REPLACE INTO files VALUES (?,?,?,?,?,?,?)", data)
                self.db.execute("COMMIT")

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


# ---- progress ----------------------------------------------------------------------------

@dataclass
class Stats:
    files: int = 0
    bytes_total: int = 0        # bytes of the files considered
    bytes_sent: int = 0         # block bytes sent to the server
    bytes_skipped: int = 0      # block bytes the server already had (or the local copy had)
    bytes_received: int = 0     # block bytes fetched (pull)
    blocks_sent: int = 0
    blocks_skipped: int = 0
    requests: int = 0
    uploaded: list = field(default_factory=list)
    unchanged: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    created_folders: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    errors: list = field(default_factory=list)   # files the server refused for another reason

    def as_dict(self) -> dict:
        return dict(self.__dict__)


class Progress:
    """Counts bytes sent vs skipped; draws a tqdm bar on stderr when asked."""

    def __init__(self, enabled: bool, desc: str = "push"):
        self.bar = None
        self.lock = threading.Lock()
        self.sent = self.skipped = 0
        if enabled:
            import sys

            from tqdm import tqdm
            self.bar = tqdm(total=0, desc=desc, unit="B", unit_scale=True, unit_divisor=1024, file=sys.stderr,
                            leave=False)

    def total(self, n: int) -> None:
        if self.bar is not None:
            self.bar.total = (self.bar.total or 0) + n
            self.bar.refresh()

    def add(self, sent: int = 0, skipped: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.skipped += skipped
            if self.bar is not None:
                self.bar.update(sent + skipped)
                self.bar.set_postfix_str(f"sent {_human(self.sent)}, skipped {_human(self.skipped)}", refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _human(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


# ---- which blocks to send ----------------------------------------------------------------

def blocks_to_send(files: list[tuple[str, FileScan]], missing: set[str]) -> list[tuple[str, str, int, int]]:
    """``(hex id, local path, offset, size)`` of each missing block, once even if several
    files (or several places in one file) hold it."""
    out, seen = [], set()
    for path, scan in files:
        for h, off, n in scan.blocks:
            if h in missing and h not in seen:
                seen.add(h)
                out.append((h, path, off, n))
    return out


def group_batches(blocks: list[tuple[str, str, int, int]], max_bytes: int = BATCH_BYTES,
                  max_blocks: int = BATCH_BLOCKS) -> list[list[tuple[str, str, int, int]]]:
    """Pack blocks into requests of at most ``max_bytes`` (a bigger block goes alone)."""
    out, cur, size = [], [], 0
    for b in blocks:
        if cur and (size + b[3] > max_bytes or len(cur) >= max_blocks):
            out.append(cur)
            cur, size = [], 0
        cur.append(b)
        size += b[3]
    if cur:
        out.append(cur)
    return out


def coalesce_ranges(wanted: list[tuple[int, int]], max_bytes: int = RANGE_BYTES) -> list[tuple[int, int]]:
    """Merge adjacent ``(offset, size)`` pieces into ``(start, end)`` ranges of at most
    ``max_bytes`` (a single larger piece stays whole)."""
    out: list[list[int]] = []
    for off, n in sorted(wanted):
        if out and out[-1][1] == off and off + n - out[-1][0] <= max_bytes:
            out[-1][1] = off + n
        else:
            out.append([off, off + n])
    return [(a, b) for a, b in out]


# ---- the sync plan -----------------------------------------------------------------------

@dataclass(frozen=True)
class RemoteEntry:
    id: int
    kind: str
    size: int | None = None
    sha256: str | None = None
    parent_id: int | None = None


@dataclass
class SyncPlan:
    mkdirs: list[str] = field(default_factory=list)                      # rel paths, parents first
    moves: list[tuple[str, str, int]] = field(default_factory=list)      # (from, to, node id)
    uploads: list[tuple[str, str | None]] = field(default_factory=list)  # (rel, If-Match etag or None=new)
    deletes: list[tuple[str, int]] = field(default_factory=list)         # topmost only
    replace: list[tuple[str, int]] = field(default_factory=list)         # deleted first: kind changed
    conflicts: list[dict] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _parent(rel: str) -> str:
    return rel.rpartition("/")[0]


@dataclass
class PathPlan:
    """The part of the sync plan that paths alone decide (no file read yet): kind changes,
    the folders to create, and the remote files that vanished locally (possible rename
    sources). :func:`plan_sync` builds on it; :meth:`Client.sync` uses it to create folders
    and commit files while the rest of the tree is still being read."""

    remote_files: dict[str, RemoteEntry]
    last_synced: dict[str, str]
    force: bool
    replace: list[tuple[str, int]] = field(default_factory=list)
    conflicts: list[dict] = field(default_factory=list)
    need: set[str] = field(default_factory=set)     # every folder the local tree has or implies
    mkdirs: list[str] = field(default_factory=list)
    vanished: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (sha256, size) -> rels

    def changed_remotely(self, rel: str) -> bool:
        e = self.remote_files[rel]
        return not self.force and rel in self.last_synced and self.last_synced[rel] != e.sha256

    def sure_upload(self, rel: str, scan: FileScan) -> tuple[bool, str | None]:
        """``(True, If-Match etag or None for a new file)`` when :func:`plan_sync` will upload
        ``rel`` whatever the other local files hold, from this file's scan alone; ``(False,
        None)`` when it will not (unchanged, conflict) or may not (its content matches a
        vanished remote file: a rename, decided over the whole tree), or a kind changed."""
        if self.replace or self.conflicts:
            return False, None
        e = self.remote_files.get(rel)
        if e is None:
            return (scan.sha256, scan.size) not in self.vanished, None
        if e.sha256 == scan.sha256 or self.changed_remotely(rel):
            return False, None
        return True, e.sha256


def plan_paths(local_paths: Iterable[str], local_dirs: set[str], remote: dict[str, RemoteEntry],
               last_synced: dict[str, str] | None = None, force: bool = False) -> PathPlan:
    """:class:`PathPlan` from the local file paths, local folders and the remote tree."""
    local_paths = set(local_paths)
    pp = PathPlan({r: e for r, e in remote.items() if e.kind == "file"}, last_synced or {}, force)
    remote_dirs = {r for r, e in remote.items() if e.kind == "folder"}
    # kind changed: the remote node goes first
    for rel, e in remote.items():
        if (e.kind == "file" and rel in local_dirs) or (e.kind == "folder" and rel in local_paths):
            if e.kind == "file" and pp.changed_remotely(rel):
                pp.conflicts.append({"path": rel, "local": "folder", "remote": e.sha256,
                                     "remote_version_sha256": e.sha256, "last_synced": pp.last_synced.get(rel)})
                continue
            pp.replace.append((rel, e.id))
    replaced = {r for r, _ in pp.replace}
    blocked = {c["path"] for c in pp.conflicts}
    # rename sources: remote files that vanished locally (matched to new files by content later)
    for rel, e in sorted(pp.remote_files.items()):
        if rel not in local_paths and rel not in replaced and rel not in blocked and not pp.changed_remotely(rel):
            pp.vanished.setdefault((e.sha256, e.size), []).append(rel)
    # folders a new file, move or local folder needs
    pp.need = set(local_dirs)
    for rel in local_paths:
        p = _parent(rel)
        while p:
            pp.need.add(p)
            p = _parent(p)
    pp.mkdirs = sorted((d for d in pp.need if d not in remote_dirs or d in replaced),
                       key=lambda d: (d.count("/"), d))
    return pp


def plan_sync(local_files: dict[str, FileScan], local_dirs: set[str], remote: dict[str, RemoteEntry],
              last_synced: dict[str, str] | None = None, force: bool = False) -> SyncPlan:
    """What makes the remote tree equal to the local one. Paths are relative, '/'-separated.
    ``last_synced`` maps a rel path to the ETag we last synced there: a remote file that no
    longer has it was changed by someone else, which is a conflict unless ``force``."""
    pp = plan_paths(local_files, local_dirs, remote, last_synced, force)
    last_synced, remote_files, changed_remotely = pp.last_synced, pp.remote_files, pp.changed_remotely
    plan = SyncPlan(replace=list(pp.replace), conflicts=list(pp.conflicts), mkdirs=list(pp.mkdirs))
    replaced = {r for r, _ in plan.replace}
    need = pp.need

    def gone_remote(rel):
        return rel not in remote or rel in replaced

    # renames: remote files that vanished locally, matched to new local files by content
    vanished = {k: list(v) for k, v in pp.vanished.items()}
    moved_from: set[str] = set()
    for rel in sorted(local_files):
        scan = local_files[rel]
        if not gone_remote(rel):
            continue
        cands = vanished.get((scan.sha256, scan.size))
        if cands:
            src = cands.pop(0)
            moved_from.add(src)
            plan.moves.append((src, rel, remote_files[src].id))
            continue
        plan.uploads.append((rel, None))
    for rel, scan in sorted(local_files.items()):
        if gone_remote(rel):
            continue
        e = remote_files[rel]
        if e.sha256 == scan.sha256:
            plan.unchanged.append(rel)
        elif changed_remotely(rel):
            plan.conflicts.append({"path": rel, "local_sha256": scan.sha256, "remote_sha256": e.sha256,
                                   "last_synced": last_synced[rel]})
        else:
            plan.uploads.append((rel, e.sha256))
    plan.uploads.sort()
    # deletions: remote nodes with no local counterpart, topmost only
    for rel, e in sorted(remote.items()):
        if rel in local_files or rel in local_dirs or rel in moved_from or rel in replaced:
            continue
        if e.kind == "folder" and rel in need:
            continue
        if e.kind == "file" and changed_remotely(rel):
            plan.conflicts.append({"path": rel, "local": None, "remote_sha256": e.sha256,
                                   "last_synced": last_synced[rel]})
            continue
        plan.deletes.append((rel, e.id))
    # a folder holding a conflicted file is kept; files moved out of one are moved before it goes
    keep = {c["path"] for c in plan.conflicts}
    deletes = [(r, i) for r, i in plan.deletes
               if not (remote[r].kind == "folder" and any(k.startswith(r + "/") for k in keep))]
    dels = {r for r, i in deletes if remote[r].kind == "folder"} | {r for r, _ in plan.replace}
    # topmost only: what is inside a deleted folder goes to the trash with it
    plan.deletes = [(r, i) for r, i in deletes if not any(r.startswith(d + "/") for d in dels)]
    return plan


# ---- the client ---------------------------------------------------------------------------

def split_remote(path: str) -> tuple[str, str]:
    p = PurePosixPath("/" + path.strip("/"))
    return str(p.parent), p.name


class Client:
    def __init__(self, api: Api, index: Index | None = None, jobs: int = 4, progress: bool = False,
                 batch_bytes: int = BATCH_BYTES):
        self.api, self.jobs, self.show_progress = api, max(1, jobs), progress
        self.batch_bytes = batch_bytes
        self.index = index or Index(None)
        self._chunker = None
        self._chunking_key = None

    # ---- chunking ---------------------------------------------------------------------

    def chunker(self):
        if self._chunker is None:
            c = self.api.chunking()
            conf = {"chunker": c["chunker"], "chunk_min": c["min"], "chunk_avg": c["avg"], "chunk_max": c["max"]}
            self._chunker = make_chunker(conf)
            self._small = c["min"] if c["chunker"] == "fastcdc" else c["avg"]
            self._chunking_key = json.dumps(conf, sort_keys=True)
        return self._chunker

    def scan(self, path: str, checksum: bool = False) -> tuple[os.stat_result, FileScan, bool]:
        """The file's blocks: from the index when its stat is unchanged (unless ``checksum``)."""
        chunker = self.chunker()
        ap = os.path.abspath(path)
        st = os.stat(ap)
        if not checksum:
            hit = self.index.lookup(ap, self._chunking_key, st)
            if hit is not None:
                return st, hit, True
        return st, scan_file(ap, chunker, self._small), False

    def scan_many(self, paths: list[str], checksum: bool = False, known: dict | None = None) -> list[FileScan]:
        """Scans of many files: the index answers for those whose stat is unchanged (one
        query for all, or ``known``: :meth:`Index.all` read once by a caller scanning in
        slices), the rest are read and hashed in parallel."""
        self.chunker()
        if checksum:
            known = {}
        elif known is None:
            known = self.index.all(self._chunking_key)
        out: list[FileScan | None] = [None] * len(paths)
        todo = []
        for i, p in enumerate(paths):
            ap = os.path.abspath(p)
            row = known.get(ap)
            if row is not None:
                st = os.stat(ap)
                if tuple(row[:3]) == _stat_key(st):
                    out[i] = FileScan(row[0], row[3], [tuple(b) for b in json.loads(row[4])])
                    continue
            todo.append(i)

        def some(idx):  # a task per SCAN_TASK files: a future per file costs more than a small file
            return [_scan_stat(os.path.abspath(paths[i]), self._chunker, self._small) for i in idx]

        with ThreadPoolExecutor(self.jobs) as ex:
            results = [r for part in ex.map(some, [todo[k:k + SCAN_TASK] for k in range(0, len(todo), SCAN_TASK)])
                       for r in part]
        for i, (_, sc) in zip(todo, results):
            out[i] = sc
        self.index.store((os.path.abspath(paths[i]), self._chunking_key, st, sc) for i, (st, sc) in zip(todo, results))
        return out  # type: ignore[return-value]

    # ---- remote lookups ---------------------------------------------------------------

    def lookup(self, path: str) -> dict | None:
        try:
            return self.api.resolve(path)
        except NotFoundError:
            return None

    def ensure_folder(self, path: str) -> dict:
        """The folder at ``path``, created with its parents if needed."""
        node = self.lookup(path)
        if node is not None:
            if node["kind"] != "folder":
                raise ClientError(f"{path} is a file, not a folder")
            return node
        parent_path, name = split_remote(path)
        parent = self.ensure_folder(parent_path)
        (res,) = self.api.folders([{"parent_id": parent["id"], "name": name}])
        if "error" in res:
            raise ClientError(f"create {path}: {res['error'].get('detail')}")
        return {"id": res["ok"]["id"], "kind": "folder", "name": name}

    def server_key(self) -> str:
        return self.api.identity

    # ---- sending blocks ---------------------------------------------------------------

    def send_blocks(self, files: list[tuple[str, FileScan]], stats: Stats, progress: Progress) -> None:
        """Send the blocks of ``files`` the server lacks."""
        self.upload_groups([files], None, stats, progress)

    def upload_groups(self, groups: list[list[tuple[str, FileScan]]], commit: Callable | None, stats: Stats,
                      progress: Progress) -> None:
        """Send the missing blocks of every group, then ``commit(i)`` each group on one thread
        as soon as its blocks are in, so commits overlap the sending of later groups."""
        with Uploader(self, stats, progress) as up:
            for g in groups:
                up.add(g)
            up.commit_groups(groups, commit)

    # ---- push -------------------------------------------------------------------------

    def push(self, local: str, remote: str, force: bool = False, checksum: bool = False) -> Stats:
        """Upload one local file to the remote path (a folder path ending in '/' or naming an
        existing folder takes the file's own name)."""
        if not os.path.isfile(local):
            raise ClientError(f"{local}: not a file (use sync for folders)")
        node = self.lookup(remote) if remote.strip("/") else None
        if remote.endswith("/") or not remote.strip("/") or (node is not None and node["kind"] == "folder"):
            remote = remote.rstrip("/") + "/" + os.path.basename(local)
            node = self.lookup(remote)
        remote = "/" + remote.strip("/")
        parent_path, name = split_remote(remote)
        stats = Stats(files=1)
        progress = Progress(self.show_progress, f"push {name}")
        try:
            st, scan, _ = self.scan(local, checksum)
            self.index.store([(os.path.abspath(local), self._chunking_key, st, scan)])
            stats.bytes_total = scan.size
            progress.total(scan.size)
            current = node["etag"] if node is not None and node["kind"] == "file" else None
            if node is not None and node["kind"] != "file":
                raise ClientError(f"{remote} is a folder")
            key = self.server_key()
            last = self.index.synced(key, [remote]).get(remote)
            if current == scan.sha256:
                stats.unchanged.append(remote)
                progress.add(skipped=scan.size)
                stats.bytes_skipped += scan.size
                self.index.set_synced(key, [(remote, current)])
                return stats
            if current is not None and last is not None and last != current and not force:
                raise ConflictError(
                    f"{remote} changed on the server since you last synced it: you had {last}, the server "
                    f"now has version {node.get('version_id')} ({current}); your local copy is {scan.sha256}. "
                    f"Nothing was sent; pull it first, or push --force to make yours the newest version.")
            parent = self.ensure_folder(parent_path)
            self.send_blocks([(os.path.abspath(local), scan)], stats, progress)
            try:
                res = self.api.commit(parent["id"], name, scan.hashes, scan.size, scan.sha256,
                                      if_match=current, if_none_match=current is None)
            except ConflictError as exc:
                now = self.lookup(remote)
                if now is None or now.get("etag") != scan.sha256:
                    raise self._conflict(remote, current, scan.sha256, now, exc) from None
                res = now  # our own commit, retried after its answer was lost
            stats.requests += 1
            stats.uploaded.append(remote)
            self.index.set_synced(key, [(remote, res.get("etag") or scan.sha256)])
            return stats
        finally:
            progress.close()

    @staticmethod
    def _conflict(remote: str, expected: str | None, mine: str, now: dict | None,
                  exc: ConflictError) -> ConflictError:
        theirs = f"version {now.get('version_id')} ({now.get('etag')})" if now else "nothing"
        had = expected or "no file"
        return ConflictError(f"{remote} changed on the server while pushing: expected {had}, the server now has "
                             f"{theirs}; your version {mine} was not committed (its blocks are kept for a retry)",
                             exc.status, exc.problem)

    # ---- pull -------------------------------------------------------------------------

    def pull(self, remote: str, local: str, checksum: bool = False, force: bool = False) -> Stats:
        node = self.api.resolve(remote)
        if node["kind"] != "file":
            raise ClientError(f"{remote} is a folder (pull takes a file)")
        if os.path.isdir(local):
            local = os.path.join(local, node["name"])
        remote = "/" + remote.strip("/")
        bm = self.api.block_map(node["id"])
        stats = Stats(files=1, bytes_total=bm["size"])
        progress = Progress(self.show_progress, f"pull {node['name']}")
        progress.total(bm["size"])
        key = self.server_key()
        try:
            have: dict[str, tuple[int, int]] = {}
            if os.path.isfile(local):
                st, scan, _ = self.scan(local, checksum)
                if scan.sha256 == bm["sha256"]:
                    stats.unchanged.append(local)
                    stats.bytes_skipped = bm["size"]
                    self.index.set_synced(key, [(remote, bm["sha256"])])
                    return stats
                last = self.index.synced(key, [remote]).get(remote)
                if last is not None and last != scan.sha256 and not force:
                    raise ConflictError(f"{local} has local changes ({scan.sha256}) not pushed since version {last}; "
                                        f"the server has {bm['sha256']}. Nothing was written; push it, or pull "
                                        f"--force to replace it.")
                have = {h: (off, n) for h, off, n in scan.blocks}
            self._assemble(node["id"], bm, local, have, stats, progress)
            st = os.stat(local)
            scan = FileScan(bm["size"], bm["sha256"], [tuple(b) for b in bm["blocks"]])
            self.chunker()
            self.index.store([(os.path.abspath(local), self._chunking_key, st, scan)])
            self.index.set_synced(key, [(remote, bm["sha256"])])
            return stats
        finally:
            progress.close()

    def _assemble(self, node_id: int, bm: dict, local: str, have: dict[str, tuple[int, int]], stats: Stats,
                  progress: Progress) -> None:
        target = os.path.abspath(local)
        tmp = os.path.join(os.path.dirname(target), f".{os.path.basename(target)}.blockdrive-{uuid.uuid4().hex[:8]}")
        fetch: list[tuple[int, int]] = []
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.ftruncate(fd, bm["size"])
            if have:
                with open(target, "rb") as old:
                    for h, off, n in bm["blocks"]:
                        if h in have:
                            src_off, src_n = have[h]
                            old.seek(src_off)
                            raw = old.read(src_n)
                            os.pwrite(fd, raw, off)
                            stats.bytes_skipped += n
                            progress.add(skipped=n)
                        else:
                            fetch.append((off, n))
            else:
                fetch = [(off, n) for _, off, n in bm["blocks"]]
            ranges = coalesce_ranges(fetch)

            def get(rng):
                a, b = rng
                data = self.api.read_range(node_id, a, b, bm["sha256"])
                os.pwrite(fd, data, a)
                progress.add(sent=len(data))  # for a pull, "sent" is what the server sent us
                return len(data)

            with ThreadPoolExecutor(self.jobs) as ex:
                for n in ex.map(get, ranges):
                    stats.bytes_received += n
                    stats.requests += 1
            os.fsync(fd)
            os.close(fd)
            fd = -1
            h = hashlib.sha256()
            with open(tmp, "rb") as f:
                while chunk := f.read(4 * 1024 * 1024):
                    h.update(chunk)
            if h.hexdigest() != bm["sha256"]:
                raise ClientError(f"downloaded content does not match its SHA-256 ({h.hexdigest()} != "
                                  f"{bm['sha256']}); {local} was left untouched")
            if os.path.exists(target):
                os.chmod(tmp, os.stat(target).st_mode & 0o7777)
            os.replace(tmp, target)
            tmp = None
        finally:
            if fd >= 0:
                os.close(fd)
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)

    # ---- sync -------------------------------------------------------------------------

    def remote_tree(self, root_id: int) -> dict[str, RemoteEntry]:
        """Every live node below ``root_id`` by relative path: one request for the whole tree,
        or, when the server cut it short, folder by folder (listed in parallel)."""
        out: dict[str, RemoteEntry] = {}
        t = self.api.tree(root_id)
        if not t["truncated"]:
            paths = {root_id: ""}
            for it in t["items"]:  # parents come before their children
                prefix = paths[it["parent_id"]]
                rel = f"{prefix}/{it['name']}" if prefix else it["name"]
                paths[it["id"]] = rel
                out[rel] = RemoteEntry(it["id"], it["kind"], it["size"], it["sha256"], it["parent_id"])
            return out
        frontier = [("", root_id)]
        with ThreadPoolExecutor(self.jobs) as ex:
            while frontier:
                listings = list(ex.map(lambda f: (f[0], list(self.api.children(f[1]))), frontier))
                frontier = []
                for prefix, items in listings:
                    for it in items:
                        rel = f"{prefix}/{it['name']}" if prefix else it["name"]
                        out[rel] = RemoteEntry(it["id"], it["kind"], it.get("size"), it.get("etag"), it["parent_id"])
                        if it["kind"] == "folder":
                            frontier.append((rel, it["id"]))
        return out

    @staticmethod
    def local_tree(root: str) -> tuple[list[str], set[str]]:
        files, dirs = [], set()
        root = os.path.abspath(root)
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root).replace(os.sep, "/")
            rel_dir = "" if rel_dir == "." else rel_dir
            dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
            for d in dirnames:
                dirs.add(f"{rel_dir}/{d}" if rel_dir else d)
            for f in filenames:
                if ".blockdrive-" in f:
                    continue  # our own temporary files
                if os.path.isfile(os.path.join(dirpath, f)) and not os.path.islink(os.path.join(dirpath, f)):
                    files.append(f"{rel_dir}/{f}" if rel_dir else f)
        return sorted(files), dirs

    def _make_folders(self, mkdirs: list[str], ids: dict[str, int], stats: Stats, rp: Callable) -> None:
        """Create ``mkdirs`` (parents first), a tree level per request; ``ids`` learns their ids."""
        level: dict[int, list[str]] = {}
        for d in mkdirs:
            level.setdefault(d.count("/"), []).append(d)
        for depth in sorted(level):
            todo = level[depth]
            for i in range(0, len(todo), 1000):
                part = todo[i:i + 1000]
                res = self.api.folders([{"parent_id": ids[_parent(d)], "name": PurePosixPath(d).name} for d in part])
                stats.requests += 1
                for d, r in zip(part, res):
                    if "error" in r:
                        raise ClientError(f"create folder {rp(d)}: {r['error'].get('detail')}")
                    ids[d] = r["ok"]["id"]
                    stats.created_folders.append(d)

    def sync(self, local_dir: str, remote_dir: str, force: bool = False, checksum: bool = False,
             dry_run: bool = False) -> tuple[SyncPlan, Stats]:
        if not os.path.isdir(local_dir):
            raise ClientError(f"{local_dir}: not a folder")
        remote_dir = "/" + remote_dir.strip("/")
        root = self.ensure_folder(remote_dir) if not dry_run else (self.lookup(remote_dir) or {"id": None})
        remote = self.remote_tree(root["id"]) if root["id"] else {}
        files, dirs = self.local_tree(local_dir)
        paths = [os.path.join(local_dir, *f.split("/")) for f in files]
        stats = Stats(files=len(files))
        key = self.server_key()
        rp = lambda rel: f"{remote_dir.rstrip('/')}/{rel}"  # noqa: E731
        synced = self.index.synced(key) if remote else {}
        last = {rel: synced[rp(rel)] for rel in remote if rp(rel) in synced}
        ids = {"": root["id"], **{r: e.id for r, e in remote.items() if e.kind == "folder"}}
        # What the paths alone decide. Unless a kind changed (that node must go to the trash
        # first), the folders are made now and each file the plan will surely upload is
        # committed as soon as its blocks are in, while the rest of the tree is still read.
        pp = plan_paths(files, dirs, remote, last, force)
        early = not dry_run and not pp.replace and not pp.conflicts
        progress = Progress(self.show_progress and not dry_run, "sync")
        up = Uploader(self, stats, progress)
        done: list[tuple[str, str]] = []
        refused: list[dict] = []  # commits the server refused as conflicts

        def commit(group: list[tuple[str, FileScan, dict]]) -> None:
            res = self.api.commit_many([e for _, _, e in group])
            stats.requests += 1
            for (rel, sc, _), r in zip(group, res):
                p = r.get("error") or {}
                if "ok" in r or (p.get("code") == "precondition-failed" and p.get("current_sha256") == sc.sha256):
                    # (the second: our own commit, retried after its answer was lost)
                    stats.uploaded.append(rel)
                    done.append((rp(rel), sc.sha256))
                else:
                    entry = {"path": rel, "error": p.get("detail") or p.get("title"), "code": p.get("code"),
                             "remote_version": p.get("current"), "remote_sha256": p.get("current_sha256"),
                             "local_sha256": sc.sha256}
                    conflict = p.get("code") in ("precondition-failed", "conflict")
                    (refused if conflict else stats.errors).append(entry)

        commits = _CommitQueue(up, commit, lambda rel: ids[_parent(rel)])
        try:
            if early:
                self._make_folders(pp.mkdirs, ids, stats, rp)
            # Hash a slice of the tree, then send what the server lacks of it while hashing the
            # next: nothing the server holds for us is ever missing, so sending before the plan
            # wastes nothing (only a conflicted file's new blocks wait unused in our session).
            scans: dict[str, FileScan] = {}
            self.chunker()
            known = None if checksum else self.index.all(self._chunking_key)
            for i in range(0, len(files), SCAN_SLICE):
                part = self.scan_many(paths[i:i + SCAN_SLICE], checksum, known)
                scans.update(zip(files[i:i + SCAN_SLICE], part))
                if not dry_run:
                    progress.total(sum(sc.size for sc in part))
                    # a file the server holds as it is here needs no block: not even asked about
                    send, same = [], []
                    for rel, p, sc in zip(files[i:i + SCAN_SLICE], paths[i:i + SCAN_SLICE], part):
                        e = pp.remote_files.get(rel)
                        (same if e is not None and e.sha256 == sc.sha256 else send).append((os.path.abspath(p), sc))
                    up.add(send)
                    up.skip(same)
                if early:
                    for rel, sc in zip(files[i:i + SCAN_SLICE], part):
                        sure, etag = pp.sure_upload(rel, sc)
                        if sure:
                            commits.add(rel, sc, etag)
            stats.bytes_total = sum(s.size for s in scans.values())
            plan = plan_sync(scans, dirs, remote, last, force)
            stats.conflicts = list(plan.conflicts)
            stats.unchanged = list(plan.unchanged)
            if dry_run:
                return plan, stats
            # 1. kind changes (a file became a folder or back): the old node to the trash
            for rel, nid in plan.replace:
                self.api.delete(nid)
                stats.deleted.append(rel)
                ids.pop(rel, None)
            # 2. folders, a tree level per request (made above already, unless a kind changed)
            self._make_folders([d for d in plan.mkdirs if not early or d not in pp.mkdirs], ids, stats, rp)
            # 3. renames: no data sent
            for src, dst, nid in plan.moves:
                self.api.move(nid, name=PurePosixPath(dst).name, parent_id=ids[_parent(dst)])
                stats.requests += 1
                stats.moved.append([src, dst])
            self.index.set_synced(key, [(rp(s), None) for s, _, _ in plan.moves] +
                                  [(rp(d), remote[s].sha256) for s, d, _ in plan.moves])
            # 4. uploads: blocks of many files per request; each group of files is committed (one
            #    request) as soon as its blocks are in, while the next groups' blocks are sent
            for rel, etag in plan.uploads:
                if rel not in commits.queued:
                    commits.add(rel, scans[rel], etag)
            commits.flush()
            up.finish()
            stats.conflicts += refused
            self.index.set_synced(key, done + [(rp(r), scans[r].sha256) for r in plan.unchanged
                                               if synced.get(rp(r)) != scans[r].sha256])
            # 5. deletions last: everything they replace is stored by now
            for rel, nid in plan.deletes:
                self.api.delete(nid)
                stats.requests += 1
                stats.deleted.append(rel)
            self.index.set_synced(key, [(rp(r), None) for r, _ in plan.deletes])
            return plan, stats
        except BaseException as exc:
            up.__exit__(type(exc), exc, None)
            up = None
            raise
        finally:
            if up is not None:
                up.__exit__(None, None, None)
            progress.close()


class _CommitQueue:
    """Files waiting to be committed, grouped into requests (at most ``COMMIT_FILES`` files
    and about ``COMMIT_JSON`` bytes of JSON each); each full group goes to the uploader,
    which commits it as soon as its blocks are in."""

    def __init__(self, up: "Uploader", commit: Callable, parent_id: Callable[[str], int]):
        self.up, self.commit, self.parent_id = up, commit, parent_id
        self.queued: dict[str, str | None] = {}  # rel -> If-Match etag (None: must not exist)
        self.cur: list[tuple[str, FileScan, dict]] = []
        self.json_size = 0

    def add(self, rel: str, sc: FileScan, etag: str | None) -> None:
        entry = {"parent_id": self.parent_id(rel), "name": PurePosixPath(rel).name, "blocks": sc.hashes,
                 "size": sc.size, "sha256": sc.sha256, **({"if_match": etag} if etag else {"if_none_match": True})}
        n = 160 + len(rel) + 67 * len(sc.blocks)
        if self.cur and (len(self.cur) >= COMMIT_FILES or self.json_size + n > COMMIT_JSON):
            self.flush()
        self.queued[rel] = etag
        self.cur.append((rel, sc, entry))
        self.json_size += n

    def flush(self) -> None:
        if self.cur:
            group, self.cur, self.json_size = self.cur, [], 0
            self.up.commit_later([sc for _, sc, _ in group], lambda: self.commit(group))


class Uploader:
    """Sends blocks in the background while the caller goes on (scanning more files, say).

    ``add(files)`` asks which of their blocks the server lacks (leaving out those already
    queued) and queues them in batched requests, ``jobs`` in flight; it blocks only when that
    many batches are waiting. Sending a block early is never wasted on content the server
    holds for us: ``missing`` leaves those out. ``commit_later`` commits a group of files on
    the commit thread as soon as the batches holding its blocks are done; ``finish`` waits
    for all of it."""

    def __init__(self, client: "Client", stats: Stats, progress: Progress):
        self.c, self.stats, self.progress = client, stats, progress
        self.lock = threading.Lock()
        self.future_of: dict[str, object] = {}
        self.futures: list = []
        self.sem = threading.BoundedSemaphore(client.jobs + 2)  # batches sent or waiting: memory stays bounded
        self.pool = ThreadPoolExecutor(client.jobs)
        self.committer: ThreadPoolExecutor | None = None
        self.data: dict[str, bytes] = {}  # bytes of small files, read while hashing, to send
        self.commits: list = []

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is not None:
            for f in self.futures + self.commits:
                f.cancel()
        if self.committer is not None:
            self.committer.shutdown(wait=True)
        self.pool.shutdown(wait=True)

    def add(self, files: list[tuple[str, FileScan]]) -> None:
        st = self.stats
        hashes = [h for _, sc in files for h in sc.hashes if h not in self.future_of]
        missing = self.c.api.missing(hashes) if hashes else set()
        st.requests += 1 if hashes else 0
        todo = blocks_to_send(files, missing - self.future_of.keys())
        wanted = {h for h, *_ in todo}
        for _, sc in files:  # small files' bytes: kept for sending if missing, dropped either way
            if sc.data is not None:
                if sc.hashes[0] in wanted:
                    self.data[sc.hashes[0]] = sc.data
                sc.data = None
        need = sum(n for _, _, _, n in todo)
        total = sum(sc.size for _, sc in files)
        st.bytes_skipped += total - need
        st.blocks_skipped += sum(len(sc.blocks) for _, sc in files) - len(todo)
        self.progress.add(skipped=total - need)
        for batch in group_batches(todo, self.c.batch_bytes):
            self.sem.acquire()
            for f in self.futures:  # fail fast: a batch that failed stops the rest
                if f.done() and f.exception() is not None:
                    self.sem.release()
                    f.result()
            fut = self.pool.submit(self._bounded, batch)
            self.futures.append(fut)
            for h, *_ in batch:
                self.future_of[h] = fut

    def skip(self, files: list[tuple[str, FileScan]]) -> None:
        """Count ``files`` as skipped: the server has them as they are."""
        n = sum(sc.size for _, sc in files)
        self.stats.bytes_skipped += n
        self.stats.blocks_skipped += sum(len(sc.blocks) for _, sc in files)
        self.progress.add(skipped=n)
        for _, sc in files:
            sc.data = None

    def _bounded(self, batch) -> None:
        try:
            self._send(batch)
        finally:
            self.sem.release()

    def _send(self, batch) -> None:
        payload, handles = [], {}
        try:
            for h, path, off, n in batch:
                raw = self.data.pop(h, None)
                if raw is not None:
                    payload.append((h, raw))
                    continue
                fd = handles.get(path)
                if fd is None:
                    fd = handles[path] = os.open(path, os.O_RDONLY)
                raw = os.pread(fd, n, off)
                if len(raw) != n:
                    raise ChangedWhileReading(f"{path} changed while it was pushed; push again")
                # No rehash here: the server checks every block against its hash (422).
                payload.append((h, raw))
        finally:
            for fd in handles.values():
                os.close(fd)
        try:
            self.c.api.put_blocks(payload)
        except ClientError as exc:
            if exc.status == 422:
                raise ChangedWhileReading(f"a file changed while it was pushed ({exc.problem.get('block')} no "
                                          f"longer matches); push again") from None
            raise
        n = sum(len(r) for _, r in payload)
        self.progress.add(sent=n)
        with self.lock:
            self.stats.blocks_sent += len(payload)
            self.stats.bytes_sent += n
            self.stats.requests += 1

    def wait(self, hashes) -> None:
        for f in {id(self.future_of[h]): self.future_of[h] for h in hashes if h in self.future_of}.values():
            f.result()

    def commit_later(self, scans: list[FileScan], commit: Callable[[], None]) -> None:
        """Run ``commit()`` on the commit thread once every block of ``scans`` is sent.
        Commits run one at a time, in the order given."""
        if self.committer is None:
            self.committer = ThreadPoolExecutor(1, thread_name_prefix="bd-commit")

        def run():
            self.wait(h for sc in scans for h in sc.hashes)
            commit()
        self.commits.append(self.committer.submit(run))

    def finish(self) -> None:
        """Wait for every commit and every batch; the first error is raised, the rest of the
        queued commits are cancelled."""
        try:
            for f in self.commits:
                f.result()
        except BaseException:
            for f in self.commits:
                f.cancel()
            raise
        finally:
            if self.committer is not None:
                self.committer.shutdown(wait=True)
                self.committer = None
        for f in self.futures:
            f.result()

    def commit_groups(self, groups: list[list[tuple[str, FileScan]]], commit: Callable | None) -> None:
        """``commit(i)`` for each group once its blocks are in (no commit: just wait)."""
        for i, g in enumerate(groups):
            self.commit_later([sc for _, sc in g], (lambda i=i: commit(i)) if commit is not None else (lambda: None))
        self.finish()
