"""Run a job by name and record it in ``job_runs``.

One run of a job at a time, across processes and machines: the runner holds the database
lease ``job:<name>`` while the job runs (renewed at each progress line). A lease left by a
process on this host that is gone (killed) is taken over at once, and that run is recorded
as ``crashed``; elsewhere a dead holder's lease simply expires.
"""

from __future__ import annotations

import importlib
import json
import os
import socket
import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from storage import maintenance as m
from storage.clock import now
from storage.models import JobRun
from storage.procs import pid_alive

from .catalog import JOBS  # noqa: F401  (the runner's table of jobs, imported from here too)
from .context import Context, dumps


class JobBusy(RuntimeError):
    pass


@dataclass
class JobResult:
    run_id: int
    job: str
    status: str
    stats: dict
    seconds: float


def holder_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _stale_local(holder: str | None) -> bool:
    if not holder:
        return False
    host, _, rest = holder.partition(":")
    pid = rest.split(":", 1)[0]
    return host == socket.gethostname() and pid.isdigit() and not pid_alive(int(pid))


def run_job(name: str, drive, spark, cfg=None, *, dry_run: bool = False, progress=None,
            safety: m.Safety = m.SAFE, options: dict | None = None) -> JobResult:
    if name not in JOBS:
        raise KeyError(f"unknown job {name!r}; known: {', '.join(JOBS)}")
    cfg = cfg or drive.config
    sm = drive.sm
    lease, me = f"job:{name}", holder_id()
    ttl = cfg["jobs"]["lease_seconds"]
    holder = m.lease_holder(sm, lease)
    if _stale_local(holder):
        m.release_lease(sm, lease, holder)
    if not m.acquire_lease(sm, lease, me, ttl):
        raise JobBusy(f"job {name} is already running ({m.lease_holder(sm, lease)})")
    say = progress or (lambda msg: None)

    def progress_and_renew(msg: str) -> None:
        m.acquire_lease(sm, lease, me, ttl)
        say(msg)

    t0 = time.monotonic()
    with sm() as s, s.begin():
        # We hold the lease: a run still "running" is one whose process died.
        s.execute(sa.update(JobRun).where(JobRun.job == name, JobRun.status == "running")
                  .values(status="crashed", finished_at=now()))
        jr = JobRun(job=name, started_at=now(), status="running", stats=dumps({"dry_run": dry_run}))
        s.add(jr)
        s.flush()
        run_id = jr.id
    ctx = Context(drive=drive, spark=spark, cfg=cfg, dry_run=dry_run, safety=safety,
                  progress=progress_and_renew, options=options or {})
    status, stats = "ok", {}
    try:
        mod = importlib.import_module(f"jobs.{name}")
        stats = mod.run(ctx) or {}
    except BaseException as exc:
        status = "failed"
        stats = {"error": f"{type(exc).__name__}: {exc}"}
        raise
    finally:
        stats = {"dry_run": dry_run, **stats, "seconds": round(time.monotonic() - t0, 3)}
        with sm() as s, s.begin():
            s.execute(sa.update(JobRun).where(JobRun.id == run_id)
                      .values(status=status, finished_at=now(), stats=dumps(stats)))
        m.release_lease(sm, lease, me)
    return JobResult(run_id, name, status, stats, time.monotonic() - t0)


def history(sm, limit: int = 20, job: str | None = None) -> list[dict]:
    with sm() as s:
        q = sa.select(JobRun).order_by(JobRun.id.desc()).limit(limit)
        if job:
            q = q.where(JobRun.job == job)
        return [{"id": r.id, "job": r.job, "status": r.status, "started_at": r.started_at.isoformat(),
                 "finished_at": r.finished_at.isoformat() if r.finished_at else None,
                 "stats": json.loads(r.stats or "{}")} for r in s.execute(q).scalars()]
