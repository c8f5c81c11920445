"""The ``blockdrive jobs ...`` and ``blockdrive scheduler`` commands. ``webapi/cli.py`` calls
:func:`register_cli` to add them to its parser.

The terminal gets what people read: sizes and ratios in units (``--json`` keeps the raw
figures), dry runs marked, schedules with their time zone. Each command sets up logging at its
``--log-level``; below ``debug``, Spark's and the JVM's own output go to ``<home>/logs/spark.log``.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

from storage import logs
from storage.states import JobStatus

from . import humanize

log = logging.getLogger(__name__)


def spark_log(cfg) -> Path:
    """The file that keeps Spark's and the JVM's output: ``logs/spark.log`` under the data dir."""
    return Path(cfg["storage"]["home"]) / "logs" / "spark.log"


def _setup_logging(args, cfg=None) -> None:
    """Logging at ``--log-level``; with ``cfg`` (a command that starts Spark), Spark's output
    goes to :func:`spark_log` unless ``debug`` was asked for."""
    level = logs.setup(getattr(args, "log_level", None))
    if cfg is not None:
        from .spark import keep_output_in
        keep_output_in(None if level <= logging.DEBUG else spark_log(cfg))


def open_drive(args):
    from storage.config import load_config
    from storage.db import check_ready, make_engine
    from storage.drive import Drive
    cfg = load_config(args.config)
    engine = make_engine(cfg.database_url)
    check_ready(engine)
    return Drive(cfg, engine=engine)


def cmd_list(args) -> int:
    from storage.config import load_config
    from .catalog import JOBS, TIMEZONE
    _setup_logging(args)
    cfg = load_config(args.config)
    rows = [{"job": n, "schedule": cfg["schedule"].get(n, ""), "timezone": TIMEZONE, "does": d}
            for n, d in JOBS.items()]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            when = f"{r['schedule']} {r['timezone']}" if r["schedule"] else "(not scheduled)"
            print(f"{r['job']:<14} {when:<20} {r['does']}")
    return 0


def cmd_run(args) -> int:
    from .context import stderr_progress
    from .runner import JobBusy, run_job
    from .spark import get_spark, stop_spark
    drive = open_drive(args)
    _setup_logging(args, drive.config)
    options = {}
    if getattr(args, "into", None):
        options["into"] = args.into
    try:
        res = run_job(args.name, drive, get_spark(drive.config), dry_run=args.dry_run,
                      progress=None if args.quiet else stderr_progress(args.name), options=options)
    except JobBusy as exc:
        print(f"blockdrive: {exc}", file=sys.stderr)
        return 1
    finally:
        stop_spark()
    if args.json:
        print(json.dumps({"run_id": res.run_id, "job": res.job, "status": res.status, "stats": res.stats},
                         default=str))
    else:
        stats = dict(res.stats)
        dry = " (dry run: nothing changed)" if stats.pop("dry_run", False) else ""
        stats.pop("seconds", None)
        print(f"{res.job} run {res.run_id}: {res.status} in {res.seconds:.1f}s{dry}")
        print("\n".join(humanize.lines(stats)))
    return 0 if res.status == JobStatus.OK else 1


def cmd_history(args) -> int:
    from storage.jobruns import RunStats, history
    _setup_logging(args)
    rows = history(open_drive(args).sm, args.limit, args.job)
    if args.json:
        print(json.dumps(rows))
    else:
        if rows:
            print(f"{'run':>5} {'job':<14} {'status':<8} {'':<7}  {'started (UTC)':<19}  {'finished (UTC)':<19}  "
                  f"{'seconds':>8}  bytes freed")
        for r in rows:
            st = RunStats.from_json(r["stats"])
            secs = humanize.figure("seconds", st.seconds) if st.seconds is not None else "-"
            freed = humanize.size(st.bytes_freed) if st.bytes_freed is not None else ""
            print(f"{r['id']:>5} {r['job']:<14} {r['status']:<8} {'dry run' if st.dry_run else '':<7}  "
                  f"{r['started_at']}  {r['finished_at'] or '-'}  {secs:>8}  {freed}".rstrip())
    return 0


def cmd_leases(args) -> int:
    from storage.leases import leases
    _setup_logging(args)
    rows = leases(open_drive(args).sm)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            state = "held" if r["held"] else "expired"
            print(f"{r['name']:<24} {state:<8} until {r['expires_at']}  {r['holder']}")
    return 0


def cmd_scheduler(args) -> int:
    from .catalog import TIMEZONE
    from .scheduler import Scheduler, validate_schedule
    drive = open_drive(args)
    _setup_logging(args, drive.config)
    validate_schedule(drive.config)
    sched = Scheduler(drive, blocking=True)
    signal.signal(signal.SIGTERM, lambda *a: sched.shutdown())
    print(f"scheduler {sched.holder} (schedules in {TIMEZONE}): {json.dumps(sched.schedule())}", file=sys.stderr)
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        log.info("scheduler %s stopping", sched.holder)
    finally:
        sched.resign()
    return 0


def register_cli(sub) -> None:
    """Add ``jobs list|run|history|leases`` and ``scheduler`` to the ``blockdrive`` parser."""
    from .catalog import JOBS
    jp = sub.add_parser("jobs", help="maintenance jobs (PySpark)", description="maintenance jobs (PySpark)")
    jsub = jp.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jsub.add_parser("list", help="the jobs and their schedules")
    p.add_argument("--json", action="store_true")
    logs.add_argument(p)
    p.set_defaults(fn=cmd_list)
    p = jsub.add_parser("run", help="run one job now (destructive jobs: --dry-run prints the plan)")
    p.add_argument("name", choices=sorted(JOBS))
    p.add_argument("--dry-run", action="store_true", help="plan only: print what would change and the bytes involved")
    p.add_argument("--into", help="rebuild_index: database URL of the fresh database to build")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    logs.add_argument(p)
    p.set_defaults(fn=cmd_run)
    p = jsub.add_parser("history", help="recent runs from job_runs")
    p.add_argument("--job")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    logs.add_argument(p)
    p.set_defaults(fn=cmd_history)
    p = jsub.add_parser("leases", help="who holds the scheduler's and the jobs' leases (read only)")
    p.add_argument("--json", action="store_true")
    logs.add_argument(p)
    p.set_defaults(fn=cmd_leases)
    p = sub.add_parser("scheduler", help="run the jobs on their schedules (one leader at a time)",
                       description="run the jobs on their schedules (one leader at a time)")
    logs.add_argument(p)
    p.set_defaults(fn=cmd_scheduler)
