""":class:`Bisync`: one local folder and one remote folder kept alike both ways.

A round reads the three trees (the server's, from the change feed when nothing changed there or
else one tree listing; the local one, hashing only the files whose stat differs from the base;
the base, from the state database), plans with :func:`client.bisync.plan.plan` and applies the
plan with :class:`client.bisync.apply.Applier`. A round whose plan had to leave something for
later (a file changed meanwhile) is followed by another, up to a few; the change feed cursor is
stored only after a round is applied, so a killed run lists the tree again next time.
"""

from __future__ import annotations

import datetime
import os
import socket
import threading
from typing import Callable

from ..api import ClientError
from ..sync import Client
from ..sync.plan import RemoteEntry
from ..sync.scan import stat_key
from .apply import Applier, Report
from .plan import FILE, FOLDER, LocalEntry, Plan, plan
from .state import State, default_state_path

ROUNDS = 5  # rounds a run makes while the last one left something for later


class Bisync:
    """Two-way sync of ``local`` with the remote folder ``remote`` (made if missing)."""

    def __init__(self, client: Client, local: str, remote: str, state: str | None = None, device: str | None = None,
                 say: Callable[[str], None] | None = None):
        if not os.path.isdir(local):
            raise ClientError(f"{local}: not a folder")
        self.c, self.local = client, os.path.abspath(local)
        self.remote = "/" + remote.strip("/")
        self.state_path, self.device = state, device or socket.gethostname()
        self.say = say or (lambda line: None)
        self._state: State | None = None
        self.root_id: int | None = None

    def state(self) -> State:
        if self._state is None:
            path = self.state_path or default_state_path(self.c.server_key(), self.root_id, self.local)
            self._state = State(path)
        return self._state

    # ---- the three trees ---------------------------------------------------------------------

    def remote_tree(self, base) -> tuple[dict[str, RemoteEntry], str]:
        """The server's tree below the root, and the feed cursor to keep once it is synced: the
        base itself when the feed has nothing since the stored cursor (no listing at all)."""
        st = self.state()
        cursor = st.get("cursor")
        if cursor and st.get("root") == str(self.root_id):
            try:
                page = self.c.api.changes(cursor)
            except ClientError as exc:
                if exc.status != 410:
                    raise
                page = None
            if page is not None and not page["entries"] and not page["has_more"]:
                return {rel: RemoteEntry(b.node_id, b.kind, b.size, b.sha256) for rel, b in base.items()}, page["cursor"]
        cursor = self.c.api.changes_latest()  # before listing: what changes after it is read next time
        return self.c.remote_tree(self.root_id), cursor

    def local_tree(self, base) -> tuple[dict[str, LocalEntry], set[str], list[dict]]:
        """The local tree (server names) with hashes, the skipped paths and why."""
        skipped: list[dict] = []
        where: dict[str, str] = {}
        stats: dict[str, os.stat_result] = {}
        files, dirs = self.c.local_tree(self.local, skipped, self.c.names, where, stats, known=base)
        out: dict[str, LocalEntry] = {}
        for rel in dirs:
            try:
                out[rel] = LocalEntry(FOLDER, stat_key(os.lstat(os.path.join(self.local, *map(self.c.names.to_local,
                                                                                              rel.split("/"))))))
            except FileNotFoundError:
                pass
        by_stat = None  # the base's files by stat, for those not at their base path with its stat
        todo = []
        for rel in files:
            st = stat_key(stats[where[rel]])
            b = base.get(rel)
            if b is None or b.kind != FILE or b.stat != st:
                if by_stat is None:
                    by_stat = {b.stat: b for b in base.values() if b.kind == FILE and b.stat is not None}
                b = by_stat.get(st)
            if b is not None:
                out[rel] = LocalEntry(FILE, st, b.sha256, b.size)
            else:
                todo.append((rel, st))
        if todo:
            scans = self.c.scan_many([where[r] for r, _ in todo], skipped=skipped)
            for (rel, st), sc in zip(todo, scans):
                if sc is not None:
                    out[rel] = LocalEntry(FILE, st, sc.sha256, sc.size)
        rels = {self.c.names.remote_rel(os.path.relpath(k["path"], self.local).replace(os.sep, "/")) for k in skipped}
        return out, rels, skipped

    # ---- rounds ------------------------------------------------------------------------------

    def plan_round(self) -> tuple[Plan, dict, dict, dict, str, list[dict]]:
        base = self.state().entries()
        remote, cursor = self.remote_tree(base)
        local, skipped_rels, skipped = self.local_tree(base)
        p = plan(base, local, remote, self.device, datetime.date.today().isoformat(), skipped_rels)
        return p, base, local, remote, cursor, skipped

    def run(self, dry_run: bool = False) -> Report:
        report = Report()
        if dry_run:
            node = self.c.lookup(self.remote)
            if node is None:
                self.root_id = -1
                base, remote, cursor = {}, {}, ""
                local, rels, skipped = self.local_tree({})
                p = plan(base, local, remote, self.device, datetime.date.today().isoformat(), rels)
            else:
                self.root_id = node["id"]
                p, base, local, remote, cursor, skipped = self.plan_round()
            describe(p, report, self.say)
            return report
        self.root_id = self.c.ensure_folder(self.remote)["id"]
        reported: set[str] = set()
        for _ in range(ROUNDS):
            p, base, local, remote, cursor, skipped = self.plan_round()
            for k in skipped:
                if k["path"] not in reported:
                    reported.add(k["path"])
                    report.kept.append((k["path"], k["reason"]))
                    self.say(f"kept {os.path.relpath(k['path'], self.local)}: skipped, {k['reason']}")
            before = report.deferred
            whole = Applier(self.c, self.state(), self.local, self.remote, base, local, remote, report,
                            self.say).apply(p, p.base_of)
            report.agreed = whole and report.deferred == before and not p.again
            # the cursor may pass only what the base now holds: else the next run lists the tree
            self.state().update(meta={"cursor": cursor if report.agreed else None, "root": str(self.root_id)})
            if report.agreed:
                break
        return report

    def watch(self, stop: threading.Event) -> None:
        """Rounds on every local or remote change until ``stop`` is set."""
        from .watch import watch
        watch(self, stop)


def describe(p: Plan, report: Report, say: Callable[[str], None]) -> None:
    """The plan's actions as a run would report them, applying none (``--dry-run``)."""
    for rel, copy in p.aside:
        report.conflicts.append((rel, copy))
        say(f"conflict {rel}: kept both, local copy saved as {copy.rpartition('/')[2]}")
    for side, _, src, target, _ in p.moves:
        report.moved.append((side, src, target))
        say(f"move {side} {src} -> {target}")
    for rel, copy, _, _ in p.conflicts:
        report.conflicts.append((rel, copy))
        say(f"conflict {rel}: kept both, local copy saved as {copy.rpartition('/')[2]}")
    for rel, _ in p.up:
        report.up.append(rel)
        say(f"up {rel}")
    for rel, _, _ in p.down:
        report.down.append(rel)
        say(f"down {rel}")
    for rel, _ in p.delete_remote:
        report.deleted.append(("remote", rel))
        say(f"delete remote {rel}")
    for rel in p.delete_local:
        report.deleted.append(("local", rel))
        say(f"delete local {rel}")
    for rel, why in p.kept:
        report.kept.append((rel, why))
        say(f"kept {rel}: {why}")
