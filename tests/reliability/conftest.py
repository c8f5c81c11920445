"""Fixtures of the reliability suite: one Spark session for the whole run, and the environment
that lets a job subprocess attach to its JVM (tests/reliability/driver.py)."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session")
def spark():
    from jobs.spark import get_spark, stop_spark
    from storage.config import load_config
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    s = get_spark(load_config(env={}, overrides={"jobs": {"shuffle_partitions": 2}}))
    yield s
    stop_spark()


@pytest.fixture(scope="session")
def spark_env(spark) -> dict:
    """Environment for a job subprocess: attach to this session's JVM instead of starting one."""
    gp = spark.sparkContext._gateway.gateway_parameters
    return {"PYSPARK_GATEWAY_PORT": str(gp.port), "PYSPARK_GATEWAY_SECRET": gp.auth_token,
            "SPARK_LOCAL_IP": "127.0.0.1"}
