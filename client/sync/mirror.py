"""Sync: a one-way mirror of a local folder to a remote folder.

:func:`client.sync.plan.plan_sync` says what to do; :meth:`Mirror.sync` does it in a safe order:
folders, moves, uploads (blocks of many files per request, commits of many files per request),
and deletions last, so nothing is deleted before its replacement is stored.

Conflicts: a file changed on the server since we last pushed or pulled it (the local index
remembers the ETag per remote path), or between our look and our commit (If-Match), stops
that file, naming both versions; nothing is overwritten silently. ``force`` overrides the
first check (the second is the server's and always holds).

Deletions: a server node absent here is removed (deleted, moved away by a rename, replaced by
the other kind) only when it is ours (:class:`client.sync.plan.Ownership`): a file this device
pushed or pulled, unchanged on the server since; a folder it made or found in place, holding
nothing else. Anything else, another device's upload say, is kept and listed (``kept``),
``force`` or not. The index remembers folders as well as files for this (``plan.FOLDER``).
"""

from __future__ import annotations

import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import PurePosixPath
from typing import Callable, Container

from storage.names import fold

from ..api import ClientError
from ..names import NameMap
from .plan import FOLDER, RemoteEntry, SyncPlan, parent_of, plan_paths, plan_sync
from .progress import Progress, Stats
from .push import CommitQueue, Uploader
from .reading import DELETED, NEXT_RUN
from .scan import FileScan

SCAN_SLICE = 1000                 # files hashed before their missing blocks start to be sent


def special_kind(path: str, stats: dict[str, os.stat_result] | None = None) -> str | None:
    """None for a regular file; why it is left out for a symbolic link or a special file;
    "" for something that vanished since it was listed (nothing to report: it is gone).
    ``stats`` learns the ``lstat`` it took, by path."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return ""
    if stats is not None:
        stats[path] = st
    return kind_of(st.st_mode)


def kind_of(mode: int) -> str | None:
    """None for a regular file's ``st_mode``; else why such a thing is left out."""
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link (not followed)"
    return "not a regular file (" + ("socket" if stat.S_ISSOCK(mode) else "named pipe" if stat.S_ISFIFO(mode)
                                     else "device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else "special") + ")"


def entry_kind(entry: os.DirEntry, stats: dict[str, os.stat_result] | None = None) -> str | None:
    """:func:`special_kind` of a listed entry, by its one ``lstat`` (the listing's own)."""
    try:
        st = entry.stat(follow_symlinks=False)
    except FileNotFoundError:
        return ""
    if stats is not None:
        stats[entry.path] = st
    return kind_of(st.st_mode)


def keep_skipped(plan: SyncPlan, skipped: set[str]) -> None:
    """Leave the server's copy of each skipped path as it is: a file that could not be read
    (or a link that is not sent) is neither deleted nor moved away on the server, nor named
    as kept there (it is named as skipped)."""
    plan.deletes = [(rel, nid) for rel, nid in plan.deletes if rel not in skipped]
    plan.kept = [k for k in plan.kept if k["path"] not in skipped]
    for src, dst, nid in [m for m in plan.moves if m[0] in skipped]:
        plan.moves.remove((src, dst, nid))
        plan.uploads.append((dst, None))


