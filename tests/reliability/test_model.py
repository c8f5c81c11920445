"""Model-based test of the drive: a hypothesis state machine drives blockdrive in-process and
a plain model of what each operation means, and after every step the two must agree.

The model holds, for one owner A: every file's place (folder, name), its versions (contents,
in order), whether it is in the trash (and since when), the interrupted resumable uploads,
the shares to a second user B (with their roles) and the public links. Rules: upload, edit
(a new version), interrupted upload and its resume, delete, restore from the trash, restore
an old version, move/rename, share/unshare, link/revoke, B editing through a share, advance
the clock, the gc, reconcile and compact jobs, and crashes: a hook at a named crash point
raises mid-operation, the drive is rebuilt on the same database and home (a restart), and
the operation either happened (crash after its commit) or left no trace (before it).

Invariants, after every step: each file's listed versions match the model and each version
downloads byte-identical; ``fsck`` is clean (refs, refcounts, usage; deep at the end); A's
used bytes are the sum of the current sizes of A's files, trash included, purged excluded;
A's quota refuses exactly the uploads the model says exceed it; B sees exactly what is
shared with them, with the modelled role, and 404 for everything else; each link reads the
current content, 404 once its node is in the trash, 410 once revoked.

Contents are cut from a small pool of byte pieces with small blocks, so files share blocks
and dedup, refcounts and GC have something to get wrong.
"""

from __future__ import annotations

import hashlib
import io
from collections import Counter

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (RuleBasedStateMachine, initialize, invariant, precondition, rule,
                                 run_state_machine_as_test)

from storage import clock, crashpoints
from storage.config import load_config
from storage.drive import Drive
from storage.errors import Conflict, Forbidden, Gone, NotFound, QuotaExceeded
from storage.models import Base
from storage.sharing import Sharing
from storage.uploads import Uploads
from tests.conftest import FAST_SCRYPT
from tests.reliability import figures
from tests.reliability.invariants import metadata_problems
from tests.unit.jobs.conftest import JOBS_TEST

QUOTA = 90_000
HOUR = 3600
STEP_HOURS = 5     # the clock moves in 5 h steps: no boundary below lands within a real minute
RETENTION_DAYS = 1  # trash older than 24 h is purged by gc: 20 h kept, 25 h purged
EXPIRE_HOURS = 12   # resumable uploads expire: 10 h alive, 15 h expired
JOB_EVERY = 8       # steps at least between two jobs, and at most JOBS jobs an example:
JOBS = figures.scale(1, 4)  # they cost seconds each

PIECES = [hashlib.shake_256(b"piece-%d" % i).digest(5000) for i in range(6)]
FOLDERS = ("", "d0", "d1", "d0/s")  # "" is A's root; d0/s is below d0, so shares on d0 reach it
NAMES = ("a.bin", "b.txt", "c", "d.dat", "e.html")
CRASH_PUT = ("put:before_commit", "put:after_commit")
CRASH_TUS = ("tus:chunk_stored", "tus:chunk_committed", "tus:after_finish")

contents = st.lists(st.sampled_from(range(len(PIECES))), min_size=0, max_size=4).flatmap(
    lambda idx: st.integers(0, 4000).map(lambda cut: b"".join(PIECES[i] for i in idx)[cut:]))


class Crash(BaseException):
    """What a crash point raises: not an Exception, so no handler on the way mistakes it for
    an ordinary error."""


def _config(home) -> object:
    return load_config(env={}, overrides={
        "storage": {"home": str(home), "chunk_min": 1024, "chunk_avg": 4096, "chunk_max": 16384},
        # A floor of one byte makes each version cost its size (the model does not count blocks);
        # retention keeps every version, so the model's version lists stay exact (thinning is
        # tested in tests/unit/jobs/test_retention.py).
        "security": FAST_SCRYPT, "quota": {"free_bytes": QUOTA, "block_floor_bytes": 1},
        "retention": {"keep_all_seconds": 10**9},
        "gc": {"grace_seconds": HOUR}, "trash": {"retention_days": RETENTION_DAYS},
        "server": {"upload_expire_seconds": EXPIRE_HOURS * HOUR},
        "jobs": JOBS_TEST})


