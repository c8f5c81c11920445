"""``blockdrive scheduler``: run each job on its cron schedule (``[schedule]`` in the config).

The only module that imports APScheduler (pinned to 3.x). Any number of schedulers may run;
one leads at a time through the database lease ``scheduler`` (renewed every
``lease_seconds / 3``), and only the leader starts jobs. Each job is added with
``max_instances=1`` and ``coalesce=True`` (a missed burst runs once), and the runner's
per-job lease keeps even two leaders (a lease lost mid-run) from running one job twice.
"""

from __future__ import annotations

import logging
import threading

from storage import maintenance as m

from .catalog import TIMEZONE
from .runner import JOBS, JobBusy, holder_id, run_job

log = logging.getLogger("blockdrive.scheduler")
LEASE = "scheduler"


class Scheduler:
    def __init__(self, drive, cfg=None, spark_factory=None, blocking: bool = False):
        self.drive, self.cfg = drive, cfg or drive.config
        self.holder = holder_id()
        self.ttl = self.cfg["jobs"]["lease_seconds"]
        self._spark_factory = spark_factory
        self._spark = None
        self._spark_lock = threading.Lock()
        self._running = 0  # runs using self._spark
        self._blocking = blocking
        self._sched = None
        self.ran: list[str] = []
        self.leading: bool | None = None  # as of the last lead(); None before the first

    # ---- leadership -----------------------------------------------------------------------

    def lead(self) -> bool:
        """Take or renew the leadership lease; True while this scheduler leads. A change either
        way is logged, so each scheduler's log shows when it led."""
        leads = m.acquire_lease(self.drive.sm, LEASE, self.holder, self.ttl)
        if leads != self.leading:
            log.info("scheduler %s %s", self.holder, "leads" if leads else "follows")
            self.leading = leads
        return leads

    def resign(self) -> None:
        """Give the leadership up now (a stopping scheduler), logged if it led."""
        m.release_lease(self.drive.sm, LEASE, self.holder)
        if self.leading:
            log.info("scheduler %s resigns", self.holder)
        self.leading = False

    # ---- jobs -----------------------------------------------------------------------------

    def acquire_spark(self):
        """The Spark session for one run, started if there is none; the run counts as in
        progress until its ``release_spark()``. A session that fails to start counts nothing."""
        with self._spark_lock:
            if self._spark is None:
                if self._spark_factory is not None:
                    self._spark = self._spark_factory()
                else:
                    from .spark import get_spark
                    self._spark = get_spark(self.cfg)
            self._running += 1
            return self._spark

    def fire(self, name: str) -> str:
        """What a scheduled trigger does: run ``name`` if this scheduler leads. Returns
        ``ran``, ``not-leader``, ``busy`` or ``failed``."""
        if not self.lead():
            return "not-leader"
        try:
            spark = self.acquire_spark()
        except Exception:  # noqa: BLE001 - no JVM, no run; the next trigger tries again
            log.exception("job %s: Spark did not start", name)
            return "failed"
        try:
            run_job(name, self.drive, spark, self.cfg, progress=lambda msg: log.info("%s: %s", name, msg))
        except JobBusy as exc:
            log.info("job %s not started: %s", name, exc)
            return "busy"
        except Exception:  # noqa: BLE001 - recorded in job_runs; the scheduler keeps going
            log.exception("job %s failed", name)
            return "failed"
        finally:
            self.release_spark()
        self.ran.append(name)
        return "ran"

    def release_spark(self) -> None:
        """End the session this scheduler started, JVM and all: the next run starts a fresh
        one (some seconds, once a run), so a scheduler up for months does not grow with the
        state a JVM keeps of each job. A session from ``spark_factory`` is the caller's; one
        still in use by another job (two schedules at once) is released by the last."""
        with self._spark_lock:
            self._running -= 1
            if self._spark is not None and self._spark_factory is None and not self._running:
                from .spark import stop_spark
                stop_spark(jvm=True)
                self._spark = None

    def schedule(self) -> dict[str, str]:
        return {name: cron for name, cron in self.cfg["schedule"].items() if cron and name in JOBS}

    def build(self):
        from apscheduler.schedulers.background import BackgroundScheduler
        from apscheduler.schedulers.blocking import BlockingScheduler
        sched = (BlockingScheduler if self._blocking else BackgroundScheduler)(timezone=TIMEZONE)
        for name, cron in self.schedule().items():
            sched.add_job(self.fire, cron_trigger(cron), args=[name], id=name,
                          name=name, max_instances=1, coalesce=True, misfire_grace_time=3600)
        sched.add_job(self.lead, "interval", seconds=max(1, self.ttl // 3), id="_lease",
                      max_instances=1, coalesce=True)
        self._sched = sched
        return sched

    def start(self):
        sched = self._sched or self.build()
        self.lead()
        sched.start()
        return sched

    def shutdown(self) -> None:
        if self._sched is not None and self._sched.running:
            self._sched.shutdown(wait=False)
        self.resign()


def cron_trigger(cron: str):
    """The trigger of one ``[schedule]`` string, in :data:`TIMEZONE`: five fields (minute hour
    day month weekday, as crontab), or six with seconds first (``*/20 * * * * *`` fires every
    20 seconds), for schedules finer than a minute. Raises ``ValueError`` on a bad string."""
    from apscheduler.triggers.cron import CronTrigger
    fields = cron.split()
    if len(fields) != 6:
        return CronTrigger.from_crontab(cron, timezone=TIMEZONE)
    second, minute, hour, day, month, weekday = fields
    return CronTrigger(second=second, minute=minute, hour=hour, day=day, month=month, day_of_week=weekday,
                       timezone=TIMEZONE)


def validate_schedule(cfg) -> None:
    from storage.errors import ConfigError
    for name, cron in cfg["schedule"].items():
        if name not in JOBS:
            raise ConfigError(f"schedule.{name}: no such job")
        if cron:
            try:
                cron_trigger(cron)
            except ValueError as exc:
                raise ConfigError(f"schedule.{name}: bad cron string {cron!r}: {exc}") from None


_stop = threading.Event()