class Mirror:
    """The sync side of :class:`client.sync.Client` (it provides ``api``, ``index``, ``jobs``,
    ``scan_many``, ``chunker``, ``ensure_folder``, ``lookup``, ``names``, ``server_key`` and
    ``chunking_key``)."""

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
    def local_tree(root: str, skipped: list | None = None, names: NameMap | None = None,
                   where: dict[str, str] | None = None,
                   stats: dict[str, os.stat_result] | None = None,
                   known: Container[str] | None = None) -> tuple[list[str], set[str]]:
        """Regular files and folders below ``root`` by relative path, named as on the server
        (``names`` maps local names; ``where`` learns each file's local path). Symbolic links
        and special files (sockets, pipes, devices) are not followed nor sent, nor are names
        the server would refuse or rename, nor a name equal under case folding to one listed
        before it in its folder (the server keeps one of them): each is added to ``skipped``
        as ``{path, reason}``. ``stats`` learns each file's ``lstat`` by its local path.
        ``known``: server paths known to be valid there (the name of one is not checked again
        where local names are the server's)."""
        files, dirs = [], set()
        skipped = [] if skipped is None else skipped
        names = names or NameMap()
        where = {} if where is None else where
        known = known if known is not None and not names.windows else ()
        root = os.path.abspath(root)

        def admit(path: str, prefix: str, local: str, seen: dict[str, str]) -> str | None:
            """``local``'s path on the server (``prefix``: its folder's), or None when it is
            skipped (``path``: its local path). ``seen``: the local names admitted so far in
            this folder, by the case fold of their server name."""
            remote = names.to_remote(local)
            rel = f"{prefix}/{remote}" if prefix else remote
            why = None if rel in known else names.admit(local)[1]
            if why is None:
                twin = seen.setdefault(fold(remote), local)
                if twin != local:
                    why = (f"on the server its name is the same as {twin!r}'s" if names.to_remote(twin) == remote
                           else f"its name differs only in case from {twin!r} (one folder on the server cannot "
                                "hold both)")
            if why is not None:
                skipped.append({"path": path, "reason": why})
                return None
            return rel

        def walk(folder: str, prefix: str) -> None:
            try:
                with os.scandir(folder) as listing:
                    entries = list(listing)
            except OSError:
                return  # unreadable or gone: as os.walk, nothing below it is listed
            subdirs, others = [], []
            for e in entries:
                try:
                    is_dir = e.is_dir(follow_symlinks=False)
                except OSError:
                    is_dir = False
                (subdirs if is_dir else others).append(e)
            seen: dict[str, str] = {}
            kept = []
            for e in sorted(subdirs, key=lambda e: e.name):
                rel = admit(e.path, prefix, e.name, seen)
                if rel is not None:
                    kept.append((e.path, rel))
                    dirs.add(rel)
            for e in sorted(others, key=lambda e: e.name):
                if ".blockdrive-" in e.name:
                    continue  # our own temporary files
                kind = entry_kind(e, stats)
                if kind is None:
                    rel = admit(e.path, prefix, e.name, seen)
                    if rel is not None:
                        files.append(rel)
                        where[rel] = e.path
                elif kind:
                    skipped.append({"path": e.path, "reason": kind})
            for path, rel in kept:
                walk(path, rel)

        walk(root, "")
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
                res = self.api.folders([{"parent_id": ids[parent_of(d)], "name": PurePosixPath(d).name} for d in part])
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
        skipped: list[dict] = []
        where: dict[str, str] = {}
        files, dirs = self.local_tree(local_dir, skipped, self.names, where)
        paths = [where[f] for f in files]
        stats = Stats(files=len(files), skipped=skipped)
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
        up = Uploader(self, stats, progress, root["id"])
        done: list[tuple[str, str]] = []
        refused: list[dict] = []  # commits the server refused as conflicts

        def commit(group: list[tuple[str, FileScan, dict]]) -> None:
            ready = []
            for item in group:  # a file that changed or went away since its scan waits for the next run
                why = up.why_not_ready(os.path.abspath(where[item[0]]), item[1])
                if why is None:
                    ready.append(item)
                else:
                    skipped.append({"path": where[item[0]], "reason": why if why == DELETED else why + NEXT_RUN})
            if not ready:
                return
            group = ready
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

        commits = CommitQueue(up, commit, lambda rel: ids[parent_of(rel)])
        try:
            if early:
                self._make_folders(pp.mkdirs, ids, stats, rp)
            # Hash a slice of the tree, then send what the server lacks of it while hashing the
            # next: nothing the server holds for us is ever missing, so sending before the plan
            # wastes nothing (only a conflicted file's new blocks wait unused in our session).
            scans: dict[str, FileScan] = {}
            self.chunker()
            known = None if checksum else self.index.all(self.chunking_key)
            for i in range(0, len(files), SCAN_SLICE):
                part = self.scan_many(paths[i:i + SCAN_SLICE], checksum, known, skipped)
                kept = [(r, p, sc) for r, p, sc in zip(files[i:i + SCAN_SLICE], paths[i:i + SCAN_SLICE], part)
                        if sc is not None]
                scans.update((r, sc) for r, _, sc in kept)
                part = [sc for _, _, sc in kept]
                if not dry_run:
                    progress.total(sum(sc.size for sc in part))
                    # a file the server holds as it is here needs no block: not even asked about
                    send, same = [], []
                    for rel, p, sc in kept:
                        e = pp.remote_files.get(rel)
                        (same if e is not None and e.sha256 == sc.sha256 else send).append((os.path.abspath(p), sc))
                    up.add(send)
                    up.skip(same)
                if early:
                    for rel, _, sc in kept:
                        sure, etag = pp.sure_upload(rel, sc)
                        if sure:
                            commits.add(rel, sc, etag)
            stats.bytes_total = sum(s.size for s in scans.values())
            plan = plan_sync(scans, dirs, remote, last, force)
            keep_skipped(plan, {self.names.remote_rel(os.path.relpath(k["path"], local_dir).replace(os.sep, "/"))
                                for k in skipped})
            stats.conflicts = list(plan.conflicts)
            stats.unchanged = list(plan.unchanged)
            stats.kept = [{**k, "remote": rp(k["path"])} for k in plan.kept]
            if dry_run:
                return plan, stats
            # 1. kind changes (a file became a folder or back): the old node to the trash
            for rel, nid in plan.replace:
                self.api.delete(nid)
                stats.deleted.append(rel)
                ids.pop(rel, None)
            self.index.set_synced(key, [(rp(r), None) for r, _ in plan.replace])
            # 2. folders, a tree level per request (made above already, unless a kind changed)
            self._make_folders([d for d in plan.mkdirs if not early or d not in pp.mkdirs], ids, stats, rp)
            # 3. renames: no data sent
            for src, dst, nid in plan.moves:
                self.api.move(nid, name=PurePosixPath(dst).name, parent_id=ids[parent_of(dst)])
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
            self.index.forget(os.path.abspath(k["path"]) for k in skipped)  # read afresh next run
            stats.conflicts += refused
            self.index.set_synced(key, done + [(rp(r), scans[r].sha256) for r in plan.unchanged
                                               if synced.get(rp(r)) != scans[r].sha256]
                                  + [(rp(d), FOLDER) for d in pp.need if synced.get(rp(d)) != FOLDER])
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

