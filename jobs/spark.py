"""The one place a SparkSession is built, from blockdrive's config (``[jobs]``).

Jobs take ``spark`` as a parameter; only the runner (and tests, once per session) call
:func:`get_spark`. The master is whatever the config says: ``local[2]`` on one machine,
``spark://...``, ``yarn`` or ``k8s://...`` in production; on a cluster the session ships the
``storage`` and ``jobs`` packages to the executors (:func:`code_archive`). The commands keep Spark's and the
JVM's chatter in a log file (:func:`keep_output_in`), not on the terminal.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import zipfile
from pathlib import Path

from storage.logs import FORMAT

_lock = threading.Lock()
_session = None
_code_lock = threading.Lock()
_code_zip: Path | None = None  # the zip code_archive built
_jvm_output: Path | None = None  # where a JVM started from here writes; None: this process's terminal

#: The Python loggers through which Spark's own warnings reach us (``warnings`` included).
SPARK_LOGGERS = ("py.warnings", "py4j", "pyspark")


def keep_output_in(path: Path | None) -> None:
    """Send Spark's and the JVM's own output (log4j warnings, Ivy's dependency resolution,
    Python warnings from pyspark) to the file ``path``, appended to, instead of the terminal.
    ``None`` puts it back on stderr. Takes effect for a JVM started after the call."""
    global _jvm_output
    _jvm_output = path
    logging.captureWarnings(True)
    for name in SPARK_LOGGERS:
        logger = logging.getLogger(name)
        for old in [h for h in logger.handlers if getattr(h, "_blockdrive_spark", False)]:
            logger.removeHandler(old)
            old.close()
        logger.propagate = path is None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter(FORMAT))
            handler._blockdrive_spark = True  # type: ignore[attr-defined]
            logger.addHandler(handler)


def _fork_safe_gateway() -> None:
    """pyspark starts its JVM through ``Popen(preexec_fn=...)``: Python code between fork and
    exec, which deadlocks the child when another thread holds a lock at fork time (the S3 and
    HDFS clients' threads, the scheduler's). A new session keeps Ctrl-C away from the JVM just
    as well, and then nothing runs between fork and exec."""
    import pyspark.java_gateway as gateway
    if getattr(gateway.Popen, "blockdrive_fork_safe", False):
        return
    original = gateway.Popen

    def popen(*args, **kwargs):
        if kwargs.pop("preexec_fn", None) is not None:
            kwargs["start_new_session"] = True
        if _jvm_output is None or "stdout" in kwargs or "stderr" in kwargs:
            return original(*args, **kwargs)
        _jvm_output.parent.mkdir(parents=True, exist_ok=True)
        with open(_jvm_output, "ab") as out:  # the child keeps its own copy of the descriptor
            return original(*args, stdout=out, stderr=subprocess.STDOUT, **kwargs)
    popen.blockdrive_fork_safe = True
    gateway.Popen = popen


def build_spark(cfg, app_name: str = "blockdrive-jobs"):
    from pyspark.sql import SparkSession
    _fork_safe_gateway()
    j = cfg["jobs"]
    local = j["spark_master"].startswith("local")
    # Python workers must run an interpreter that has blockdrive's dependencies (a venv). On a
    # cluster every node installs it at the same path as the driver's, or PYSPARK_PYTHON says
    # where it is.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if local:
        # A machine whose hostname does not resolve to a reachable address (containers, CI)
        # makes Spark's driver unreachable to its own executors; loopback is right for local[N].
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        repo = str(Path(__file__).resolve().parents[1])
        os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    b = (SparkSession.builder.master(j["spark_master"]).appName(app_name)
         .config("spark.sql.shuffle.partitions", str(j["shuffle_partitions"]))
         .config("spark.default.parallelism", str(j["shuffle_partitions"]))
         .config("spark.ui.enabled", "false")
         .config("spark.ui.showConsoleProgress", "false")
         .config("spark.driver.memory", j["driver_memory"])
         .config("spark.sql.session.timeZone", "UTC")
         .config("spark.sql.execution.arrow.pyspark.enabled", "true")
         .config("spark.python.worker.reuse", "true"))
    if j["jdbc"]:
        b = b.config("spark.jars.packages", j["jdbc_packages"])
    spark = b.getOrCreate()
    spark.sparkContext.setLogLevel("ERROR")
    if not local:
        # Executors elsewhere import the driver's own code, whatever is installed on their node
        # and whatever their working directory holds.
        spark.sparkContext.addPyFile(str(code_archive()))
    return spark


def code_archive() -> Path:
    """A zip of the ``storage`` and ``jobs`` packages as this driver runs them, for the
    executors' ``sys.path``; built once per process, removed at exit."""
    global _code_zip
    with _code_lock:
        if _code_zip is None or not _code_zip.exists():
            repo = Path(__file__).resolve().parents[1]
            folder = Path(tempfile.mkdtemp(prefix="blockdrive-code-"))
            atexit.register(shutil.rmtree, folder, True)
            path = folder / "blockdrive.zip"
            with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
                for package in ("storage", "jobs"):
                    for f in sorted((repo / package).rglob("*")):
                        if f.is_file() and "__pycache__" not in f.parts:
                            z.write(f, f.relative_to(repo).as_posix())
            _code_zip = path
        return _code_zip


def get_spark(cfg):
    """The process's shared session (built on first use)."""
    global _session
    with _lock:
        if _session is None:
            _session = build_spark(cfg)
        return _session


def stop_spark(jvm: bool = False) -> None:
    """Stop the shared session. With ``jvm``, end its JVM too, so that the next
    :func:`get_spark` starts a fresh one. A JVM keeps part of every job it ran (broadcast
    tables and plan state Spark does not release, some megabytes a run): a process that runs
    jobs for months, the scheduler, must hand that back between runs or its heap fills."""
    global _session
    with _lock:
        if _session is not None:
            _session.stop()
            _session = None
        if jvm:
            from pyspark import SparkContext
            gateway = SparkContext._gateway
            if gateway is None:
                return
            SparkContext._gateway = SparkContext._jvm = None
            gateway.shutdown()
            proc = getattr(gateway, "proc", None)  # None when attached to someone else's JVM
            if proc is not None:
                proc.stdin.close()  # the JVM pyspark started exits when its stdin closes
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
