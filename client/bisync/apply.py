"""Applying a bisync :class:`~client.bisync.plan.Plan`, action by action, in a safe order:
moves, folders, conflicts (the local version renamed aside first), uploads and downloads, then
deletions last. The state database is written after each applied action (a batch of commits in
one transaction), so a run killed at any point resumes from what was really done.

Before a local file is overwritten, renamed aside or trashed, its stat is checked against the
one the plan was made with; a file changed since is left for the next round. Uploads commit
with If-Match (or "must not exist"), so a server change between the look and the commit is
left for the next round too, where it becomes a conflict; nothing is overwritten blindly.
"""

from __future__ import annotations

import os
import uuid
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Callable

from ..api import ClientError
from ..sync import Client
from ..sync.plan import RemoteEntry, parent_of
from ..sync.progress import Progress, Stats
from ..sync.push import CommitQueue, Uploader
from ..sync.scan import stat_key
from .ostrash import to_trash
from .plan import FILE, FOLDER, LocalEntry, Plan, under
from .state import BaseEntry, State

RECORD_BATCH = 64   # downloads recorded in the state database per transaction


@dataclass
class Report:
    """What a run did: paths per kind of action (``moved``: ``(side, from, to)``,
    ``deleted``: ``(side, path)``, ``conflicts``: ``(path, copy)``, ``kept``: ``(path, why)``)."""

    up: list = field(default_factory=list)
    down: list = field(default_factory=list)
    moved: list = field(default_factory=list)
    deleted: list = field(default_factory=list)
    conflicts: list = field(default_factory=list)
    kept: list = field(default_factory=list)
    deferred: int = 0  # actions left for the next round (something changed meanwhile)
    agreed: bool = False  # the last round left nothing for later: both trees agree

    def summary(self) -> str:
        return (f"bisync: {len(self.up)} up, {len(self.down)} down, {len(self.moved)} moved, "
                f"{len(self.deleted)} deleted, {len(self.conflicts)} conflicts")


def rewrite(path: str, moves: list[tuple[str, str]]) -> str:
    """``path`` after the folder moves ``(from, to)`` applied so far, in order."""
    for src, dst in moves:
        if path == src or under(path, src):
            path = dst + path[len(src):]
    return path


