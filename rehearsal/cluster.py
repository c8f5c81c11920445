"""The whole cluster at once (``make rehearsal``, ``python -m rehearsal``): every tier started
together on one machine, one steady client load through the balancer, and the nodes killed in
turn — an API server, a DataNode, a Spark worker mid-job, the leading scheduler mid-job — each
restarted before the next. Afterwards every acknowledged upload must read back byte for byte,
``fsck --deep`` must be clean, HDFS must have no under-replicated block, and the interrupted jobs
must have completed on their next run.

Each tier's own drill (``rehearsal.api``, ``.hdfs``, ``.spark``, ``.schedulers``, ``.mariadb``)
does the same for that tier alone, small enough for CI (``tests/rehearsal``); this module only
composes their classes.
"""

from __future__ import annotations

import json
import os
import platform
import time
from contextlib import ExitStack
from pathlib import Path

from .api import ApiCluster
from .hdfs import MiniHdfs
from .load import Load, LoadReport, verify
from .mariadb import MariaDBPair
from .schedulers import Schedulers, kill_leader_mid_job, most_leaders_at_once, restart_and_watch
from .spark import SparkStandalone, kill_worker_mid_job

__all__ = ["rehearse"]


class _Timeline:
    """What happened when: each step's start and end (seconds since the rehearsal began) and the
    client load's counts between them."""

    def __init__(self) -> None:
        self.t0 = time.time()
        self.steps: dict[str, dict] = {}

    def run(self, name: str, step, *args, **kw) -> dict:
        start = time.time()
        print(f"[rehearsal] {round(start - self.t0)} s: {name.replace('_', ' ')} ...", flush=True)
        figures = step(*args, **kw)
        self.steps[name] = {"started_s": round(start - self.t0, 1), "ended_s": round(time.time() - self.t0, 1),
                            "wall": (start, time.time()), **figures}
        return figures

    def with_load(self, report: LoadReport) -> dict:
        """The steps, each with the load's counts during it (errors before and after retry)."""
        out = {}
        for name, step in self.steps.items():
            start, end = step.pop("wall")
            during = report.totals(start, end)
            out[name] = {**step, "load_ok": during["ok"], "load_errors_before_retry": during["retried"],
                         "load_errors_after_retry": during["failed"]}
        return out


def _kill_api_server(api: ApiCluster, n: int, outage: float) -> dict:
    api.kill(n)
    start = time.monotonic()
    try:
        down = api.wait_state(n, "DOWN", timeout=30)
    except TimeoutError:
        down = None
    time.sleep(max(0.0, outage - (time.monotonic() - start)))
    ready = api.restart(n)
    up = api.wait_state(n, "UP", timeout=60)
    return {"server": n, "kill_to_out_of_rotation_s": None if down is None else round(down, 3),
            "out_of_rotation_within_3_s": down is not None and down <= 3.0,
            "restart_to_ready_s": round(ready, 2), "ready_to_in_rotation_s": round(up, 2)}


def _kill_datanode(dfs: MiniHdfs, i: int, outage: float) -> dict:
    dfs.stop_datanode(i)
    # The NameNode would notice the missed heartbeats only after minutes on a loaded machine,
    # and writes stall on the dead DataNode until it does (see rehearsal.hdfs): tell it soon.
    time.sleep(2)
    dfs.mark_dead(i)
    time.sleep(outage)
    dead = dfs.status()
    dfs.restart_datanode(i)
    whole = dfs.wait_replicated(timeout=600)
    after = dfs.status()
    return {"datanode": i, "seconds_down": outage, "status_while_down": dead,
            "restart_to_fully_replicated_s": round(whole, 1), "under_replicated_after": after["under_replicated"],
            "missing_blocks_after": after["missing"]}


