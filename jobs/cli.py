"""The ``blockdrive jobs ...`` and ``blockdrive scheduler`` commands. ``webapi/cli.py`` calls
:func:`register_cli` to add them to its parser."""

from __future__ import annotations

import json
import signal
import sys


def _drive(args):
    from storage.config import load_config
    from storage.db import check_ready, make_engine
    from storage.drive import Drive
    cfg = load_config(args.config)
    engine = make_engine(cfg.database_url)
    check_ready(engine)
    return Drive(cfg, engine=engine)


def cmd_list(args) -> int:
    from storage.config import load_config
    from .catalog import JOBS
    cfg = load_config(args.config)
    rows = [{"job": n, "schedule": cfg["schedule"].get(n, ""), "does": d} for n, d in JOBS.items()]
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['job']:<14} {r['schedule'] or '(not scheduled)':<16} {r['does']}")
    return 0


def cmd_run(args) -> int:
    from .context import stderr_progress
    from .runner import JobBusy, run_job
    from .spark import get_spark, stop_spark
    drive = _drive(args)
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
        print(f"{res.job} run {res.run_id}: {res.status} in {res.seconds:.1f}s")
        for k, v in res.stats.items():
            if not isinstance(v, (list, dict)) or v:
                print(f"  {k}: {json.dumps(v, default=str) if isinstance(v, (list, dict)) else v}")
    return 0 if res.status == "ok" else 1


def cmd_history(args) -> int:
    from .runner import history
    rows = history(_drive(args).sm, args.limit, args.job)
    if args.json:
        print(json.dumps(rows))
    else:
        for r in rows:
            print(f"{r['id']:>5} {r['job']:<14} {r['status']:<8} {r['started_at']}  {r['finished_at'] or '-'}  "
                  f"{r['stats'].get('seconds', '')}s")
    return 0


def cmd_scheduler(args) -> int:
    from .scheduler import Scheduler, validate_schedule
    drive = _drive(args)
    validate_schedule(drive.config)
    sched = Scheduler(drive, blocking=True)
    signal.signal(signal.SIGTERM, lambda *a: sched.shutdown())
    print(f"scheduler {sched.holder}: {json.dumps(sched.schedule())}", file=sys.stderr)
    try:
        sched.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        sched.resign()
    return 0


def register_cli(sub) -> None:
    """Add ``jobs list|run|history`` and ``scheduler`` to the ``blockdrive`` parser."""
    from .catalog import JOBS
    jp = sub.add_parser("jobs", help="maintenance jobs (PySpark)", description="maintenance jobs (PySpark)")
    jsub = jp.add_subparsers(dest="jobs_command", required=True, metavar="ACTION")
    p = jsub.add_parser("list", help="the jobs and their schedules")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_list)
    p = jsub.add_parser("run", help="run one job now (destructive jobs: --dry-run prints the plan)")
    p.add_argument("name", choices=sorted(JOBS))
    p.add_argument("--dry-run", action="store_true", help="plan only: print what would change and the bytes involved")
    p.add_argument("--into", help="rebuild_index: database URL of the fresh database to build")
    p.add_argument("--json", action="store_true")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    p.set_defaults(fn=cmd_run)
    p = jsub.add_parser("history", help="recent runs from job_runs")
    p.add_argument("--job")
    p.add_argument("--limit", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_history)
    p = sub.add_parser("scheduler", help="run the jobs on their schedules (one leader at a time)",
                       description="run the jobs on their schedules (one leader at a time)")
    p.set_defaults(fn=cmd_scheduler)
