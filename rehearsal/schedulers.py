"""The scheduler tier: several ``blockdrive scheduler`` processes on one database, one leading
through the ``scheduler`` lease, and the drill that kills the leader in the middle of a job.

:class:`Schedulers` starts, kills and restarts the processes and reads from the database who
leads and which run is in progress. :func:`scheduler_failover` seeds a drive through a real
server, lets the leader start a job, SIGKILLs it, and measures how long the follower takes to
lead, what became of the interrupted run, and when the job next completed.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import secrets
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from harness.server import BIN, start_server, stop_server
from jobs.catalog import JOBS
from storage import jobruns
from storage.db import make_engine, make_sessionmaker
from storage.leases import lease_holder
from storage.states import JobStatus

from .procs import Proc, wait_until

__all__ = ["Schedulers", "Leadership", "most_leaders_at_once", "fsck_deep", "kill_leader_mid_job", "restart_and_watch",
           "scheduler_failover"]

LEASE = "scheduler"
#: What ``Scheduler.lead`` logs when its leadership changes (jobs/scheduler.py).
_CHANGE = re.compile(r"^(\S+ \S+) INFO blockdrive\.scheduler: scheduler (\S+) (leads|follows|resigns)$")


@dataclass
class Leadership:
    """One stretch of time a scheduler process took itself for the leader, from its own log:
    ``start`` when it logged that it leads, ``end`` when it logged that it follows or resigns, was
    killed, or (None) still going."""

    index: int
    pid: int
    start: float
    end: float | None


class Schedulers:
    """``count`` ``blockdrive scheduler`` processes sharing the database and pack storage of
    ``env`` (``BLOCKDRIVE_DATABASE_URL``, ``BLOCKDRIVE_STORAGE_URL`` and any other setting), each
    with its own home and log under ``folder``. Only ``job`` is scheduled, on ``cron`` (six
    fields: every 15 s by default), and the lease is ``lease_seconds`` long, so a failover
    happens in seconds. ``spark_master`` is ``local[2]`` unless given (e.g. ``spark://...``)."""

    def __init__(self, folder: Path, env: dict, count: int = 2, *, lease_seconds: int = 6,
                 job: str = "reconcile", cron: str = "*/15 * * * * *", spark_master: str | None = None):
        if job not in JOBS:
            raise KeyError(f"unknown job {job!r}")
        self.folder, self.count, self.job = Path(folder), count, job
        self.lease_seconds = lease_seconds
        schedule = {f"BLOCKDRIVE_SCHEDULE_{name.upper()}": "" for name in JOBS}
        schedule[f"BLOCKDRIVE_SCHEDULE_{job.upper()}"] = cron
        self.env = {**os.environ, **env, **schedule, "BLOCKDRIVE_JOBS_LEASE_SECONDS": str(lease_seconds),
                    "BLOCKDRIVE_JOBS_SPARK_MASTER": spark_master or "local[2]"}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.procs = [self._proc(i) for i in range(count)]
        self.pids: dict[int, int] = {}  # every pid ever started -> its index
        self.kills: dict[int, float] = {}  # pid -> wall time of its SIGKILL
        self._engine = make_engine(env["BLOCKDRIVE_DATABASE_URL"])
        self._sm = make_sessionmaker(self._engine)

    @property
    def renew_seconds(self) -> int:
        """How often a scheduler renews (or tries to take) the lease: jobs/scheduler.py's interval."""
        return max(1, self.lease_seconds // 3)

    def _proc(self, i: int) -> Proc:
        env = {**self.env, "BLOCKDRIVE_HOME": str(self.folder / f"scheduler{i}")}
        return Proc(f"scheduler{i}", [str(BIN), "scheduler", "--log-level", "info"],
                    self.folder / f"scheduler{i}.log", env=env)

    # ---- processes ------------------------------------------------------------------------

    def start(self) -> None:
        for i in range(self.count):
            self.restart(i)

    def restart(self, i: int) -> None:
        """Start scheduler ``i`` (again, after a kill: a new process, the same home and log)."""
        proc = self.procs[i]
        if proc.alive():
            raise RuntimeError(f"{proc.name} is running")
        proc.start()
        self.pids[proc.pid] = i

    def kill(self, i: int) -> float:
        """SIGKILL scheduler ``i`` and its Spark JVM; the wall time of the kill."""
        t = time.time()
        self.kills[self.procs[i].pid] = t
        self.procs[i].kill()
        return t

    def stop(self) -> None:
        """Stop every scheduler (SIGTERM, then SIGKILL) and close the database connections."""
        for proc in self.procs:
            proc.stop(timeout=20)
        self._engine.dispose()

    # ---- state, from the database ---------------------------------------------------------

    def holder(self) -> str | None:
        """The holder of the ``scheduler`` lease (``host:pid:token``), None if no one holds it."""
        return lease_holder(self._sm, LEASE)

    def leader(self) -> int | None:
        """The index of the scheduler whose process holds the lease (a killed one's lease
        counts until it expires); None if no one holds it or an unknown process does."""
        return self.index_of(self.holder())

    def index_of(self, holder: str | None) -> int | None:
        """The index of the scheduler a lease ``holder`` (``host:pid:token``) names, if ours."""
        pid = holder.split(":")[1] if holder else ""
        return self.pids.get(int(pid)) if pid.isdigit() else None

    def job_holder(self) -> int | None:
        """The index of the scheduler whose run holds the job's lease ``job:<name>``, if any."""
        return self.index_of(lease_holder(self._sm, f"job:{self.job}"))

    def runs(self, limit: int = 10) -> list[dict]:
        """The job's newest runs, newest first (``job_runs``: id, status, started_at, ...)."""
        return jobruns.history(self._sm, limit, self.job)

    def running(self) -> dict | None:
        """The job's run in progress (a row ``running``), if any."""
        return next((r for r in self.runs(3) if r["status"] == JobStatus.RUNNING), None)

    # ---- state, from the logs -------------------------------------------------------------

    def changes(self, i: int) -> list[tuple[float, int, str]]:
        """The leadership changes scheduler ``i``'s processes logged: (wall time, pid, ``leads``,
        ``follows`` or ``resigns``), oldest first. A process logs one at its first try."""
        log = self.procs[i].log
        out = []
        for line in (log.read_text(errors="replace") if log.exists() else "").splitlines():
            found = _CHANGE.match(line)
            if found:
                stamp, holder, change = found.groups()
                t = dt.datetime.strptime(stamp, "%Y-%m-%d %H:%M:%S,%f").timestamp()
                out.append((t, int(holder.split(":")[1]), change))
        return out

    def leaderships(self, until: float | None = None) -> list[Leadership]:
        """Each stretch a process took itself for the leader, from the changes it logged; a
        stretch still open when its process was killed ends at the kill. With ``until`` (a
        wall time), only what happened before it, stretches still open then ending there."""
        out = []
        for i in range(self.count):
            current: Leadership | None = None
            for t, pid, change in self.changes(i):
                if current is not None and current.pid != pid:  # that process died leading
                    current.end = self.kills.get(current.pid, t)
                    out.append(current)
                    current = None
                if change == "leads" and current is None:
                    current = Leadership(i, pid, t, None)
                elif change != "leads" and current is not None:
                    current.end = t
                    out.append(current)
                    current = None
            if current is not None:
                current.end = self.kills.get(current.pid)
                out.append(current)
        if until is None:
            return out
        return [Leadership(s.index, s.pid, s.start, until if s.end is None else min(s.end, until))
                for s in out if s.start < until]


def most_leaders_at_once(stretches: list[Leadership]) -> int:
    """The largest number of processes that took themselves for the leader at one moment."""
    events = sorted([(s.start, 1) for s in stretches] + [(s.end, -1) for s in stretches if s.end is not None],
                    key=lambda e: (e[0], e[1]))  # an end and a start at one instant do not overlap
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


class _Sampler(threading.Thread):
    """Reads the lease holder from the database every ``interval`` seconds: (time, index)."""

    def __init__(self, scheds: Schedulers, interval: float = 0.25):
        super().__init__(daemon=True)
        self.scheds, self.interval = scheds, interval
        self.samples: list[tuple[float, int | None, str | None]] = []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            holder = self.scheds.holder()
            self.samples.append((time.time(), self.scheds.index_of(holder), holder))
            self.halt.wait(self.interval)

    def holders_in_order(self, since: float = 0) -> list[int | None]:
        """The distinct holders (indices) in the order they held the lease from wall time
        ``since`` on, gaps left out."""
        seen: list[int | None] = []
        for t, index, holder in self.samples:
            if t >= since and holder is not None and (not seen or seen[-1] != index):
                seen.append(index)
        return seen


def _seed(server, files: int) -> int:
    """Upload ``files`` files of random bytes (a few identical), delete a few: work for any job."""
    user = server.user()
    folder = user.mkdir(user.root, "rehearsal")
    same = secrets.token_bytes(200 * 1024)
    for n in range(files):
        data = same if n % 5 == 0 else secrets.token_bytes(64 * 1024 + n * 4096)
        r = user.upload(folder["id"], f"f{n}.bin", data)
        assert r.status_code in (200, 201), r.text
        if n % 7 == 3:
            assert user.delete(f"/api/v1/nodes/{r.json()['id']}").status_code in (200, 204)
    return files


def fsck_deep(env: dict) -> tuple[bool, str]:
    """``blockdrive fsck --deep`` with ``env``: (clean, its output)."""
    out = subprocess.run([str(BIN), "fsck", "--deep"], env=env, capture_output=True, text=True, timeout=600)
    return out.returncode == 0, (out.stdout + out.stderr).strip()


def kill_leader_mid_job(scheds: Schedulers, wait: float) -> dict:
    """Wait until the leader's run of the job is in progress, SIGKILL the leader, and wait until
    the other leads and the job's next run ends; the figures of that."""
    job = scheds.job
    wait_until(lambda: scheds.leader() is not None, wait, "a scheduler leads")
    seen: dict = {}

    def run_in_progress() -> bool:
        seen["run"] = scheds.running()
        return seen["run"] is not None
    first = wait_until(run_in_progress, wait, f"a run of {job} starts", interval=0.2)
    victim, interrupted = scheds.leader(), seen["run"]
    runner = scheds.job_holder()
    t_kill = scheds.kill(victim)
    took = wait_until(lambda: scheds.leader() not in (None, victim), wait, "the other scheduler leads", interval=0.1)
    survivor = scheds.leader()

    def next_run_ended() -> bool:
        return any(r["id"] > interrupted["id"] and r["status"] != JobStatus.RUNNING for r in scheds.runs())
    wait_until(next_run_ended, wait, f"the next run of {job} ends", interval=0.5)
    ended = time.time() - t_kill
    runs = scheds.runs(20)
    record = next(r for r in runs if r["id"] == interrupted["id"])
    following = min((r for r in runs if r["id"] > interrupted["id"]), key=lambda r: r["id"])
    return {"first_run_started_after_s": round(first, 1), "killed_leader": victim, "killed_at": t_kill,
            "victim_held_job_lease": runner == victim, "new_leader": survivor, "took_over": survivor != victim,
            "takeover_s": round(took, 2), "takeover_bound_s": scheds.lease_seconds + scheds.renew_seconds,
            "interrupted_run": {k: record[k] for k in ("id", "status", "started_at", "finished_at")},
            "interrupted_recorded_crashed": record["status"] == JobStatus.CRASHED,
            "next_run": {"id": following["id"], "status": following["status"],
                         "seconds": following["stats"].get("seconds")},
            "next_run_completed": following["status"] == JobStatus.OK, "completed_after_kill_s": round(ended, 1)}


def restart_and_watch(scheds: Schedulers, victim: int, wait: float) -> dict:
    """Restart the killed scheduler and watch it for two lease times: it must follow."""
    survivor = scheds.leader()
    scheds.restart(victim)
    pid = scheds.procs[victim].pid
    wait_until(lambda: any(p == pid for _, p, _ in scheds.changes(victim)), wait, "the restarted scheduler reports in")
    time.sleep(2 * scheds.lease_seconds)  # it tries the lease every renew_seconds meanwhile
    led = any(s.pid == pid for s in scheds.leaderships())
    after = scheds.leader()
    return {"restarted_led": led, "leader_after_restart": after, "restarted_follows": not led and after == survivor}


def scheduler_failover(folder: Path, database_url: str, storage_url: str, quick: bool = True,
                       spark_master: str | None = None, job: str = "reconcile", lease_seconds: int = 6) -> dict:
    """Kill the leading scheduler in the middle of ``job`` and measure the failover.

    Seeds a drive through a real server (``database_url``, ``storage_url``; the database must be
    empty or a drive's), starts two schedulers, waits until the leader's run of ``job`` is in
    progress, SIGKILLs the leader, then waits until the other leads, the interrupted run is
    recorded and the job completes on its next run; restarts the killed scheduler and watches
    it follow; runs ``fsck --deep``. Returns the figures; the pass conditions are booleans."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "server").mkdir(exist_ok=True)
    env = {"BLOCKDRIVE_DATABASE_URL": database_url, "BLOCKDRIVE_STORAGE_URL": storage_url}
    proc, server = start_server(folder / "server", database_url, workers=1, extra_env=env)
    try:
        seeded = _seed(server, 20 if quick else 200)
    finally:
        stop_server(proc)  # the schedulers need the cores more than an idle server
    wait = 300 if quick else 600
    scheds = Schedulers(folder / "schedulers", env, lease_seconds=lease_seconds, job=job, spark_master=spark_master)
    sampler = _Sampler(scheds)
    figures: dict = {"job": job, "files_seeded": seeded, "lease_seconds": lease_seconds,
                     "renew_seconds": scheds.renew_seconds, "spark_master": spark_master or "local[2]"}
    try:
        scheds.start()
        sampler.start()
        figures.update(kill_leader_mid_job(scheds, wait))
        figures.update(restart_and_watch(scheds, figures["killed_leader"], wait))
    finally:
        watched = time.time()  # stopping hands the lease around: not part of the drill
        sampler.halt.set()
        sampler.join(10)
        scheds.stop()
    stretches = scheds.leaderships(until=watched)
    figures["leaderships"] = [{"scheduler": s.index, "pid": s.pid, "seconds": round(s.end - s.start, 1)}
                              for s in stretches]
    figures["most_leaders_at_once"] = most_leaders_at_once(stretches)
    figures["lease_samples"] = len(sampler.samples)
    figures["holders_in_order"] = sampler.holders_in_order()
    figures["holders_after_kill"] = sampler.holders_in_order(since=figures.pop("killed_at"))
    figures["unknown_holder_samples"] = sum(1 for _, i, h in sampler.samples if h is not None and i is None)
    figures["fsck_clean"], figures["fsck"] = fsck_deep({**server.env, **env})
    return figures
