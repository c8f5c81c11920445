"""One SparkSession for the whole test run (a local session takes 7-14 s to start), and a
drive configured with small packs so that compaction has something to do."""

from __future__ import annotations

import pytest

from storage import clock
from storage.config import load_config
from tests.conftest import FAST_SCRYPT, SMALL_CHUNKS

JOBS_TEST = {"target_pack_bytes": 512 * 1024, "fill_threshold": 0.5, "dead_ratio": 0.3,
             "shuffle_partitions": 2, "lease_seconds": 600}


@pytest.fixture
def spark():
    """The process's shared SparkSession, made on first use and looked up per test: a test
    that ended the JVM (the scheduler does after each run; the reliability suite replaces it
    when its heap fills) hands the next test a fresh one. It ends with the test process."""
    from jobs.spark import get_spark
    return get_spark(load_config(env={}, overrides={"jobs": {"shuffle_partitions": 4}}))


def jobs_config(tmp_path, grace=3600, **jobs):
    return load_config(env={}, overrides={
        # a pack per upload, not the shared open pack: these tests build the layouts (many
        # small sealed packs, one pack per file) that compact, scrub and tier act on
        "storage": {"home": str(tmp_path / "home"), **SMALL_CHUNKS, "shared_pack_request_bytes": 0},
        "security": FAST_SCRYPT,
        "gc": {"grace_seconds": grace},
        "jobs": {**JOBS_TEST, **jobs},
    })


@pytest.fixture
def config(tmp_path):
    return jobs_config(tmp_path)


@pytest.fixture
def run(drive, spark):
    """run("gc", dry_run=False, safety=..., grace=0): run a job on the test drive."""
    from jobs.runner import run_job

    def go(name, grace=None, safety=None, **kw):
        cfg = drive.config
        if grace is not None:
            cfg = type(cfg)({**cfg, "gc": {**cfg["gc"], "grace_seconds": grace}})
        extra = {"safety": safety} if safety is not None else {}
        return run_job(name, drive, spark, cfg, **extra, **kw)
    yield go
    clock.reset()
