"""Run a job by name and record it in ``job_runs``.

One run of a job at a time, across processes and machines: the runner holds the database
lease ``job:<name>`` while the job runs (renewed at each progress line). A lease left by a
process on this host that is gone (killed) is taken over at once, and that run is recorded
as ``crashed``; elsewhere a dead holder's lease simply expires.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass

from storage import jobruns
from storage import maintenance as m
from storage.procs import pid_alive
from storage.states import JobStatus

from .catalog import JOBS  # noqa: F401  (the runner's table of jobs, imported from here too)
from .context import Context

log = logging.getLogger(__name__)


class JobBusy(RuntimeError):
    pass


@dataclass
class JobResult:
    run_id: int
    job: str
    status: JobStatus
    stats: dict  # RunStats.to_json(): the common figures under their one name, then the job's own
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
    run_id = jobruns.start(sm, name, dry_run=dry_run)
    ctx = Context(drive=drive, spark=spark, cfg=cfg, dry_run=dry_run, safety=safety,
                  progress=progress_and_renew, options=options or {})
    status, figures = JobStatus.OK, {}
    try:
        mod = importlib.import_module(f"jobs.{name}")
        figures = mod.run(ctx) or {}
    except BaseException as exc:
        status = JobStatus.FAILED
        figures = {"error": f"{type(exc).__name__}: {exc}"}
        log.error("job %s run %s failed: %s", name, run_id, figures["error"])
        raise
    finally:
        stats = jobruns.RunStats.from_json({**figures, "dry_run": dry_run,
                                            "seconds": round(time.monotonic() - t0, 3)})
        jobruns.finish(sm, run_id, status, stats)
        m.release_lease(sm, lease, me)
    return JobResult(run_id, name, status, stats.to_json(), time.monotonic() - t0)
