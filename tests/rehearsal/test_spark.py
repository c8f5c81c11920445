"""Spark standalone in the rehearsal: every maintenance job on ``spark://`` against packs on HDFS
and metadata in MariaDB, and a worker SIGKILLed while it runs a task of a job."""

from __future__ import annotations

import json
import os
import shutil
import uuid
from urllib.parse import urlsplit

import pytest

from rehearsal.spark import scratch_database, spark_failover
from tests.services import engine_missing


def _engine_missing() -> str | None:
    try:
        import pyspark  # noqa: F401
    except ImportError:
        return "pyspark is not installed"
    if shutil.which("java") is None:
        return "java is not installed (Spark needs a JRE 17)"
    return None


@pytest.fixture
def spark_engine():
    missing = _engine_missing()
    if missing:
        engine_missing(missing)


@pytest.fixture
def hdfs_folder(webhdfs_url, hdfs_url):
    """A folder of this test's own on the test HDFS, as a webhdfs:// URL (the server's gunicorn
    workers cannot use an hdfs-native client made before they fork), removed afterwards."""
    from hdfs_native import Client
    web = urlsplit(webhdfs_url)
    path = f"{web.path.rstrip('/')}/spark-{uuid.uuid4().hex[:8]}"
    yield f"{web.scheme}://{web.netloc}{path}"
    rpc = urlsplit(hdfs_url)
    Client(f"{rpc.scheme}://{rpc.netloc}").delete(path, True)


@pytest.mark.integration
def test_worker_killed_mid_job(spark_engine, mysql_url, hdfs_folder, tmp_path):
    with scratch_database(mysql_url, f"spark_{os.getpid()}", tmp_path) as db_url:
        figures = spark_failover(tmp_path / "drill", db_url, hdfs_folder, quick=True)
    print(json.dumps(figures, indent=1))
    killed = figures["worker_killed"]
    assert killed["killed_mid_task"], "no task of the job was ever seen running on a worker"
    assert killed["job_completed"], killed
    assert all(j["status"] == "ok" for j in figures["standalone"]["jobs"].values()), figures["standalone"]
    assert figures["lost_acknowledged_writes"] == 0
    assert figures["fsck_clean"]
    assert figures["workers_alive_at_end"] == 2
