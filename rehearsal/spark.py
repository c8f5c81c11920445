"""Spark standalone for the rehearsal: a master and its workers started from pyspark's own
distribution (``bin/spark-class``), on 127.0.0.1 with free ports and every folder (work dirs,
logs, scratch) under one folder, so that the maintenance jobs run with ``spark://`` as their
master, in executors that are JVMs of their own.

:class:`SparkStandalone` starts, kills and restarts the processes; :func:`spark_failover` is the
tier's drill (see its docstring)."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import requests
import sqlalchemy as sa

from harness.server import BIN, Client, Server, start_server, stop_server
from rehearsal.procs import Proc, free_port, wait_http, wait_until

__all__ = ["JOBS", "SparkStandalone", "run_jobs", "spark_failover", "spark_home"]

#: What the drill runs, in this order (rebuild_index into a fresh database of its own).
JOBS = ("scrub", "gc", "reconcile", "compact", "dedup_scan", "tier", "report", "rebuild_index")
#: What the quick drill times on the cluster (scrub runs in the worker kill): a JDBC read of the
#: refs, the recount, and executors writing packs. The full drill runs every job.
QUICK_JOBS = ("gc", "reconcile", "compact")

REPO = Path(__file__).resolve().parents[1]

#: The variable that gives ``run-jobs`` rebuild_index's fresh database.
INTO_VAR = "BLOCKDRIVE_REBUILD_INTO"

#: JVM start-up on a loaded two-core machine is slow: every wait on a Spark process is this long.
START_TIMEOUT = 180


def spark_home() -> Path:
    """pyspark's own distribution (it has ``bin/spark-class`` and the jars)."""
    import pyspark
    return Path(pyspark.__file__).resolve().parent


