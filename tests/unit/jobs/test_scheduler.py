"""The scheduler: one leader at a time through the database, jobs never twice at once; and
the ``blockdrive jobs`` / ``scheduler`` commands."""

from __future__ import annotations

import json
import os
import threading
import time

import pytest

from jobs.runner import JobBusy, run_job
from jobs.scheduler import Scheduler, cron_trigger, validate_schedule
from storage import clock
from storage import maintenance as m
from storage.errors import ConfigError
from storage.jobruns import history


def test_one_scheduler_leads_and_a_dead_leaders_lease_expires(drive, spark):
    a, b = Scheduler(drive, spark_factory=lambda: spark), Scheduler(drive, spark_factory=lambda: spark)
    assert a.lead() and not b.lead()
    assert a.lead()  # renewing
    assert b.fire("reconcile") == "not-leader" and history(drive.sm) == []
    clock.advance(drive.config["jobs"]["lease_seconds"] + 1)  # a stops renewing (died)
    assert b.lead() and not a.lead()
    b.resign()
    assert a.lead()


def test_a_job_never_runs_twice_at_once_even_with_two_schedulers(drive, spark):
    """Two schedulers fire the same job at the same moment; each holds leadership in turn
    (a lease lost mid-run), so only the job's own lease stands between them."""
    from jobs import hooks
    a, b = Scheduler(drive, spark_factory=lambda: spark), Scheduler(drive, spark_factory=lambda: spark)
    inside, release = threading.Event(), threading.Event()

    def hold():
        inside.set()
        assert release.wait(60)
    hooks.HOOKS["gc:after_purge"] = hold
    try:
        assert a.lead()
        out = {}
        t = threading.Thread(target=lambda: out.setdefault("a", a.fire("gc")))
        t.start()
        assert inside.wait(60)
        a.resign()  # a's leadership lapses while its gc is still running
        assert b.fire("gc") == "busy"
        release.set()
        t.join(60)
    finally:
        hooks.HOOKS.pop("gc:after_purge", None)
    assert out["a"] == "ran"
    runs = history(drive.sm, job="gc")
    assert [r["status"] for r in runs] == ["ok"]


def test_a_runs_lease_is_kept_through_a_step_longer_than_the_lease(drive, spark):
    """A job step that reports no progress for longer than ``lease_seconds`` (a slow Spark
    stage) must not let the job's lease lapse: else a second run could start beside it."""
    from jobs import hooks
    cfg = type(drive.config)({**drive.config, "jobs": {**drive.config["jobs"], "lease_seconds": 1}})
    inside, release, seen = threading.Event(), threading.Event(), {}

    def hold():
        inside.set()
        assert release.wait(60)
    hooks.HOOKS["gc:after_purge"] = hold
    try:
        t = threading.Thread(target=lambda: seen.setdefault("a", run_job("gc", drive, spark, cfg)))
        t.start()
        assert inside.wait(60)
        time.sleep(2.5)  # more than twice the lease, with no progress line meanwhile
        holder = m.lease_holder(drive.sm, "job:gc")
        with pytest.raises(JobBusy):
            run_job("gc", drive, spark, cfg)
        release.set()
        t.join(60)
    finally:
        release.set()
        hooks.HOOKS.pop("gc:after_purge", None)
    assert holder is not None and seen["a"].status == "ok"
    assert m.lease_holder(drive.sm, "job:gc") is None  # released at the end
    assert [r["status"] for r in history(drive.sm, job="gc")] == ["ok"]


def test_runner_refuses_a_second_concurrent_run(drive, spark):
    assert m.acquire_lease(drive.sm, "job:reconcile", "otherhost:1:x", 600)
    with pytest.raises(JobBusy):
        run_job("reconcile", drive, spark)