def _parent(path: str) -> str | None:
    """The folder above the folder at ``path`` ("" is the root, which has none)."""
    return None if path == "" else path.rpartition("/")[0]


def _wipe(engine) -> None:
    with engine.begin() as conn:
        if engine.dialect.name == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for table in reversed(Base.metadata.sorted_tables):
            conn.execute(table.delete())
        if engine.dialect.name == "mysql":
            conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")


class File:
    def __init__(self, node_id: int, folder: str, name: str, data: bytes):
        self.id, self.folder, self.name = node_id, folder, name
        self.versions = [data]
        self.trashed_at: int | None = None  # model hours

    @property
    def size(self) -> int:
        return len(self.versions[-1])


class DriveModel(RuleBasedStateMachine):
    engine = shared_spark = tmp = None  # set by the test before the machine runs
    examples = steps = 0
    counts: Counter = Counter()  # rules run (and crashes injected), over all examples

    def __init__(self):
        super().__init__()
        type(self).examples += 1
        if self.examples % 10 == 0:
            self.shared_spark.recycle()  # hundreds of job runs would fill one JVM
        self.spark_session = self.shared_spark.session
        clock.reset()
        _wipe(self.engine)
        self.config = _config(self.tmp / f"home{self.examples}")
        self._start()
        self.a, _ = self.drive.create_user("a@example.com", "password123")
        self.b, _ = self.drive.create_user("b@example.com", "password123")
        self.folder_ids = {"": self.a.root_id}
        for path in FOLDERS[1:]:
            self.folder_ids[path] = self.drive.mkdirs(self.a.id, "/" + path).id
        self.files: dict[int, File] = {}
        self.shares: dict[int, str] = {}          # node id -> B's role granted on it
        self.links: dict[str, tuple[int, bool]] = {}  # token -> (node id, revoked)
        self.link_ids: dict[str, int] = {}
        self.sessions: dict[str, tuple[str, str, bytes, int, int]] = {}  # sid -> folder, name, data, offset, born
        self.hours = 0
        self.since_job, self.jobs_run = JOB_EVERY, 0

    def _start(self) -> None:
        """A (re)start: a fresh Drive on the same database and home."""
        self.drive = Drive(self.config, engine=self.engine)
        self.up, self.sharing = Uploads(self.drive), Sharing(self.drive)

    def teardown(self):
        crashpoints.HOOKS.clear()
        try:
            problems = metadata_problems(self.drive, deep=True)
            assert not problems, problems
        finally:
            clock.reset()

    # ---- the model's views -------------------------------------------------------------

    def live(self) -> list[File]:
        return [f for f in self.files.values() if f.trashed_at is None]

    def at(self, folder: str, name: str) -> File | None:
        return next((f for f in self.live() if (f.folder, f.name) == (folder, name)), None)

    def used(self) -> int:
        """Every version kept counts: current, old and in the trash."""
        return sum(len(v) for f in self.files.values() for v in f.versions)

    def b_role(self, node_id: int, folder: str | None) -> str | None:
        """B's role on a node: the best share on it or on a folder above it."""
        chain = [node_id]
        path = folder
        while path is not None:
            chain.append(self.folder_ids[path])
            path = None if path == "" else path.rpartition("/")[0]
        roles = [self.shares[n] for n in chain if n in self.shares]
        return "editor" if "editor" in roles else ("viewer" if roles else None)

    def put_fits(self, old: File | None, data: bytes) -> bool:
        """A new version is charged whole (the one it replaces stays), beside what open tus
        uploads reserve. The reservations are read from the server: when gc releases an
        expired one is a boundary the model does not pin down; fsck's recount checks them."""
        return self.used() + self.drive.account(self.a.id).pending_bytes + len(data) <= QUOTA

    def tick(self, what: str) -> None:
        type(self).steps += 1
        type(self).counts[what] += 1
        self.since_job += 1

    # ---- rules: A's files ----------------------------------------------------------------

    @initialize(files=st.lists(st.tuples(st.sampled_from(FOLDERS), st.sampled_from(NAMES), contents),
                               min_size=1, max_size=4))
    def some_files(self, files):
        """Every example starts with a few files (each may still be refused by the quota)."""
        for folder, name, data in files:
            self.put(folder, name, data, None)

    @rule(folder=st.sampled_from(FOLDERS), name=st.sampled_from(NAMES), data=contents,
          crash=st.sampled_from((None, None, None) + CRASH_PUT))
    def put(self, folder, name, data, crash):
        """Upload a new file, or a new version of the one there (an edit)."""
        self.tick("put")
        old = self.at(folder, name)
        fits = self.put_fits(old, data)
        if crash and fits:
            crashpoints.HOOKS[crash] = self._crash
        try:
            res = self.drive.put(self.a.id, self.folder_ids[folder], name, io.BytesIO(data))
        except QuotaExceeded:
            assert not fits
            return
        except Crash:
            self._start()
            if crash == "put:before_commit":
                assert self._find(folder, name) == (old.id if old else None)
                if old:
                    assert len(self.drive.versions(self.a.id, old.id)) == len(old.versions)
                return
            res = None
        finally:
            crashpoints.HOOKS.clear()
        assert fits
        nid = res.node.id if res else self._find(folder, name)
        if old:
            assert nid == old.id
            old.versions.append(data)
        else:
            self.files[nid] = File(nid, folder, name, data)

    def _crash(self):
        type(self).counts["crashes"] += 1
        raise Crash()

    def _find(self, folder: str, name: str) -> int | None:
        path = "/" + "/".join(p for p in (folder, name) if p)
        try:
            return self.drive.resolve(self.a.id, path).id
        except NotFound:
            return None

    @rule(folder=st.sampled_from(FOLDERS), name=st.sampled_from(NAMES), data=contents,
          cut=st.floats(0, 1), crash=st.sampled_from((None, None) + CRASH_TUS[:2]))
    def tus_start(self, folder, name, data, cut, crash):
        """A resumable upload sent in part: the rest comes (or never comes) later."""
        self.tick("tus_start")
        if not data:
            return  # an empty file is created whole at once (tus creation of length 0)
        old = self.at(folder, name)
        if not self.put_fits(old, data):
            with pytest.raises(QuotaExceeded):
                self.up.create(self.a.id, self.folder_ids[folder], name, len(data))
            return
        s = self.up.create(self.a.id, self.folder_ids[folder], name, len(data))
        n = min(int(len(data) * cut), max(len(data) - 1, 0))
        self.sessions[s.id] = (folder, name, data, 0, self.hours)
        if n == 0:
            return
        if crash:
            crashpoints.HOOKS[crash] = self._crash
        try:
            info, result = self.up.append(self.a.id, s.id, 0, io.BytesIO(data[:n]), declared=n)
            assert result is None and info.offset == n
        except Crash:
            self._start()
            n = 0 if crash == "tus:chunk_stored" else n
        finally:
            crashpoints.HOOKS.clear()
        assert self.up.get(self.a.id, s.id).offset == n
        self.sessions[s.id] = (folder, name, data, n, self.hours)

    @precondition(lambda self: self.sessions)
    @rule(pick=st.integers(0, 100), crash=st.sampled_from((None, None, None, "tus:after_finish")))
    def tus_resume(self, pick, crash):
        self.tick("tus_resume")
        sid = list(self.sessions)[pick % len(self.sessions)]  # in creation order: ids are random
        folder, name, data, offset, born = self.sessions.pop(sid)
        if self.hours - born >= EXPIRE_HOURS:
            with pytest.raises(Gone):
                self.up.get(self.a.id, sid)
            return
        assert self.up.get(self.a.id, sid).offset == offset  # the server's offset, as a client would ask
        old = self.at(folder, name)
        fits = True  # the length was reserved at creation: finishing turns it into the version
        if crash:
            crashpoints.HOOKS[crash] = self._crash
        try:
            info, result = self.up.append(self.a.id, sid, offset, io.BytesIO(data[offset:]),
                                          declared=len(data) - offset)
            nid = result.node.id
        except QuotaExceeded:
            assert not fits
            with pytest.raises(Gone):  # a session refused at its end is aborted, pins released
                self.up.get(self.a.id, sid)
            return
        except Crash:
            self._start()
            nid = self._find(folder, name)
        finally:
            crashpoints.HOOKS.clear()
        assert fits
        if old:
            assert nid == old.id
            old.versions.append(data)
        else:
            self.files[nid] = File(nid, folder, name, data)

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 100))
    def delete(self, pick):
        self.tick("delete")
        f = self.live()[pick % len(self.live())]
        self.drive.delete(self.a.id, f.id)
        f.trashed_at = self.hours

    @precondition(lambda self: any(f.trashed_at is not None for f in self.files.values()))
    @rule(pick=st.integers(0, 100))
    def restore(self, pick):
        self.tick("restore")
        trash = [f for f in self.files.values() if f.trashed_at is not None]
        f = trash[pick % len(trash)]
        info = self.drive.restore(self.a.id, f.id)
        if self.at(f.folder, f.name) is None:
            assert info.name == f.name
        else:  # the name was taken meanwhile: restored under a new one
            assert info.name != f.name and "(restored" in info.name
            f.name = info.name
        assert self.drive.get(self.a.id, f.id).parent_id == self.folder_ids[f.folder]
        f.trashed_at = None

    @precondition(lambda self: any(len(f.versions) > 1 for f in self.live()))
    @rule(pick=st.integers(0, 100), which=st.integers(0, 100))
    def restore_version(self, pick, which):
        self.tick("restore_version")
        edited = [f for f in self.live() if len(f.versions) > 1]
        f = edited[pick % len(edited)]
        listed = self.drive.versions(self.a.id, f.id)  # newest first
        k = which % len(listed)
        data = f.versions[len(f.versions) - 1 - k]
        try:
            self.drive.restore_version(self.a.id, f.id, listed[k].id)
        except QuotaExceeded:
            assert not self.put_fits(f, data)
            return
        assert self.put_fits(f, data)
        f.versions.append(data)

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 100), folder=st.sampled_from(FOLDERS), name=st.sampled_from(NAMES))
    def move(self, pick, folder, name):
        self.tick("move")
        f = self.live()[pick % len(self.live())]
        clash = self.at(folder, name)
        if clash is not None and clash is not f:
            with pytest.raises(Conflict):
                self.drive.move(self.a.id, f.id, name=name, parent_id=self.folder_ids[folder])
            return
        info = self.drive.move(self.a.id, f.id, name=name, parent_id=self.folder_ids[folder])
        assert (info.name, info.parent_id) == (name, self.folder_ids[folder])
        f.folder, f.name = folder, name

    # ---- rules: sharing ----------------------------------------------------------------------

    def _targets(self) -> list[tuple[int, str | None]]:
        """Nodes A may share: the folders below the root, and the live files."""
        return [(self.folder_ids[p], p) for p in FOLDERS[1:]] + [(f.id, None) for f in self.live()]

    @rule(pick=st.integers(0, 100), role=st.sampled_from(("viewer", "editor", None)))
    def share(self, pick, role):
        """Grant B a role on a node, or (None) take B's share on it away."""
        self.tick("share")
        nid, _ = self._targets()[pick % len(self._targets())]
        if role is None:
            if nid in self.shares:
                self.sharing.revoke(self.a.id, nid, self.b.id)
                del self.shares[nid]
            else:
                with pytest.raises(NotFound):
                    self.sharing.revoke(self.a.id, nid, self.b.id)
            return
        _info, created = self.sharing.grant(self.a.id, nid, "b@example.com", role)
        assert created == (nid not in self.shares)
        self.shares[nid] = role

    @precondition(lambda self: self.live())
    @rule(pick=st.integers(0, 100), revoke=st.booleans())
    def link(self, pick, revoke):
        self.tick("link")
        open_links = [t for t, (n, r) in self.links.items() if not r and self.files[n].trashed_at is None]
        if revoke and open_links:
            token = open_links[pick % len(open_links)]
            nid = self.links[token][0]
            self.sharing.revoke_link(self.a.id, nid, self.link_ids[token])
            self.links[token] = (nid, True)
            return
        f = self.live()[pick % len(self.live())]
        info, token = self.sharing.create_link(self.a.id, f.id)
        self.links[token] = (f.id, False)
        self.link_ids[token] = info.id

    @rule(folder=st.sampled_from(FOLDERS), name=st.sampled_from(NAMES), data=contents)
    def b_puts(self, folder, name, data):
        """B writes into A's folder: allowed with an editor share on the folder (or above),
        Forbidden if B only sees it, NotFound if B does not see it. A is charged."""
        self.tick("b_puts")
        fid = self.folder_ids[folder]
        role = self.b_role(fid, _parent(folder))
        old = self.at(folder, name)
        try:
            res = self.drive.put(self.b.id, fid, name, io.BytesIO(data))
        except NotFound:
            assert role is None
            return
        except Forbidden:
            assert role == "viewer"
            return
        except QuotaExceeded:
            assert role == "editor" and not self.put_fits(old, data)
            return
        assert role == "editor" and self.put_fits(old, data)
        assert res.node.owner_id == self.a.id
        if old:
            old.versions.append(data)
        else:
            self.files[res.node.id] = File(res.node.id, folder, name, data)

    # ---- rules: time and maintenance ---------------------------------------------------------

    @rule(steps=st.integers(1, 3))
    def advance_clock(self, steps):
        self.tick("advance_clock")
        clock.advance(steps * STEP_HOURS * HOUR)
        self.hours += steps * STEP_HOURS

    @precondition(lambda self: self.since_job >= JOB_EVERY and self.jobs_run < JOBS)
    @rule(job=st.sampled_from(("gc", "gc", "reconcile", "compact")),
          crash=st.sampled_from((None, None, "gc:after_purge", "gc:after_mark")))
    def maintenance(self, job, crash):
        from jobs.runner import run_job
        self.tick("maintenance")
        self.since_job = 0
        self.jobs_run += 1
        if job == "gc" and crash:
            crashpoints.HOOKS[crash] = self._crash
        try:
            res = run_job(job, self.drive, self.spark_session)
        except Crash:
            self._start()
            res = None
        finally:
            crashpoints.HOOKS.clear()
        if job == "gc":  # trash past retention is purged (before either crash point)
            for f in [f for f in self.files.values() if f.trashed_at is not None
                      and self.hours - f.trashed_at >= RETENTION_DAYS * 24]:
                del self.files[f.id]
                self.shares.pop(f.id, None)
                for token, (nid, _r) in list(self.links.items()):
                    if nid == f.id:
                        del self.links[token]
        if job == "reconcile":
            assert res.stats.get("repaired", 0) == 0, res.stats  # nothing had drifted

    # ---- invariants --------------------------------------------------------------------------

    @invariant()
    def files_read_back(self):
        for f in self.files.values():
            if f.trashed_at is not None:
                with pytest.raises(NotFound):
                    self.drive.get(self.a.id, f.id)
                continue
            info = self.drive.get(self.a.id, f.id)
            assert (info.name, info.parent_id, info.size) == (f.name, self.folder_ids[f.folder], f.size)
            listed = self.drive.versions(self.a.id, f.id)
            assert [v.sha256 for v in listed] == [hashlib.sha256(d).hexdigest() for d in reversed(f.versions)]
            for v, data in zip(listed, reversed(f.versions)):
                _n, _v, chunks = self.drive.open(self.a.id, f.id, version_id=v.id)
                assert b"".join(chunks) == data
        names = {(f.folder, f.name) for f in self.live()}
        for path, fid in self.folder_ids.items():
            items, _ = self.drive.list_children(self.a.id, fid, limit=1000)
            assert {(path, i.name) for i in items if i.kind == "file"} == {n for n in names if n[0] == path}

    @invariant()
    def store_is_consistent(self):
        problems = metadata_problems(self.drive, deep=False)  # fsck + the upload-session rules
        assert not problems, problems
        assert self.drive.account(self.a.id).used_bytes == self.used()
        assert self.drive.account(self.b.id).used_bytes == 0

    @invariant()
    def b_sees_what_is_shared(self):
        for path, fid in self.folder_ids.items():
            if path == "":
                with pytest.raises(NotFound):  # never shared
                    self.drive.get(self.b.id, fid)
                continue
            self._b_check(fid, self.b_role(fid, _parent(path)))
        for f in self.files.values():
            if f.trashed_at is not None:
                self._b_check(f.id, None)
                continue
            role = self.b_role(f.id, f.folder)
            self._b_check(f.id, role)
            if role:
                _n, _v, chunks = self.drive.open(self.b.id, f.id)
                assert b"".join(chunks) == f.versions[-1]
        direct = {n.id for n in self.sharing.shared_with_me(self.b.id)}
        assert direct == {n for n in self.shares if n not in self.files or self.files[n].trashed_at is None}

    def _b_check(self, node_id: int, role: str | None) -> None:
        if role is None:
            with pytest.raises(NotFound):
                self.drive.get(self.b.id, node_id)
        else:
            assert self.drive.get(self.b.id, node_id).role == role

    @invariant()
    def links_read_the_current_content(self):
        for token, (nid, revoked) in self.links.items():
            f = self.files[nid]
            if revoked:
                with pytest.raises(Gone):
                    self.sharing.link_open(token, None)
            elif f.trashed_at is not None:
                with pytest.raises(NotFound):
                    self.sharing.link_open(token, None)
            else:
                _n, _v, chunks = self.sharing.link_open(token, None)
                assert b"".join(chunks) == f.versions[-1]


def test_drive_agrees_with_its_model(db_engine, tmp_path, shared_spark, request):
    """SQLite in CI; on MariaDB a shorter run. ``make soak`` runs both much longer."""
    small = request.node.callspec.params.get("db_engine") == "mariadb"
    DriveModel.engine, DriveModel.shared_spark, DriveModel.tmp = db_engine, shared_spark, tmp_path
    DriveModel.examples = DriveModel.steps = 0
    DriveModel.counts = Counter()
    # Many short examples rather than few long ones: hypothesis enables a random subset of
    # the rules in each example (swarm testing), so coverage grows with the examples.
    examples = figures.scale(3, 20) if small else figures.scale(10, 100)
    steps = figures.scale(15, 60) if small else figures.scale(25, 80)
    try:
        run_state_machine_as_test(DriveModel, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None, database=None,
            suppress_health_check=list(HealthCheck)))
    finally:
        crashpoints.HOOKS.clear()
        clock.reset()
    figures.record("model-based", runs=DriveModel.examples, steps=DriveModel.steps, lost=0,
                   kills=DriveModel.counts["crashes"], db=request.node.callspec.params.get("db_engine"),
                   jobs=DriveModel.counts["maintenance"])