def _kill_scheduler(scheds: Schedulers, wait: float) -> dict:
    scheds.start()
    try:
        figures = kill_leader_mid_job(scheds, wait)
        figures.pop("killed_at", None)
        figures.update(restart_and_watch(scheds, figures["killed_leader"], wait))
    finally:
        scheds.stop()
    figures["most_leaders_at_once"] = most_leaders_at_once(scheds.leaderships())
    return figures


def rehearse(folder: Path, quick: bool = False) -> dict:
    """Start the cluster under ``folder`` (emptied first by the caller), run the load and the
    kills, stop everything; the figures, with ``passed`` true only if every condition held."""
    folder = Path(folder)
    processes, outage = (3, 5.0) if quick else (6, 20.0)
    figures: dict = {"profile": "quick" if quick else "full", "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                     "machine": {"cores": os.cpu_count(), "python": platform.python_version()}}
    timeline = _Timeline()
    started = {}
    with ExitStack() as stack:
        t = time.monotonic()
        db = stack.enter_context(MariaDBPair(folder / "mariadb"))
        dfs = stack.enter_context(MiniHdfs(folder / "hdfs", datanodes=3, replication=3))
        api = stack.enter_context(ApiCluster(folder / "api", db.primary_url, dfs.url, servers=3, extra_env={
            "BLOCKDRIVE_DATABASE_REPLICA_URL": db.replica_url}))
        spark = SparkStandalone(folder / "spark", workers=2).start()
        stack.callback(spark.stop)
        started["cluster_start_s"] = round(time.monotonic() - t, 1)
        jobs_env = {**api.env, "BLOCKDRIVE_JOBS_SPARK_MASTER": spark.master_url, "BLOCKDRIVE_JOBS_JDBC": "true",
                    "SPARK_LOCAL_IP": "127.0.0.1"}
        users = [api.user() for _ in range(3)]
        ledger = folder / "ledger.jsonl"
        load = stack.enter_context(Load(api.url, users, ledger, processes=processes, quick=quick))
        time.sleep(outage)
        timeline.run("api_server_killed", _kill_api_server, api, 1, outage)
        timeline.run("datanode_killed", _kill_datanode, dfs, 1, outage * 2)
        (folder / "jobs").mkdir(exist_ok=True)
        timeline.run("spark_worker_killed", kill_worker_mid_job, spark, jobs_env, folder / "jobs")
        scheds = Schedulers(folder / "schedulers", jobs_env, spark_master=spark.master_url)
        timeline.run("scheduler_killed", _kill_scheduler, scheds, 900)
        time.sleep(outage)
        report = load.stop()
        figures["cluster"] = started
        figures["load"] = report.as_dict()
        figures["steps"] = timeline.with_load(report)
        figures["verified"] = verify(ledger, api.url, users)
        figures["hdfs_after"] = dfs.status()
        fsck = api.cli("fsck", "--deep", check=False)
        figures["fsck_clean"] = fsck.returncode == 0
        figures["fsck"] = fsck.stdout.strip().splitlines()[-3:]
    steps = figures["steps"]
    figures["conditions"] = conditions = {
        "no_acknowledged_upload_lost": figures["verified"]["lost"] == 0 and figures["verified"]["different"] == 0,
        "no_error_left_after_retry": figures["load"]["errors_after_retry"] == 0,
        "dead_api_server_out_of_rotation_within_3_s": steps["api_server_killed"]["out_of_rotation_within_3_s"],
        "hdfs_fully_replicated_after": figures["hdfs_after"]["under_replicated"] == 0,
        "spark_job_completed": steps["spark_worker_killed"].get("job_completed", False),
        "scheduler_took_over": steps["scheduler_killed"]["took_over"],
        "interrupted_job_completed_next_run": steps["scheduler_killed"]["next_run_completed"],
        "never_two_leaders": steps["scheduler_killed"]["most_leaders_at_once"] <= 1,
        "fsck_clean": figures["fsck_clean"]}
    figures["passed"] = all(conditions.values())
    (folder / "rehearsal.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return figures
