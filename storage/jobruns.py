"""The record of job runs (``job_runs``): one row per run, written when it starts and when it ends.

The job runner calls :func:`start` while it holds the job's lease, so a row still ``running``
then belongs to a process that died: :func:`start` marks it ``crashed``. :func:`finish` stores
the run's status and its :class:`RunStats` as JSON; :func:`history` reads the newest runs back.

Every run's stats share a few figures, each under one key: ``dry_run``, ``seconds``,
``bytes_freed`` (storage this run released: blocks swept, pack files deleted) and ``error``.
A job's own figures (``packs_tiered``, ``refcount_drift``, ...) sit beside them. Runs recorded
before ``bytes_freed`` had one name used ``swept_bytes``, ``bytes_deleted`` or ``freed_bytes``:
:meth:`RunStats.from_json` reads those too.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .models import JobRun
from .states import JobStatus


BYTES_FREED = "bytes_freed"
#: How runs recorded before :data:`BYTES_FREED` spelled it; read, never written.
OLD_BYTES_FREED = ("swept_bytes", "bytes_deleted", "freed_bytes")
#: The figures that count what a run went through, by job, in order of preference: the
#: ``rows`` column of the run history shows the first one present.
ROWS_KEYS = ("rows", "blocks", "refcount_drift", "packs_verified", "packs_checked", "scanned")
_COMMON = ("dry_run", "seconds", BYTES_FREED, "error")


@dataclass
class RunStats:
    """What one job run records: the figures every job shares, typed, and the job's own."""

    dry_run: bool = False
    seconds: float | None = None
    bytes_freed: int | None = None
    error: str | None = None
    figures: dict = field(default_factory=dict)

    @classmethod
    def from_json(cls, stats: dict) -> RunStats:
        """The stats of a run as stored (or as a job returned them), old spellings included."""
        figures = {k: v for k, v in stats.items() if k not in _COMMON and k not in OLD_BYTES_FREED}
        freed = stats.get(BYTES_FREED)
        if freed is None:
            old = [stats[k] for k in OLD_BYTES_FREED if stats.get(k) is not None]
            freed = sum(old) if old else None
        return cls(dry_run=bool(stats.get("dry_run", False)), seconds=stats.get("seconds"),
                   bytes_freed=freed, error=stats.get("error"), figures=figures)

    def to_json(self) -> dict:
        """The flat mapping ``job_runs.stats`` stores: the common figures that are known, then
        the job's own."""
        common = {"dry_run": self.dry_run, "seconds": self.seconds, BYTES_FREED: self.bytes_freed,
                  "error": self.error}
        return {**{k: v for k, v in common.items() if v is not None or k == "dry_run"}, **self.figures}

    @property
    def rows(self) -> int | None:
        """How many rows the run went through, by the first of :data:`ROWS_KEYS` it reported."""
        return next((self.figures[k] for k in ROWS_KEYS if isinstance(self.figures.get(k), int)), None)


def dumps(stats: dict) -> str:
    """A run's stats as the JSON ``job_runs.stats`` holds (keys sorted; dates as strings)."""
    return json.dumps(stats, default=str, sort_keys=True)


def start(sm: sessionmaker[Session], job: str, *, dry_run: bool = False) -> int:
    """Record that ``job`` starts now and return the run's id. The caller holds the job's lease,
    so an earlier run of ``job`` still ``running`` is one whose process died: it becomes ``crashed``."""
    with sm() as s, s.begin():
        s.execute(sa.update(JobRun).where(JobRun.job == job, JobRun.status == JobStatus.RUNNING)
                  .values(status=JobStatus.CRASHED, finished_at=now()))
        run = JobRun(job=job, started_at=now(), status=JobStatus.RUNNING, stats=dumps({"dry_run": dry_run}))
        s.add(run)
        s.flush()
        return run.id


def finish(sm: sessionmaker[Session], run_id: int, status: JobStatus, stats: RunStats) -> None:
    """Record that run ``run_id`` ended now with ``status`` and ``stats``."""
    with sm() as s, s.begin():
        s.execute(sa.update(JobRun).where(JobRun.id == run_id)
                  .values(status=status, finished_at=now(), stats=dumps(stats.to_json())))


def _iso(t: dt.datetime | None) -> str | None:
    return t.isoformat() if t is not None else None


def history(sm: sessionmaker[Session], limit: int = 20, job: str | None = None) -> list[dict]:
    """The newest ``limit`` runs (of ``job`` only, if given), newest first, stats decoded (bytes
    freed under :data:`BYTES_FREED` whichever way the run spelled it)."""
    with sm() as s:
        q = sa.select(JobRun).order_by(JobRun.id.desc()).limit(limit)
        if job:
            q = q.where(JobRun.job == job)
        return [{"id": r.id, "job": r.job, "status": r.status, "started_at": r.started_at.isoformat(),
                 "finished_at": _iso(r.finished_at), "stats": RunStats.from_json(json.loads(r.stats or "{}")).to_json()}
                for r in s.execute(q).scalars()]