class SparkStandalone:
    """A standalone master and ``workers`` workers (each ``cores`` cores and ``memory`` for its
    executors), data under ``folder``.

    ``start()`` returns once the master's JSON lists every worker ALIVE; ``stop()`` ends all.
    """

    def __init__(self, folder: Path, workers: int = 2, cores: int = 1, memory: str = "1g"):
        self.folder = Path(folder)
        self.cores, self.memory = cores, memory
        self.master_port, self.master_ui = free_port(), free_port()
        self.worker_ports = [free_port() for _ in range(workers)]
        self.worker_uis = [free_port() for _ in range(workers)]
        self.master: Proc | None = None
        self.workers: list[Proc | None] = [None] * workers

    @property
    def master_url(self) -> str:
        return f"spark://127.0.0.1:{self.master_port}"

    @property
    def ui_url(self) -> str:
        return f"http://127.0.0.1:{self.master_ui}"

    def env(self, name: str) -> dict:
        """The environment of one daemon: its logs, pid files and scratch under ``folder``."""
        home = spark_home()
        scratch = self.folder / name / "local"
        scratch.mkdir(parents=True, exist_ok=True)
        # Executors get blockdrive's code from the driver (jobs.spark.code_archive), so the
        # daemons run without this process's PYTHONPATH, as on a node of their own.
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        return {**env, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.folder / name / "logs"), "SPARK_PID_DIR": str(self.folder / name),
                "SPARK_LOCAL_DIRS": str(scratch), "SPARK_CONF_DIR": str(self.folder / "conf"),
                "SPARK_DAEMON_MEMORY": "512m"}

    def start(self) -> SparkStandalone:
        (self.folder / "conf").mkdir(parents=True, exist_ok=True)
        cls = str(spark_home() / "bin" / "spark-class")
        self.master = Proc("spark-master", [cls, "org.apache.spark.deploy.master.Master", "--host", "127.0.0.1",
                                            "--port", str(self.master_port), "--webui-port", str(self.master_ui)],
                           self.folder / "master.log", env=self.env("master"), cwd=self.folder).start()
        try:
            wait_http(self.ui_url + "/json", timeout=START_TIMEOUT)
            for i in range(len(self.workers)):
                self.start_worker(i, wait=False)
            wait_until(lambda: len(self.alive_workers()) == len(self.workers), START_TIMEOUT,
                       f"{len(self.workers)} Spark workers registered")
        except BaseException:
            self.stop()
            raise
        return self

    def start_worker(self, i: int, wait: bool = True) -> float:
        """Start worker ``i`` (on its own ports, work dir ``folder/worker-i/work``); with
        ``wait``, the seconds until the master lists it ALIVE."""
        name = f"worker-{i}"
        t0 = time.monotonic()
        argv = [str(spark_home() / "bin" / "spark-class"), "org.apache.spark.deploy.worker.Worker",
                "--host", "127.0.0.1", "--port", str(self.worker_ports[i]),
                "--webui-port", str(self.worker_uis[i]), "--cores", str(self.cores), "--memory", self.memory,
                "--work-dir", str(self.folder / name / "work"), self.master_url]
        self.workers[i] = Proc(f"spark-{name}", argv, self.folder / f"{name}.log", env=self.env(name),
                               cwd=self.folder / name).start()
        if wait:
            wait_until(lambda: self.worker_alive(i), START_TIMEOUT, f"Spark {name} registered")
        return time.monotonic() - t0

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` and its executor (they share its process group)."""
        worker = self.workers[i]
        if worker is not None:
            worker.kill()

    def restart_worker(self, i: int) -> float:
        """Start worker ``i`` again; the seconds until the master lists it ALIVE."""
        self.kill_worker(i)
        return self.start_worker(i)

    def status(self) -> dict:
        """The master's own view (``/json``): workers, alive workers, active applications."""
        return requests.get(self.ui_url + "/json", timeout=5).json()

    def alive_workers(self) -> list[dict]:
        """The workers the master lists as ALIVE; ``[]`` while the master does not answer."""
        try:
            workers = self.status().get("workers", [])
        except (requests.RequestException, ValueError):
            return []
        return [w for w in workers if w.get("state") == "ALIVE"]

    def worker_alive(self, i: int) -> bool:
        return any(w.get("port") == self.worker_ports[i] for w in self.alive_workers())

    def tasks_running(self, i: int) -> int:
        """How many tasks the executors of worker ``i`` are running now, from their logs
        (tasks started less tasks finished)."""
        started = finished = 0
        for path in self.executor_logs(i):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            started += text.count("Running task")
            finished += text.count("Finished task")
        return started - finished

    def executor_logs(self, i: int) -> list[Path]:
        """The stderr files of the executors worker ``i`` has run (``work/<app>/<executor>/stderr``)."""
        return sorted((self.folder / f"worker-{i}" / "work").glob("*/*/stderr"))

    def stop(self) -> None:
        """Stop the workers, then the master; SIGKILL whatever lingers."""
        for w in self.workers:
            if w is not None:
                w.stop(timeout=20)
        if self.master is not None:
            self.master.stop(timeout=20)

    def __enter__(self) -> SparkStandalone:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextmanager
def scratch_database(url: str, name: str, folder: Path):
    """The URL of an empty database beside ``url``'s (``<database>_<name>`` on the same server;
    a file in ``folder`` for SQLite), dropped on exit."""
    base = sa.engine.make_url(url)
    if base.get_backend_name() == "sqlite":
        yield f"sqlite:///{Path(folder) / (name + '.db')}"
        return
    own = base.set(database=f"{base.database}_{name}")
    server = sa.create_engine(base.set(database=None))
    try:
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{own.database}` CHARACTER SET utf8mb4")
        yield own.render_as_string(hide_password=False)
    finally:
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
        server.dispose()