def test_a_killed_runs_lease_on_this_host_is_taken_over_and_recorded_as_crashed(drive, spark):
    import socket
    import subprocess
    p = subprocess.Popen(["true"])
    p.wait()  # a pid that no longer exists
    from storage.models import JobRun
    with drive.sm() as s, s.begin():
        s.add(JobRun(job="reconcile", status="running"))
    assert m.acquire_lease(drive.sm, "job:reconcile", f"{socket.gethostname()}:{p.pid}:dead", 600)
    r = run_job("reconcile", drive, spark)
    assert r.status == "ok"
    assert [x["status"] for x in history(drive.sm, job="reconcile")] == ["ok", "crashed"]


def test_apscheduler_jobs_have_max_instances_1_and_coalesce(drive, spark):
    s = Scheduler(drive, spark_factory=lambda: spark)
    sched = s.build()
    jobs = {j.id: j for j in sched.get_jobs()}
    assert set(jobs) >= {"scrub", "gc", "reconcile", "compact", "tier", "dedup_scan", "_lease"}
    for j in jobs.values():
        assert j.max_instances == 1 and j.coalesce is True
    assert str(jobs["gc"].trigger).startswith("cron[") and "hour='2'" in str(jobs["gc"].trigger)


def test_a_started_scheduler_runs_a_due_job_once(drive, spark):
    cfg = type(drive.config)({**drive.config, "schedule": {**{k: "" for k in drive.config["schedule"]},
                                                           "reconcile": "* * * * *"}})
    s = Scheduler(drive, cfg, spark_factory=lambda: spark)
    sched = s.build()
    sched.start(paused=True)
    try:
        s.lead()
        job = sched.get_job("reconcile")
        job.func(*job.args)  # what the trigger calls when it fires
    finally:
        s.shutdown()
    assert s.ran == ["reconcile"] and history(drive.sm)[0]["job"] == "reconcile"


def _note_jvm_pids(monkeypatch) -> list[int]:
    """The pid of the JVM each scheduled run is handed, in order."""
    import jobs.scheduler as sched_mod
    pids = []

    def run_and_note(name, drive_, spark_, cfg, **kw):
        pids.append(spark_._jvm.java.lang.ProcessHandle.current().pid())
        return run_job(name, drive_, spark_, cfg, **kw)
    monkeypatch.setattr(sched_mod, "run_job", run_and_note)
    return pids


def test_the_scheduler_runs_each_job_in_a_fresh_jvm_and_ends_it(drive, spark, monkeypatch):
    """A JVM keeps some state of every job it ran: the scheduler's own session is ended, JVM
    and all, after each run, and the next run starts a new one."""
    pids = _note_jvm_pids(monkeypatch)
    s = Scheduler(drive)  # no spark_factory: the session is the scheduler's own
    assert [s.fire("reconcile"), s.fire("reconcile")] == ["ran", "ran"]
    assert len(set(pids)) == 2, pids
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert [r["status"] for r in history(drive.sm)[:2]] == ["ok", "ok"]


def test_a_spark_that_does_not_start_fails_the_run_and_the_next_still_ends_its_jvm(drive, spark, monkeypatch):
    """A session that fails to start is a failed run that leaves no run counted in progress:
    otherwise no later run would be the last one out, and the JVM would never be ended."""
    import jobs.spark as spark_mod
    real, starts, pids = spark_mod.get_spark, [], _note_jvm_pids(monkeypatch)

    def first_fails(cfg):
        starts.append(cfg)
        if len(starts) == 1:
            raise RuntimeError("no JVM this time")
        return real(cfg)
    monkeypatch.setattr(spark_mod, "get_spark", first_fails)
    s = Scheduler(drive)
    assert s.fire("reconcile") == "failed" and history(drive.sm) == [] and s.ran == []
    assert s.fire("reconcile") == "ran" and len(starts) == 2
    with pytest.raises(ProcessLookupError):
        os.kill(pids[0], 0)


