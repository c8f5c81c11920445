"""The dashboard's "run now": a job's dry-run plan first, then, on a second press, the real run.

A job runs as its own process (``python -m jobs run NAME``, exactly ``blockdrive jobs run``),
never inside a web worker: it starts Spark and may take minutes. The plan (``--dry-run``) is
waited for, up to ``PLAN_TIMEOUT`` seconds, and shown; the real run is started and left to
run, and its result arrives in the job history like a scheduled run's (the job lock keeps it
from overlapping the scheduler's). The process gets the server's effective configuration as
TOML on its standard input, so no secret of it lands on disk or in a process listing.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

from flask import Blueprint, current_app, flash, request, url_for

from jobs import humanize
from jobs.catalog import JOBS
from storage.errors import BlockdriveError, NotFound, RetryLater

from .users import admin_form, admin_html

bp = Blueprint("admin_runs", __name__)

PLAN_TIMEOUT = 900
ROOT = Path(__file__).resolve().parents[2]  # where the ``jobs`` package is


def config_toml(cfg) -> str:
    """The effective configuration as TOML: every value is a string, number or boolean, whose
    JSON spelling is also TOML's."""
    out = []
    for section, values in cfg.items():
        out.append(f"[{section}]")
        out += [f"{key} = {json.dumps(value)}" for key, value in values.items() if value is not None]
    return "\n".join(out) + "\n"


def command(name: str, dry_run: bool) -> list[str]:
    if name not in JOBS:
        raise NotFound(f"no job {name!r}")
    return [sys.executable, "-m", "jobs", "run", name, "--json", "-q", *(["--dry-run"] if dry_run else [])]


def _env() -> dict:
    return {**os.environ, "BLOCKDRIVE_CONFIG": "/dev/stdin"}


def plan(cfg, name: str) -> dict:
    """Run ``name`` with ``--dry-run`` and return its result (``run_id``, ``status``, ``stats``)."""
    try:
        p = subprocess.run(command(name, True), input=config_toml(cfg), capture_output=True, text=True,
                           cwd=ROOT, env=_env(), timeout=PLAN_TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RetryLater(f"the {name} plan took longer than {PLAN_TIMEOUT} s; run it from the command line") from None
    last = (p.stdout.strip().splitlines() or [""])[-1]
    try:
        return json.loads(last)
    except ValueError:
        why = (p.stderr.strip().splitlines() or ["no output"])[-1]
        raise BlockdriveError(f"the {name} plan failed: {why}") from None


def start(cfg, name: str) -> int:
    """Start the real run of ``name`` in the background; returns its process id."""
    logs = Path(cfg["storage"]["home"]) / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    with open(logs / f"run-now-{name}.log", "ab") as log:
        p = subprocess.Popen(command(name, False), stdin=subprocess.PIPE, stdout=log, stderr=log, cwd=ROOT,
                             env=_env(), start_new_session=True)
    p.stdin.write(config_toml(cfg).encode())
    p.stdin.close()
    threading.Thread(target=p.wait, name=f"run-now-{name}", daemon=True).start()  # reaped when it ends
    return p.pid


@bp.post("/admin/jobs/<name>/plan")
@admin_form
def plan_form(admin, name: str):
    res = plan(current_app.config["BLOCKDRIVE"], name)
    stats = {k: v for k, v in res.get("stats", {}).items() if k not in ("dry_run", "seconds")}
    return admin_html("admin_job_plan.html", job=name, does=JOBS[name], res=res, lines=humanize.lines(stats))


@bp.post("/admin/jobs/<name>/run")
@admin_form
def run_form(admin, name: str):
    pid = start(current_app.config["BLOCKDRIVE"], name)
    flash(f"{name} started (process {pid}); its run appears in the job history when it ends.", "note")
    return request.form.get("next") or url_for("admin.dashboard")
