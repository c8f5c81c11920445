"""The crash-point matrix: every named durability boundary of storage/crashpoints.py, reached by
a real operation in a process of its own that is SIGKILLed right there; then the restart, then
the invariants (tests/reliability/invariants.py).

- ``put:*``: the ``blockdrive put`` command (new files, new versions, content that dedups);
- ``tus:*``: a resumable upload sent in appends, killed at the n-th append's boundary, then
  resumed from the session's offset as a tus client does (a HEAD saying every byte arrived
  means the file exists);
- ``block:*``: delta sync (missing, PUT each block, commit), killed at the n-th block;
- ``shared:*``: small files put by concurrent threads of one process, so their blocks share
  the open pack and its fsyncs and their commits share transactions (``group:*``), killed when
  the n-th request (or group) reaches the point: the files acknowledged before (committed into
  the same unfinished pack) must read back;
- ``gc:*``, ``compact:*``, ``tier:*``, ``pack:*``: the job, on a store seeded with work for
  every step (expired trash, an abandoned tus upload, a crashed put, small packs, retired
  packs past the grace period); the restart is the next run of the job.

After every kill and restart: every acknowledged version reads back byte-identical and a deep
fsck is clean. After all runs of a family: time passes and gc and compact run (``settle``),
and no orphan older than the grace period may be left. Losses are counted, not stopped at;
the figures row says points x runs, kills and losses, and losses must be 0.

The points of one family share a store, so the debris of one kill meets the next one.
Job subprocesses attach to the test session's Spark JVM (see driver.py); the standalone job
command with a JVM of its own is killed by tests/unit/jobs/test_kill.py (at every step in a soak).
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from storage import crashpoints
from storage.clock import now
from storage.config import load_config
from storage.db import make_engine, migrate
from storage.drive import Drive
from storage.errors import BlockdriveError
from storage.models import Block, Pack
from storage.states import PackState
from storage.uploads import Uploads
from tests.conftest import rand
from tests.e2e.conftest import own_mysql_database
from tests.reliability import figures
from tests.reliability.driver import block_upload, tus_upload
from tests.reliability.invariants import age_store, check_store, settle

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent / "blockdrive"
GRACE = 600
RUNS = figures.scale(3, 25)
CHUNK = 100_000  # bytes per tus append

FAMILIES = {
    "put": ["put:pack_written", "put:pack_closed", "put:before_commit", "put:after_commit"],
    "tus": ["tus:chunk_stored", "tus:chunk_committed", "tus:after_finish"],
    "block": ["block:stored", "block:after_commit"],
    "shared": ["shared:appended", "shared:synced", "group:before_commit", "group:after_commit"],
    "gc": ["gc:after_purge", "gc:after_expire", "gc:after_mark", "gc:after_sweep", "gc:after_abandon"],
    # pack:* first: a round's retired packs are deleted by the first run that gets that far
    "compact": ["pack:row_deleted", "pack:file_deleted", "compact:after_delete", "compact:after_write",
                "compact:after_switch"],
    "tier": ["tier:after_delete", "tier:after_copy", "tier:after_switch"],
}
JOB_OF = {"pack": "compact"}

_tally = {"runs": 0, "kills": 0, "lost": 0, "problems": 0, "orphans": 0, "points": set(), "mariadb_runs": 0}


@pytest.fixture(scope="module", autouse=True)
def _figures():
    yield
    if _tally["runs"] or _tally["mariadb_runs"]:
        figures.record("crash matrix", runs=_tally["runs"] + _tally["mariadb_runs"], kills=_tally["kills"],
                       lost=_tally["lost"],
                       points=len(_tally["points"]), runs_per_point=RUNS, problems=_tally["problems"],
                       old_orphans=_tally["orphans"], mariadb_runs=_tally["mariadb_runs"])


def test_matrix_covers_every_point():
    named = [p for points in FAMILIES.values() for p in points]
    assert sorted(named) == sorted(crashpoints.POINTS), \
        "crash points without a scenario (or scenarios of no point): " \
        f"{sorted(set(crashpoints.POINTS) ^ set(named))}"


class Store:
    """A blockdrive home + SQLite database, the config its subprocesses read, one user, and
    what the test knows was acknowledged."""

    def __init__(self, tmp: Path, spark_env: dict, db_url: str | None = None):
        self.tmp = tmp
        self.toml = tmp / "blockdrive.toml"
        self.toml.write_text("\n".join([
            "[storage]", f'home = "{tmp / "home"}"', f'cold_url = "{(tmp / "cold").as_uri()}"',
            "chunk_min = 16384", "chunk_avg = 65536", "chunk_max = 262144",
            "group_commit = true",  # the group:* points, on MariaDB too (its "auto" is off)
            "[security]", "scrypt_n = 1024",
            "[server]", f"upload_expire_seconds = {GRACE}",
            "[trash]", "retention_days = 0",
            "[gc]", f"grace_seconds = {GRACE}",
            "[jobs]", f"open_pack_grace_seconds = {GRACE}", "tier_after_days = 0", "shuffle_partitions = 2",
            f"target_pack_bytes = {1024 * 1024}", "lease_seconds = 600",
            *(["[database]", f'url = "{db_url}"'] if db_url else []), ""]))
        self.cfg = load_config(self.toml, env={})
        engine = make_engine(self.cfg.database_url)
        migrate(engine)
        # This process seeds the layouts the jobs act on (a pack per upload) and ages the store
        # under itself; the killed subprocesses use the config as it is, shared packs included.
        self.drive = Drive(load_config(self.toml, env={}, overrides={"storage": {"shared_pack_request_bytes": 0}}),
                           engine=engine)
        self.email = "crash@example.com"
        self.user = self.drive.create_user(self.email, "password123")[0]
        self.uid, self.root = self.user.id, self.user.root_id
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("BLOCKDRIVE_")}
        self.env.update(spark_env, BLOCKDRIVE_CONFIG=str(self.toml), PYTHONPATH=str(ROOT))
        self.acked: dict[tuple[int, int, int], str] = {}
        self.files: dict[str, bytes] = {}  # name -> content of the latest acknowledged version
        self.lost: set[str] = set()
        self.problems: list[str] = []
        self.seq = 0

    def fresh(self) -> int:
        """A number not used before in this store: seeds random content no upload had."""
        self.seq += 1
        return self.seq

    def name(self, stem: str) -> str:
        return f"{stem}{self.fresh()}.bin"

    def ack(self, name: str, node_id: int, version_id: int, data: bytes) -> None:
        self.acked[(self.uid, node_id, version_id)] = hashlib.sha256(data).hexdigest()
        self.files[name] = data

    def put(self, name: str, data: bytes) -> None:
        res = self.drive.put(self.uid, self.root, name, io.BytesIO(data))
        self.ack(name, res.node.id, res.version_id, data)

    def local(self, data: bytes) -> Path:
        p = self.tmp / "upload.bin"
        p.write_bytes(data)
        return p

    def run(self, args: list[str], crash: str | None = None) -> subprocess.CompletedProcess:
        env = dict(self.env)
        if crash:
            env[crashpoints.ENV] = crash
        return subprocess.run(args, env=env, cwd=ROOT, capture_output=True, text=True, timeout=600)

    def kill(self, args: list[str], crash: str) -> subprocess.CompletedProcess:
        p = self.run(args, crash)
        if p.returncode != -9:
            with self.drive.sm() as s:
                packs = s.execute(sa.select(Pack.id, Pack.state, Pack.created_at, Pack.retired_at)).all()
            raise AssertionError(f"not killed at {crash} (exit {p.returncode}):\n{p.stdout}\n{p.stderr[-3000:]}\n"
                                 f"packs at {now()}: " + "\n".join(map(str, packs)))
        _tally["kills"] += 1
        return p

    def check(self, where: str, grace: float | None = None, at=None):
        f = check_store(self.drive, self.acked, grace_seconds=grace, at=at)
        self.lost.update(f.lost)
        self.problems += [f"after {where}: {p}" for p in f.problems]
        return f


def _driver(*args) -> list[str]:
    return [sys.executable, "-m", "tests.reliability.driver", *map(str, args)]


# ---- scenarios: one kill and its restart ---------------------------------------------------------

def put_run(st: Store, point: str, i: int) -> None:
    """A new file, a new version of an existing file, or a file sharing blocks with one."""
    kind = i % 3
    if kind == 1 and st.files:
        name = sorted(st.files)[i % len(st.files)]
        old = st.files[name]
        data = old[:len(old) // 2] + rand(50_000, st.fresh()) + old[len(old) // 2:]
    elif kind == 2 and st.files:
        name = st.name("dedup")
        data = st.files[sorted(st.files)[0]] + rand(120_000, st.fresh())
    else:
        name = st.name("put")
        data = rand(150_000 + 37_000 * (i % 7), st.fresh())
    cmd = [str(BIN), "put", str(st.local(data)), f"/{name}", "--user", st.email, "--json"]
    st.kill(cmd, point)
    st.check(f"{point} run {i} (killed)")
    p = st.run(cmd)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    st.ack(name, out["id"], out["version"], data)


def tus_run(st: Store, point: str, i: int) -> None:
    name = st.name("tus")
    data = rand(310_000 + 45_000 * (i % 4), st.fresh())
    appends = -(-len(data) // CHUNK)
    nth = 1 if point == "tus:after_finish" else (1, 2, appends)[i % 3]
    p = st.kill(_driver("tus", st.email, name, st.local(data), CHUNK), f"{point}@{nth}")
    sid = json.loads(p.stdout.splitlines()[0])["session"]
    st.check(f"{point}@{nth} run {i} (killed)")
    # The client resumes: HEAD for the offset, PATCH from there. An offset equal to the
    # length means the server has every byte: the upload is complete and the file exists.
    info = tus_upload(st.drive, st.uid, name, data, CHUNK, sid=sid)
    try:
        node = st.drive.resolve(st.uid, f"/{name}")
    except BlockdriveError as exc:
        st.lost.add(f"tus upload {sid} ({point}@{nth}): session {info.state} at offset {info.offset} "
                    f"of {info.length}, but /{name}: {exc}")
        return
    if node.sha256 != hashlib.sha256(data).hexdigest():
        st.lost.add(f"tus upload {sid} ({point}@{nth}): /{name} has SHA-256 {node.sha256}")
        return
    st.ack(name, node.id, node.version_id, data)


def block_run(st: Store, point: str, i: int) -> None:
    name = st.name("blk")
    data = rand(260_000 + 30_000 * (i % 5), st.fresh())
    if i % 2 and st.files:  # half the time, blocks the user already has are not sent again
        data = st.files[sorted(st.files)[-1]][:150_000] + data
    nth = 1 if point == "block:after_commit" else 1 + i % 3
    st.kill(_driver("blocks", st.email, name, st.local(data)), f"{point}@{nth}")
    st.check(f"{point}@{nth} run {i} (killed)")
    res = block_upload(st.drive, st.uid, name, data)
    st.ack(name, res.node.id, res.version_id, data)


def shared_run(st: Store, point: str, i: int) -> None:
    """Six small files on three threads of one process, killed at the n-th request's point;
    then the ones not acknowledged are put again, as their clients would."""
    files = {st.name("grp"): rand(20_000 + 9_000 * k, st.fresh()) for k in range(6)}
    paths = []
    for name, data in files.items():
        path = st.tmp / name
        path.write_bytes(data)
        paths.append(path)
    # a group commits one to three of the six (one per thread), so a group point is reached twice at least
    nth = (1, 2)[i % 2] if point.startswith("group:") else (1, 3, 5)[i % 3]
    proc = st.kill(_driver("puts", st.email, 3, *paths), f"{point}@{nth}")
    acked = [json.loads(line) for line in proc.stdout.splitlines()]
    for out in acked:
        st.ack(out["name"], out["node"], out["version"], files.pop(out["name"]))
    if nth == 5:
        # A pool thread takes its next file only once its last one was acknowledged, so two
        # were before the fifth request got this far; their blocks are in the pack the kill
        # left open, which is what this scenario is for.
        assert len(acked) >= 2, proc.stdout
        with st.drive.sm() as s:
            in_open = s.execute(sa.select(sa.func.count()).select_from(Block).join(Pack, Pack.id == Block.pack_id)
                                .where(Pack.state == PackState.OPEN)).scalar_one()
        assert in_open > 0, "no acknowledged block in an unfinished shared pack"
    st.check(f"{point}@{nth} run {i} (killed)")
    for name, data in files.items():
        st.put(name, data)


def seed_job_work(st: Store) -> None:
    """Work for every step of gc, compact and tier: new small packs, an edit, a file deleted
    (trash retention is 0), an abandoned tus upload, a put that crashed before its commit;
    then the grace period passes."""
    for _ in range(2):
        name = st.name("job")
        st.put(name, rand(90_000, st.seq))
    names = sorted(st.files)
    edit = names[st.seq % len(names)]
    st.put(edit, st.files[edit][:40_000] + rand(30_000, st.seq))
    victim = names[(st.seq + 1) % len(names)]
    node = st.drive.resolve(st.uid, f"/{victim}")
    st.drive.delete(st.uid, node.id)
    st.files.pop(victim)
    for key in [k for k in st.acked if k[1] == node.id]:
        st.acked.pop(key)
    up = Uploads(st.drive)
    sid = up.create(st.uid, st.root, st.name("abandoned"), 300_000).id
    up.append(st.uid, sid, 0, io.BytesIO(rand(130_000, st.seq)))

    def crash():
        raise RuntimeError("crash before commit")
    crashpoints.HOOKS["put:before_commit"] = crash
    try:
        with pytest.raises(RuntimeError):
            st.drive.put(st.uid, st.root, st.name("crashed"), io.BytesIO(rand(70_000, st.seq)))
    finally:
        crashpoints.HOOKS.pop("put:before_commit")
    age_store(st.drive, GRACE + 5)


def job_round(st: Store, family: str, i: int, spark, runs: Counter) -> None:
    """One round of a job family: seed work, then kill the job at each point in turn (each
    run is the restart of the one before: it picks up what the killed run left), then a run
    that completes."""
    from jobs.runner import run_job
    job = JOB_OF.get(family, family)
    seed_job_work(st)
    for point in FAMILIES[family]:
        nth = 1 + i % 2 if point == "pack:file_deleted" else 1
        st.kill(_driver("job", job), f"{point}@{nth}")
        st.check(f"{point}@{nth} run {i} (killed)")
        runs[point] += 1
    res = run_job(job, st.drive, spark, st.cfg)
    assert res.status == "ok", res.stats
    st.check(f"{family} round {i} (restarted)")


# ---- the matrix ----------------------------------------------------------------------------------

@pytest.mark.parametrize("family", list(FAMILIES))
def test_crash_matrix(family, tmp_path, spark, spark_env, shared_spark):
    st = Store(tmp_path, spark_env)
    for n in range(4):
        st.put(st.name("seed"), rand(120_000 + 50_000 * n, st.fresh()))
    if family == "compact":
        # packs retired a grace period ago, so the first kill at pack:* finds some to delete
        from jobs.runner import run_job
        run_job("compact", st.drive, spark, st.cfg)
        age_store(st.drive, GRACE + 5)
    runs = Counter()
    for i in range(RUNS):
        if family in ("gc", "compact", "tier"):
            if shared_spark.recycle():  # killed job clients fill the JVM they attach to
                spark = shared_spark.session
                st.env.update(shared_spark.env())
            job_round(st, family, i, spark, runs)
            continue
        for point in FAMILIES[family]:
            {"put": put_run, "tus": tus_run, "block": block_run, "shared": shared_run}[family](st, point, i)
            st.check(f"{point} run {i} (restarted)")
            runs[point] += 1
    # Time passes, gc and compact run: what the crashes left behind must be gone.
    at = settle(st.drive, spark, st.cfg, GRACE)
    f = st.check("settle", grace=GRACE, at=at)
    _tally["runs"] += sum(runs.values())
    _tally["points"].update(runs)
    _tally["lost"] += len(st.lost)
    _tally["problems"] += len(st.problems)
    _tally["orphans"] += len(f.orphans)
    st.drive.close()
    assert not st.lost, "acknowledged data lost:\n" + "\n".join(sorted(st.lost))
    assert not st.problems, "inconsistent store:\n" + "\n".join(st.problems[:50])
    assert not f.orphans, "orphans older than the grace period after gc and compact:\n" + "\n".join(f.orphans[:50])
    assert min(runs.values()) >= RUNS and set(runs) == set(FAMILIES[family])


@pytest.mark.integration
def test_crash_points_on_mariadb(tmp_path, spark, spark_env, mysql_url):
    """A handful of the matrix on MariaDB (row locks and transactions of its own): one run of
    each put and tus point, then settle and the same invariants."""
    with own_mysql_database(mysql_url) as url:
        st = Store(tmp_path, spark_env, db_url=url)
        for n in range(3):
            st.put(st.name("seed"), rand(120_000 + 50_000 * n, st.fresh()))
        points = FAMILIES["put"] + FAMILIES["tus"]
        for i, point in enumerate(points):
            (put_run if point.startswith("put:") else tus_run)(st, point, i)
            st.check(f"{point} on MariaDB (restarted)")
        at = settle(st.drive, spark, st.cfg, GRACE)
        f = st.check("settle on MariaDB", grace=GRACE, at=at)
        st.drive.close()
    _tally["mariadb_runs"] += len(points)
    _tally["lost"] += len(st.lost)
    _tally["problems"] += len(st.problems)
    _tally["orphans"] += len(f.orphans)
    assert not st.lost, "acknowledged data lost:\n" + "\n".join(sorted(st.lost))
    assert not st.problems, "inconsistent store:\n" + "\n".join(st.problems[:50])
    assert not f.orphans, "old orphans after gc and compact:\n" + "\n".join(f.orphans[:50])
