"""The scheduler: one leader at a time through the database, jobs never twice at once; and
the ``blockdrive jobs`` / ``scheduler`` commands."""

from __future__ import annotations

import json
import os
import threading

import pytest

from jobs.runner import JobBusy, run_job
from jobs.scheduler import Scheduler, validate_schedule
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
