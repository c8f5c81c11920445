"""Run a job by name and record it in ``job_runs``.

One run of a job at a time, across processes and machines: the runner holds the database
lease ``job:<name>`` while the job runs (renewed every ``lease_seconds / 3`` by a thread of its
own, so a step that reports no progress for longer than the lease cannot let it lapse while
the job still runs). A lease left by a
process on this host that is gone (killed) is taken over at once, and that run is recorded
as ``crashed``; elsewhere a dead holder's lease simply expires.
"""

from __future__ import annotations

import importlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
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


@contextmanager
def kept_lease(sm, lease: str, holder: str, ttl: float) -> Iterator[None]:
    """Renew ``lease`` (held by ``holder``) every ``ttl / 3`` seconds while the block runs. A
    renewal that fails is logged and tried again at the next beat; if the process dies, the
    renewals stop with it and the lease expires."""
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(max(ttl / 3, 0.1)):
            try:
                if not m.acquire_lease(sm, lease, holder, ttl):
                    log.warning("lease %s was taken by %s while %s held it", lease, m.lease_holder(sm, lease), holder)
            except Exception:  # noqa: BLE001 - the database may be back at the next beat
                log.exception("lease %s: renewal failed", lease)

    keeper = threading.Thread(target=renew, name=f"lease {lease}", daemon=True)
    keeper.start()
    try:
        yield
    finally:
        stop.set()
        keeper.join()


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
    t0 = time.monotonic()
    run_id = jobruns.start(sm, name, dry_run=dry_run)
    ctx = Context(drive=drive, spark=spark, cfg=cfg, dry_run=dry_run, safety=safety,
                  progress=progress or (lambda msg: None), options=options or {})
    status, figures = JobStatus.OK, {}
    try:
        mod = importlib.import_module(f"jobs.{name}")
        with kept_lease(sm, lease, me, ttl):
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
