"""Shared fixtures: a configured, migrated blockdrive on SQLite (and on MariaDB where the
services are up), users, and an fsck after every test that used a drive."""

from __future__ import annotations

import atexit
import io
import os
import secrets

import pytest
import sqlalchemy as sa

from storage import clock
from storage.config import load_config
from storage.db import make_engine, migrate
from storage.drive import Drive
from storage.models import Base
from tests.services import hdfs_url, mysql_url, s3_endpoint, s3_url, webhdfs_url  # noqa: F401  (fixtures)

FAST_SCRYPT = {"scrypt_n": 1024, "scrypt_r": 8, "scrypt_p": 1}  # tests only: speed over strength
SMALL_CHUNKS = {"chunk_min": 16 * 1024, "chunk_avg": 64 * 1024, "chunk_max": 256 * 1024}


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: needs a real service (MariaDB, HDFS, S3)")


def make_config(tmp_path, **storage):
    return load_config(env={}, overrides={
        "storage": {"home": str(tmp_path / "home"), **SMALL_CHUNKS, **storage},
        "security": FAST_SCRYPT,
        "gc": {"grace_seconds": 3600},
    })


_mysql_engines: dict[str, sa.engine.Engine] = {}


def _mysql_engine(url: str):
    """A database of this test run's own (``<db>_<pid>``), migrated once, emptied between tests:
    two runs at once on one server never see each other's rows."""
    if url not in _mysql_engines:
        base = sa.engine.make_url(url)
        own = base.set(database=f"{base.database}_{os.getpid()}")
        server = make_engine(base.set(database=None).render_as_string(hide_password=False))
        with server.begin() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
            conn.exec_driver_sql(f"CREATE DATABASE `{own.database}` CHARACTER SET utf8mb4")
        engine = make_engine(own.render_as_string(hide_password=False))
        migrate(engine)
        _mysql_engines[url] = engine

        def drop():
            engine.dispose()
            with server.begin() as conn:
                conn.exec_driver_sql(f"DROP DATABASE IF EXISTS `{own.database}`")
            server.dispose()
        atexit.register(drop)
    engine = _mysql_engines[url]
    with engine.begin() as conn:  # empty tables between tests
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=0")
        for table in reversed(Base.metadata.sorted_tables):
            conn.exec_driver_sql(f"DELETE FROM `{table.name}`")
        conn.exec_driver_sql("SET FOREIGN_KEY_CHECKS=1")
    return engine


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def db_engine(request, tmp_path):
    """A migrated, empty metadata database: SQLite always, MariaDB from the services env."""
    if request.param == "sqlite":
        engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
        migrate(engine)
        yield engine
        engine.dispose()
    else:
        yield _mysql_engine(request.getfixturevalue("mysql_url"))


@pytest.fixture
def config(tmp_path):
    return make_config(tmp_path)


@pytest.fixture
def drive(config, db_engine):
    clock.reset()
    d = Drive(config, engine=db_engine)
    yield d
    clock.reset()
    if getattr(d, "skip_fsck", False):
        return
    from storage.fsck import fsck
    rep = fsck(d, deep=True)
    assert rep.ok, "fsck after the test:\n" + "\n".join(map(str, rep.problems))


@pytest.fixture
def make_user(drive):
    def make(email=None, premium=False):
        user, token = drive.create_user(email or f"u{secrets.token_hex(4)}@example.com", "password123",
                                        premium=premium)
        return user
    return make


def rand(n: int, seed: int | None = None) -> bytes:
    if seed is None:
        return os.urandom(n)
    import random
    return random.Random(seed).randbytes(n)


def put_bytes(drive, user, name, data, parent=None, **kw):
    return drive.put(user.id, parent or user.root_id, name, io.BytesIO(data), **kw)


def read_all(drive, user, node_id, **kw) -> bytes:
    _node, _v, chunks = drive.open(user.id, node_id, **kw)
    return b"".join(chunks)


# ---- reporting: time per stage and tests per real service, printed at the end of the run ----

_SERVICE_FIXTURES = {"mysql_url": "MariaDB", "webhdfs_url": "HDFS (WebHDFS)", "hdfs_url": "HDFS (native RPC)",
                     "s3_url": "S3", "s3_endpoint": "S3"}
_stage_seconds: dict[str, float] = {}
_service_counts: dict[str, dict[str, int]] = {}


def pytest_runtest_logreport(report):
    parts = report.nodeid.split("/")
    stage = parts[1] if len(parts) > 2 and parts[0] == "tests" else "other"
    _stage_seconds[stage] = _stage_seconds.get(stage, 0.0) + report.duration
    if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
        for fixture, service in _SERVICE_FIXTURES.items():
            if fixture in getattr(report, "_bd_fixtures", ()):
                counts = _service_counts.setdefault(service, {})
                counts[report.outcome] = counts.get(report.outcome, 0) + 1
                break


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    names = list(item.fixturenames)
    params = getattr(getattr(item, "callspec", None), "params", {})
    if "mariadb" in params.values():  # db_engine asks for mysql_url only at run time
        names.insert(0, "mysql_url")
    outcome.get_result()._bd_fixtures = tuple(names)


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    tr.section("blockdrive: time per stage")
    for stage, secs in sorted(_stage_seconds.items()):
        tr.write_line(f"{stage:<12} {secs:8.1f}s")
    tr.section("blockdrive: tests run against real services")
    versions = os.environ.get("BLOCKDRIVE_TEST_SERVICE_VERSIONS", "unknown (services not started)")
    tr.write_line(f"service versions: {versions}")
    if not _service_counts:
        tr.write_line("no test used a real service")
    for service, counts in sorted(_service_counts.items()):
        tr.write_line(f"{service:<20} " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if os.environ.get("BLOCKDRIVE_SKIP_SERVICES") == "1":
        tr.write_line("BLOCKDRIVE_SKIP_SERVICES=1: tests needing MariaDB, HDFS or S3 were SKIPPED")
    from tests.reliability import figures
    rows = figures.records()
    if rows:
        tr.section(f"blockdrive: reliability figures ({figures.MODE})")
        for line in figures.table(rows):
            tr.write_line(line)
        tr.write_line(f"written to {figures.write(rows).relative_to(figures.ROOT)}")