def test_bad_cron_strings_are_config_errors(config):
    bad = type(config)({**config, "schedule": {**config["schedule"], "gc": "every day"}})
    with pytest.raises(ConfigError, match="schedule.gc"):
        validate_schedule(bad)
    validate_schedule(config)


def test_a_six_field_schedule_has_seconds_first():
    import datetime as dt
    every_20s = cron_trigger("*/20 * * * * *")
    start = dt.datetime(2026, 1, 1, 12, 0, 5, tzinfo=dt.timezone.utc)
    assert every_20s.get_next_fire_time(None, start) == start.replace(second=20)
    assert cron_trigger("0 2 * * *").get_next_fire_time(None, start) == start.replace(day=2, hour=2, second=0)
    with pytest.raises(ValueError):
        cron_trigger("*/20 * * * * * *")


def test_six_field_schedules_are_valid_and_bad_seconds_are_config_errors(config):
    fine = type(config)({**config, "schedule": {**config["schedule"], "gc": "*/15 * * * * *"}})
    validate_schedule(fine)
    bad = type(config)({**config, "schedule": {**config["schedule"], "gc": "75 * * * * *"}})
    with pytest.raises(ConfigError, match="schedule.gc"):
        validate_schedule(bad)


def test_lead_records_and_logs_each_change_of_leadership(drive, spark, caplog):
    a, b = Scheduler(drive, spark_factory=lambda: spark), Scheduler(drive, spark_factory=lambda: spark)
    with caplog.at_level("INFO", logger="blockdrive.scheduler"):
        assert a.lead() and a.lead() and not b.lead()
        assert (a.leading, b.leading) == (True, False)
        a.resign()
        a.resign()  # once is logged
        assert b.lead()
    said = [r.getMessage() for r in caplog.records]
    assert said == [f"scheduler {a.holder} leads", f"scheduler {b.holder} follows", f"scheduler {a.holder} resigns",
                    f"scheduler {b.holder} leads"]
    b.resign()


def test_cli_jobs_leases_shows_who_holds_each_lease(tmp_path, capsys, monkeypatch):
    from storage.config import load_config
    from storage.db import make_engine
    from storage.drive import Drive
    from webapi.cli import main
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "home"))
    assert main(["init"]) == 0
    cfg = load_config()
    drive = Drive(cfg, engine=make_engine(cfg.database_url))
    assert m.acquire_lease(drive.sm, "scheduler", "host:1:a", 600)
    assert m.acquire_lease(drive.sm, "job:gc", "host:2:b", 600)
    clock.advance(601)  # those two expire; a lease taken now is held
    try:
        assert m.acquire_lease(drive.sm, "job:scrub", "host:3:c", 600)
        capsys.readouterr()
        assert main(["jobs", "leases", "--json"]) == 0
    finally:
        clock.reset()
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["name"], r["holder"], r["held"]) for r in rows] == [
        ("job:gc", "host:2:b", False), ("job:scrub", "host:3:c", True), ("scheduler", "host:1:a", False)]
    assert main(["jobs", "leases"]) == 0
    assert "scheduler" in capsys.readouterr().out


def test_cli_jobs_list_run_history(tmp_path, capsys, monkeypatch, spark):
    from webapi.cli import main
    monkeypatch.setenv("BLOCKDRIVE_HOME", str(tmp_path / "home"))
    assert main(["init"]) == 0
    assert main(["jobs", "list", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()[-1]
    assert {r["job"] for r in json.loads(out)} >= {"gc", "compact", "reconcile", "tier", "scrub", "dedup_scan",
                                                   "rebuild_index"}
    monkeypatch.setattr("jobs.spark.stop_spark", lambda: None)  # keep the shared session
    assert main(["jobs", "run", "gc", "--dry-run", "--json", "-q"]) == 0
    res = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert res["status"] == "ok" and res["stats"]["dry_run"] is True and "plan_mark" in res["stats"]
    assert main(["jobs", "history", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [(r["job"], r["status"]) for r in rows] == [("gc", "ok")]
