"""Fixtures of the reliability suite: one Spark JVM for the whole run, which job subprocesses
attach to (tests/reliability/driver.py), replaced by a fresh one when its heap fills."""

from __future__ import annotations

import gc
import os
import time

import pytest

HEAP_LIMIT = 0.4  # of the JVM's maximum heap, still in use after a full collection


class SharedSpark:
    """The suite's Spark JVM. Every job run leaves some state in a JVM (see
    ``jobs.spark.stop_spark``), and a client SIGKILLed halfway releases nothing of what it
    made there: hundreds of killed runs fill a heap. :meth:`recycle` ends the JVM once the heap
    still in use after a full collection passes ``HEAP_LIMIT``; the next use starts a fresh
    one, and :attr:`session` and :meth:`env` then name the new one."""

    def __init__(self):
        self.restarts = 0

    @property
    def session(self):
        from jobs.spark import get_spark
        from storage.config import load_config
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        return get_spark(load_config(env={}, overrides={"jobs": {"shuffle_partitions": 2}}))

    def env(self) -> dict:
        """Environment for a job subprocess: attach to this JVM instead of starting one."""
        gp = self.session.sparkContext._gateway.gateway_parameters
        return {"PYSPARK_GATEWAY_PORT": str(gp.port), "PYSPARK_GATEWAY_SECRET": gp.auth_token,
                "SPARK_LOCAL_IP": "127.0.0.1"}

    def heap_used(self) -> float:
        jvm = self.session._jvm
        gc.collect()  # Python proxies first, so that py4j lets go of their JVM objects
        jvm.java.lang.System.gc()
        time.sleep(0.2)
        rt = jvm.java.lang.Runtime.getRuntime()
        return (rt.totalMemory() - rt.freeMemory()) / rt.maxMemory()

    def recycle(self, limit: float = HEAP_LIMIT) -> bool:
        """End the JVM if its heap is past ``limit``; True if it did. Call it when no job
        subprocess is attached."""
        if self.heap_used() <= limit:
            return False
        from jobs.spark import stop_spark
        stop_spark(jvm=True)
        self.restarts += 1
        return True


@pytest.fixture(scope="session")
def shared_spark():
    return SharedSpark()


@pytest.fixture
def spark(shared_spark):
    shared_spark.recycle()
    return shared_spark.session


@pytest.fixture
def spark_env(spark, shared_spark) -> dict:
    return shared_spark.env()
