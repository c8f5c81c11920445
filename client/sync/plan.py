"""The pure part of sync: which blocks to send and in which requests, which ranges to read,
and the plan that makes a remote tree equal to a local one. No I/O: tested without a server."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Iterable

from storage.wire import MAX_BATCH_BLOCKS

from .scan import FileScan

BATCH_BYTES = 16 * 1024 * 1024    # block bytes per POST /batch/blocks (each costs the server a pack and two commits)
BATCH_BLOCKS = MAX_BATCH_BLOCKS
RANGE_BYTES = 16 * 1024 * 1024    # largest ranged read when pulling


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

FOLDER = "folder"  # what the index records as "synced" for a folder sync made or found in place


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
    kept: list[dict] = field(default_factory=list)  # absent here, not ours to remove: {path, reason}


def parent_of(rel: str) -> str:
    return rel.rpartition("/")[0]


def under(rel: str, tops: set[str]) -> bool:
    """Whether ``rel`` is one of ``tops`` or lies below one of them."""
    if not tops:
        return False
    while rel:
        if rel in tops:
            return True
        rel = parent_of(rel)
    return False


NOT_OURS = "not uploaded from here"
CHANGED = "changed on the server since the last sync"


class Ownership:
    """What a one-way sync may remove from the server (delete, move away, replace): only
    what this device sent or fetched itself, unchanged there since. A file is ours when the
    index's last synced ETag for it is the server's current one; a folder when the index knows
    it (a folder sync made or found in place, or one holding a file it synced) and everything
    in it is ours. ``leaving``: files moved out before their folder goes."""

    def __init__(self, remote: dict[str, RemoteEntry], last_synced: dict[str, str],
                 leaving: set[str] | frozenset = frozenset()):
        self.remote, self.last_synced, self.leaving = remote, last_synced, leaving
        self.children: dict[str, list[str]] = {}
        for rel in remote:
            self.children.setdefault(parent_of(rel), []).append(rel)
        self.known_dirs = {rel for rel, etag in last_synced.items() if etag == FOLDER}
        for rel in last_synced:
            p = parent_of(rel)
            while p and p not in self.known_dirs:
                self.known_dirs.add(p)
                p = parent_of(p)
        self.memo: dict[str, bool] = {}

    def why_not(self, rel: str) -> str | None:
        """Why the node at ``rel`` is not this device's to remove, judged on itself alone (a
        folder's content aside); None when it is."""
        e = self.remote[rel]
        if e.kind == "folder":
            return None if rel in self.known_dirs else NOT_OURS
        if rel in self.leaving or self.last_synced.get(rel) == e.sha256:
            return None
        return CHANGED if rel in self.last_synced else NOT_OURS

    def removable(self, rel: str) -> bool:
        """Whether the node at ``rel`` and everything in it may be removed."""
        if rel not in self.memo:
            self.memo[rel] = self.why_not(rel) is None and all(self.removable(c) for c in self.children.get(rel, ()))
        return self.memo[rel]


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
    blocked: set[str] = field(default_factory=set)  # kind changed, the server's node kept: left alone below

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
    own = Ownership(remote, pp.last_synced)
    remote_dirs = {r for r, e in remote.items() if e.kind == "folder"}
    # kind changed: the remote node goes first, if it is ours to remove; else both stay as they are
    for rel, e in remote.items():
        if (e.kind == "file" and rel in local_dirs) or (e.kind == "folder" and rel in local_paths):
            if own.removable(rel):
                pp.replace.append((rel, e.id))
                continue
            here = "folder" if e.kind == "file" else "file"
            why = CHANGED if e.kind == "file" and own.why_not(rel) == CHANGED else NOT_OURS
            pp.conflicts.append({"path": rel, "local": here, "remote": e.sha256, "remote_sha256": e.sha256,
                                 "remote_version_sha256": e.sha256, "last_synced": pp.last_synced.get(rel),
                                 "error": f"a {here} here, a {e.kind} on the server ({why}); both left as they are"})
            pp.blocked.add(rel)
    replaced = {r for r, _ in pp.replace}
    # rename sources: remote files that vanished locally and are ours to move (matched to new
    # files by content later)
    for rel, e in sorted(pp.remote_files.items()):
        if (rel not in local_paths and rel not in replaced and not under(rel, pp.blocked)
                and own.why_not(rel) is None):
            pp.vanished.setdefault((e.sha256, e.size), []).append(rel)
    # folders a new file, move or local folder needs
    need = set(local_dirs)
    for rel in local_paths:
        p = parent_of(rel)
        while p:
            need.add(p)
            p = parent_of(p)
    pp.need = {d for d in need if not under(d, pp.blocked)}
    pp.mkdirs = sorted((d for d in pp.need if d not in remote_dirs or d in replaced),
                       key=lambda d: (d.count("/"), d))
    return pp


def plan_sync(local_files: dict[str, FileScan], local_dirs: set[str], remote: dict[str, RemoteEntry],
              last_synced: dict[str, str] | None = None, force: bool = False) -> SyncPlan:
    """What makes the remote tree equal to the local one. Paths are relative, '/'-separated.
    ``last_synced`` maps a rel path to the ETag we last synced there: a remote file that no
    longer has it was changed by someone else, which is a conflict unless ``force``. Nothing
    is removed from the server (deleted, moved away, replaced) that is not ours to remove
    (:class:`Ownership`), ``force`` or not: it is kept and listed in ``kept``."""
    pp = plan_paths(local_files, local_dirs, remote, last_synced, force)
    last_synced, remote_files, changed_remotely = pp.last_synced, pp.remote_files, pp.changed_remotely
    plan = SyncPlan(replace=list(pp.replace), conflicts=list(pp.conflicts), mkdirs=list(pp.mkdirs))
    replaced = {r for r, _ in plan.replace}
    blocked = pp.blocked
    need = pp.need
    local_files = {r: s for r, s in local_files.items() if not under(r, blocked)}

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
    # deletions: remote nodes with no local counterpart that are ours to remove, topmost only;
    # the rest is kept (a file changed on the server since is a conflict, unless ``force``)
    own = Ownership(remote, last_synced, moved_from)
    done: set[str] = set()  # deleted, or kept and named, with what is below
    left = blocked | replaced
    for rel, e in sorted(remote.items()):
        if (rel in local_files or rel in local_dirs or rel in moved_from or rel in need
                or under(rel, left) or under(parent_of(rel), done)):
            continue
        if own.removable(rel):
            plan.deletes.append((rel, e.id))
            done.add(rel)
            continue
        why = own.why_not(rel)
        if why is None:
            continue  # a folder of ours holding something that is not: looked at one by one
        done.add(rel)
        if e.kind == "file" and changed_remotely(rel):
            plan.conflicts.append({"path": rel, "local": None, "remote_sha256": e.sha256,
                                   "last_synced": last_synced[rel]})
        else:
            plan.kept.append({"path": rel, "kind": e.kind, "reason": why})
    return plan


def split_remote(path: str) -> tuple[str, str]:
    p = PurePosixPath("/" + path.strip("/"))
    return str(p.parent), p.name