def seed(server: Server, quick: bool) -> tuple[Client, dict[int, bytes]]:
    """A user with files of random bytes (some uploaded twice under other names, some moved
    to the trash, so that dedup_scan, gc and compact find work): the user and what each of
    its live files must read back as."""
    user = server.user()
    rng = random.Random(21)
    n = 24 if quick else 160
    files: dict[int, bytes] = {}
    for k in range(n):
        data = rng.randbytes(rng.randint(256 << 10, 2 << 20))
        r = user.upload(user.root, f"f{k}.bin", data)
        assert r.status_code == 201, r.text
        files[r.json()["id"]] = data
    for k, data in enumerate(list(files.values())[: n // 6]):
        r = user.upload(user.root, f"copy{k}.bin", data)
        assert r.status_code == 201, r.text
        files[r.json()["id"]] = data
    for node_id in list(files)[n // 6: n // 3]:
        r = user.delete(f"/api/v1/nodes/{node_id}")
        assert r.status_code in (200, 204), r.text
        del files[node_id]
    return user, files


def unreadable(user: Client, files: dict[int, bytes]) -> list[int]:
    """The files that do not read back byte-identical."""
    return [node_id for node_id, data in files.items()
            if user.get(f"/api/v1/nodes/{node_id}/content").content != data]


def fsck_clean(env: dict) -> bool:
    """``blockdrive fsck --deep`` finds nothing."""
    out = subprocess.run([str(BIN), "fsck", "--deep"], env=env, capture_output=True, text=True, timeout=600)
    return out.returncode == 0


def jobs_env(server: Server, master: str) -> dict:
    """The environment of a job run against ``server``'s drive on ``master``; executors read
    metadata through JDBC."""
    return {**server.env, "BLOCKDRIVE_JOBS_SPARK_MASTER": master, "BLOCKDRIVE_JOBS_JDBC": "true",
            "SPARK_LOCAL_IP": "127.0.0.1"}


def time_jobs(env: dict, into: str, folder: Path, names: tuple[str, ...] = JOBS) -> dict:
    """:func:`run_jobs` over ``names`` (every job by default) in a driver process of its own (its
    working directory ``folder``), with ``env``."""
    path = os.pathsep.join(filter(None, (str(REPO), env.get("PYTHONPATH"))))
    # The database URL goes in the environment: a password on a command line is there for all to see.
    out = subprocess.run([sys.executable, "-m", "rehearsal.spark", "run-jobs", *names],
                         env={**env, "PYTHONPATH": path, INTO_VAR: into},
                         cwd=folder, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"run-jobs failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def history(env: dict, job: str) -> list[dict]:
    """``blockdrive jobs history --json`` for ``job``, newest first."""
    out = subprocess.run([str(BIN), "jobs", "history", "--json", "--limit", "10", "--job", job], env=env,
                         capture_output=True, text=True, timeout=120)
    return json.loads(out.stdout) if out.returncode == 0 else []


def run_job_cli(env: dict, job: str, folder: Path) -> dict:
    """``blockdrive jobs run JOB --json`` to its end: its exit code and what it printed."""
    out = subprocess.run([str(BIN), "jobs", "run", job, "--json", "--quiet"], env=env, cwd=folder,
                         capture_output=True, text=True, timeout=1800)
    return {"returncode": out.returncode, **_last_json(out.stdout)}


def _last_json(text: str) -> dict:
    lines = text.strip().splitlines()
    try:
        return json.loads(lines[-1]) if lines else {}
    except ValueError:
        return {}


def kill_worker_mid_job(cluster: SparkStandalone, env: dict, folder: Path, job: str = "scrub",
                        attempts: int = 3) -> dict:
    """Run ``job`` on the cluster and SIGKILL the first worker seen running one of its tasks
    (from its executor's log), restart that worker, and let the job end; if it failed, run it
    again. Tries again (up to ``attempts`` runs) when the job ended before a task was seen."""
    figures: dict = {"job": job, "killed_mid_task": False}
    for attempt in range(1, attempts + 1):
        t0 = time.monotonic()
        proc = subprocess.Popen([str(BIN), "jobs", "run", job, "--json", "--quiet"], env=env, cwd=folder,
                                stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        victim = None
        try:
            def busy_worker() -> bool:
                nonlocal victim
                victim = next((i for i in range(len(cluster.workers)) if cluster.tasks_running(i) > 0), None)
                return victim is not None or proc.poll() is not None
            wait_until(busy_worker, 600, f"a task of {job} on a worker", interval=0.05)
            if victim is not None:
                figures.update(attempt=attempt, killed_worker=victim, killed_mid_task=True,
                               tasks_running_at_kill=cluster.tasks_running(victim),
                               killed_after_seconds=round(time.monotonic() - t0, 2))
                cluster.kill_worker(victim)
                figures["seconds_until_master_saw_it_dead"] = round(
                    wait_until(lambda: not cluster.worker_alive(victim), 120, "the master to drop the worker"), 2)
                figures["seconds_until_worker_back"] = round(cluster.restart_worker(victim), 2)
            stdout, _ = proc.communicate(timeout=1800)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if victim is None:
            continue
        run = {"returncode": proc.returncode, **_last_json(stdout)}
        figures.update(job_seconds=round(time.monotonic() - t0, 2), status=run.get("status"),
                       run_id=run.get("run_id"))
        if run["returncode"] == 0 and run.get("status") == "ok":
            figures["outcome"] = "finished: the lost tasks ran again on the other worker"
        else:
            again = run_job_cli(env, job, folder)
            figures.update(next_status=again.get("status"), next_run_id=again.get("run_id"),
                           outcome="failed; the next run " + ("succeeded" if again.get("status") == "ok" else "failed"))
        ids = {figures.get("run_id"), figures.get("next_run_id")} - {None}
        figures["job_runs"] = {r["id"]: r["status"] for r in history(env, job) if r["id"] in ids}
        figures["job_completed"] = "ok" in (figures.get("status"), figures.get("next_status"))
        return figures
    figures["job_completed"] = False
    return figures


def spark_failover(folder: Path, database_url: str, storage_url: str, quick: bool = True) -> dict:
    """The Spark tier's drill. A real server (packs at ``storage_url``, metadata at
    ``database_url``, an empty database) is seeded through its API; a standalone master and two
    workers start; every job (``quick``: :data:`QUICK_JOBS`) runs once on ``spark://`` and, unless ``quick``, once on
    ``local[2]`` (each set in one driver, timed per job); then a job is run on the cluster and
    one worker is SIGKILLed while it runs a task, and restarted. Afterwards every live file must read back byte-identical and
    ``fsck --deep`` must be clean. Returns the figures; the pass conditions are
    ``job_completed``, ``lost_acknowledged_writes == 0``, ``fsck_clean`` and
    ``workers_alive_at_end == 2``."""
    folder = Path(folder)
    (folder / "server").mkdir(parents=True, exist_ok=True)
    figures: dict = {"quick": quick}
    proc, server = start_server(folder / "server", database_url,
                                extra_env={"BLOCKDRIVE_STORAGE_URL": storage_url})
    cluster = SparkStandalone(folder / "spark")
    try:
        with scratch_database(database_url, "rebuilt", folder) as into, \
                scratch_database(database_url, "rebuilt_local", folder) as into_local:
            t0 = time.monotonic()
            user, files = seed(server, quick)
            figures.update(files=len(files), bytes=sum(map(len, files.values())),
                           seed_seconds=round(time.monotonic() - t0, 2))
            t0 = time.monotonic()
            cluster.start()
            figures["cluster_start_seconds"] = round(time.monotonic() - t0, 2)
            env = jobs_env(server, cluster.master_url)
            figures["standalone"] = time_jobs(env, into, folder, QUICK_JOBS if quick else JOBS)
            # The comparison costs as long again: the full drill only.
            figures["local2"] = None if quick else time_jobs(jobs_env(server, "local[2]"), into_local, folder)
            figures["worker_killed"] = kill_worker_mid_job(cluster, env, folder)
            figures["job_completed"] = figures["worker_killed"]["job_completed"]
            bad = unreadable(user, files)
            figures["lost_acknowledged_writes"] = len(bad)
            figures["fsck_clean"] = fsck_clean(server.env)
            figures["workers_alive_at_end"] = len(cluster.alive_workers())
    finally:
        cluster.stop()
        stop_server(proc)
    return figures


def run_jobs(names: list[str], into: str | None = None) -> dict:
    """Run ``names`` one after the other in this process, on the master the configuration
    (``BLOCKDRIVE_*``) names, with one Spark session for all: per job its status, its
    seconds and its stats, and the session's start-up seconds. ``into`` is rebuild_index's
    fresh database."""
    import argparse

    from jobs.cli import open_drive, spark_log
    from jobs.runner import run_job
    from jobs.spark import get_spark, keep_output_in, stop_spark
    drive = open_drive(argparse.Namespace(config=None))
    keep_output_in(spark_log(drive.config))
    t0 = time.monotonic()
    spark = get_spark(drive.config)
    out: dict = {"session_seconds": round(time.monotonic() - t0, 2), "jobs": {}}
    try:
        for name in names:
            res = run_job(name, drive, spark, options={"into": into} if into and name == "rebuild_index" else {})
            out["jobs"][name] = {"status": str(res.status), "seconds": round(res.seconds, 2), "run_id": res.run_id}
    finally:
        stop_spark(jvm=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m rehearsal.spark run-jobs [--into URL] NAME...``: :func:`run_jobs`, its figures
    as one JSON line on stdout."""
    import argparse
    p = argparse.ArgumentParser(prog="python -m rehearsal.spark")
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run-jobs", help="run maintenance jobs in one Spark session, print their times")
    run.add_argument("--into", default=os.environ.get(INTO_VAR),
                     help=f"rebuild_index's fresh database (default: ${INTO_VAR})")
    run.add_argument("names", nargs="+", choices=JOBS)
    args = p.parse_args(argv)
    print(json.dumps(run_jobs(args.names, args.into)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
