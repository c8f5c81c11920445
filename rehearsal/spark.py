"""Spark standalone for the rehearsal: a master and its workers started from pyspark's own
distribution (``bin/spark-class``), on 127.0.0.1 with free ports and every folder (work dirs,
logs, scratch) under one folder, so that the maintenance jobs run with ``spark://`` as their
master, in executors that are JVMs of their own.

:class:`SparkStandalone` starts, kills and restarts the processes; :func:`spark_failover` is the
tier's drill (see its docstring)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import requests

from rehearsal.procs import Proc, free_port, wait_http, wait_until

__all__ = ["SparkStandalone", "spark_home"]

#: JVM start-up on a loaded two-core machine is slow: every wait on a Spark process is this long.
START_TIMEOUT = 180


def spark_home() -> Path:
    """pyspark's own distribution (it has ``bin/spark-class`` and the jars)."""
    import pyspark
    return Path(pyspark.__file__).resolve().parent


class SparkStandalone:
    """A standalone master and ``workers`` workers (each ``cores`` cores and ``memory`` for its
    executors), data under ``folder``. Executors run this interpreter (``PYSPARK_PYTHON``).

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
        return {**os.environ, "SPARK_HOME": str(home), "SPARK_LOCAL_IP": "127.0.0.1",
                "SPARK_LOG_DIR": str(self.folder / name / "logs"), "SPARK_PID_DIR": str(self.folder / name),
                "SPARK_LOCAL_DIRS": str(scratch), "SPARK_CONF_DIR": str(self.folder / "conf"),
                "SPARK_DAEMON_MEMORY": "512m", "PYSPARK_PYTHON": sys.executable}

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

    def executor_logs(self, i: int) -> list[Path]:
        """The stderr files of the executors worker ``i`` has run (``work/<app>/<executor>/stderr``)."""
        return sorted((self.folder / f"worker-{i}" / "work").glob("*/*/stderr"))

    def tasks_started(self, i: int) -> int:
        """How many tasks the executors of worker ``i`` have started (from their logs)."""
        n = 0
        for path in self.executor_logs(i):
            try:
                n += path.read_text(errors="replace").count("Running task")
            except OSError:
                pass
        return n

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