class Applier:
    """Applies one round's plan for a bisync pair. ``say`` gets each action's line."""

    def __init__(self, client: Client, state: State, local_root: str, remote_root: str,
                 base: dict[str, BaseEntry], local: dict[str, LocalEntry], remote: dict[str, RemoteEntry],
                 report: Report, say: Callable[[str], None]):
        self.c, self.state, self.root, self.rroot = client, state, local_root, remote_root.rstrip("/")
        self.base, self.local, self.remote = base, local, remote
        self.report, self.say = report, say
        self.rdirs = {rel: e.id for rel, e in remote.items() if e.kind == FOLDER}
        self.moved: list[tuple[str, str]] = []          # folder moves applied, as base paths
        self.moved_local: list[tuple[str, str]] = []    # ... as local paths
        self.moved_remote: list[tuple[str, str]] = []   # ... as the server's paths

    # ---- paths ------------------------------------------------------------------------------

    def lpath(self, rel: str) -> str:
        return os.path.join(self.root, *(self.c.names.to_local(p) for p in rel.split("/")))

    def rdir(self, rel: str) -> int:
        """The server folder at ``rel`` (made with its parents if missing)."""
        if rel not in self.rdirs:
            self.rdirs[rel] = self.c.ensure_folder(f"{self.rroot}/{rel}" if rel else self.rroot)["id"]
        return self.rdirs[rel]

    def unchanged(self, rel: str) -> bool:
        """Whether the local ``rel`` still has the stat the plan saw (or is still absent)."""
        try:
            st = os.lstat(self.lpath(rel))
        except FileNotFoundError:
            return rel not in self.local
        lo = self.local.get(rel)
        return lo is not None and (lo.kind == FOLDER or stat_key(st) == lo.stat)

    def defer(self, rel: str, why: str) -> None:
        self.report.deferred += 1
        self.report.kept.append((rel, why))
        self.say(f"kept {rel}: {why}")

    # ---- the round -----------------------------------------------------------------------------

    def apply(self, p: Plan, local_base: dict[str, str]) -> bool:
        """Apply ``p``; False when only its moves were applied: the paths of everything else
        were planned before them, so the next round plans it again from the moved trees."""
        self.state.update(drop=p.forget)
        for src, dst in p.rebase:
            src = rewrite(src, self.moved)
            self.state.move(src, dst)
            self.moved.append((src, dst))
        for rel, why in p.kept:
            self.report.kept.append((rel, why))
            self.say(f"kept {rel}: {why}")
        for rel, copy in p.aside:
            if not self.unchanged(rel) or os.path.lexists(self.lpath(copy)):
                self.defer(rel, "changed while syncing; next round")
                continue
            os.rename(self.lpath(rel), self.lpath(copy))
            self.report.conflicts.append((rel, copy))
            self.say(f"conflict {rel}: kept both, local copy saved as {PurePosixPath(copy).name}")
        if p.moves or p.aside:
            self.delete(p, local_base, files_only=True)
        for side, base_rel, src, target, nid in p.moves:
            self.move(side, base_rel, src, target, nid)
        self.state.update(put=p.record)  # after the moves: a record at a move's target replaces its source
        if p.moves or p.aside:
            return False
        for rel in p.mkdir_local:
            os.makedirs(self.lpath(rel), exist_ok=True)
            self.state.update(put=[(rel, BaseEntry(FOLDER, self.rdir(rel), stat=stat_key(os.stat(self.lpath(rel)))))])
        for rel in p.mkdir_remote:
            self.state.update(put=[(rel, BaseEntry(FOLDER, self.rdir(rel), stat=stat_key(os.stat(self.lpath(rel)))))])
        ups, downs = list(p.up), list(p.down)
        for rel, copy, nid, sha in p.conflicts:
            if not self.unchanged(rel) or os.path.lexists(self.lpath(copy)):
                self.defer(rel, "changed while syncing; next round")
                continue
            os.rename(self.lpath(rel), self.lpath(copy))
            self.local.pop(rel, None)
            ups.append((copy, None))
            downs.append((rel, nid, sha))
            self.report.conflicts.append((rel, copy))
            self.say(f"conflict {rel}: kept both, local copy saved as {PurePosixPath(copy).name}")
        self.upload(ups)
        self.download(downs)
        self.delete(p, local_base, files_only=False)
        return True

    def delete(self, p: Plan, local_base: dict[str, str], files_only: bool) -> None:
        """The plan's deletions (``files_only``: its files and the folders nothing moves out
        of, before the moves of a round that applies only those: a move may be going to where
        one of them is)."""
        def early(rel: str, kind: str, side: str) -> bool:
            """Whether to delete ``rel`` before the moves: a file, or a folder nothing moves out of."""
            return kind == FILE or not any(m[0] == side and under(m[2], rel) for m in p.moves)

        for rel, nid in p.delete_remote:
            if files_only and not early(rel, self.remote[rel].kind, "remote"):
                continue
            try:
                self.c.api.delete(nid)
            except ClientError as exc:
                self.defer(rel, f"not deleted on the server: {exc}")
                continue
            self.state.update(drop=[r for r, b in self.base.items() if b.node_id == nid] or [rel])
            self.report.deleted.append(("remote", rel))
            self.say(f"delete remote {rel}")
        for rel in p.delete_local:
            if files_only and not early(rel, self.local[rel].kind, "local"):
                continue
            if not self.unchanged(rel):
                self.defer(rel, "changed while syncing; next round")
                continue
            to_trash(self.lpath(rel))
            self.state.update(drop=[local_base.get(rel, rel)])
            self.report.deleted.append(("local", rel))
            self.say(f"delete local {rel}")

    def move(self, side: str, base_rel: str, src: str, target: str, nid: int) -> None:
        """Move ``src`` on ``side`` to ``target`` (``src`` after the folder moves already
        applied on that side), and its base entry with it."""
        moved = self.moved_local if side == "local" else self.moved_remote
        src = rewrite(src, moved)
        if src == target:
            return
        try:
            if side == "remote":
                self.c.api.move(nid, name=PurePosixPath(target).name, parent_id=self.rdir(parent_of(target)))
                if src in self.rdirs:
                    self.rdirs = {rewrite(k, [(src, target)]): v for k, v in self.rdirs.items()}
            else:
                a, b = self.lpath(src), self.lpath(target)
                if not os.path.lexists(a) or os.path.lexists(b):
                    self.defer(src, "changed while syncing; next round")
                    return
                if under(target, src):  # into a folder of its old name: by way of a hidden name
                    hidden = os.path.join(os.path.dirname(a), f".blockdrive-{uuid.uuid4().hex[:12]}.move")
                    os.rename(a, hidden)
                    a = hidden
                os.makedirs(os.path.dirname(b), exist_ok=True)
                os.rename(a, b)
        except (ClientError, OSError) as exc:
            self.defer(src, f"not moved: {exc}")
            return
        self.state.move(rewrite(base_rel, self.moved), target)
        self.moved.append((rewrite(base_rel, self.moved), target))
        moved.append((src, target))
        self.report.moved.append((side, src, target))
        self.say(f"move {side} {src} -> {target}")

    def upload(self, ups: list[tuple[str, str | None]]) -> None:
        """Send the files' missing blocks, commit them in batches; each batch recorded at once."""
        if not ups:
            return
        paths = [self.lpath(rel) for rel, _ in ups]
        before = {}
        for rel, path in zip([r for r, _ in ups], paths):
            try:
                before[rel] = os.stat(path)
            except FileNotFoundError:
                pass
        skipped: list[dict] = []
        scans = self.c.scan_many(paths, skipped=skipped)
        stats = Stats(files=len(ups))
        todo = []
        for (rel, etag), path, sc in zip(ups, paths, scans):
            try:
                same = sc is not None and rel in before and stat_key(os.stat(path)) == stat_key(before[rel])
            except FileNotFoundError:
                same = False
            if same:
                todo.append((rel, etag, path, sc))
            else:
                self.defer(rel, "changed while it was read; next round")

        def commit(group) -> None:
            res = self.c.api.commit_many([e for _, _, e in group])
            put = []
            for (rel, sc, _), r in zip(group, res):
                err = r.get("error") or {}
                if "ok" in r or (err.get("code") == "precondition-failed" and err.get("current_sha256") == sc.sha256):
                    nid = r["ok"]["id"] if "ok" in r else err.get("id") or self.c.resolve(f"{self.rroot}/{rel}")["id"]
                    put.append((rel, BaseEntry(FILE, nid, sc.sha256, sc.size, stat_key(before[rel]))))
                    self.report.up.append(rel)
                    self.say(f"up {rel}")
                else:
                    self.defer(rel, f"not committed ({err.get('detail') or err.get('title')}); next round")
            self.state.update(put=put)

        with Uploader(self.c, stats, Progress(False), self.rdirs.get("") or self.rdir("")) as up:
            q = CommitQueue(up, commit, lambda rel: self.rdir(parent_of(rel)))
            up.add([(path, sc) for _, _, path, sc in todo])
            for rel, etag, _, sc in todo:
                q.add(rel, sc, etag)
            q.flush()
            up.finish()

    def download(self, downs: list[tuple[str, int, str]]) -> None:
        """Fetch the files ``jobs`` at a time, each replaced atomically; recorded
        ``RECORD_BATCH`` at a time (a kill loses only records: the next round finds those
        files alike on both sides and records them)."""
        todo = []
        for rel, nid, _ in downs:
            if self.unchanged(rel):
                todo.append((rel, nid))
            else:
                self.defer(rel, "changed locally while syncing; next round")

        def one(item):
            rel, nid = item
            path = self.lpath(rel)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            lo = self.local.get(rel)
            return self.c.fetch(nid, path, lo.stat if lo is not None else None)

        put = []
        with ThreadPoolExecutor(self.c.jobs) as ex:
            futures = {ex.submit(one, item): item for item in todo}
            for fut in as_completed(futures):
                rel, nid = futures[fut]
                try:
                    st, sc = fut.result()
                except ClientError as exc:
                    self.defer(rel, f"not downloaded: {exc}")
                    continue
                put.append((rel, BaseEntry(FILE, nid, sc.sha256, sc.size, stat_key(st))))
                self.report.down.append(rel)
                self.say(f"down {rel}")
                if len(put) >= RECORD_BATCH:
                    self.state.update(put=put)
                    put = []
        self.state.update(put=put)
