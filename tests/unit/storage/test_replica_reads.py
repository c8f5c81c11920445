"""Reads that may go to the database replica (storage/db.py ``ReplicaReads``): a folder listing
goes to the replica only when it has applied everything the primary had committed, and to the
primary when there is no replica, when it lags beyond the bound, or when it is down — never an
error, never stale. The MariaDB cases run on a real primary and replica (rehearsal/mariadb.py)."""

from __future__ import annotations

import os
import time

import pytest
from sqlalchemy.exc import OperationalError

from rehearsal.mariadb import MariaDBPair, mariadb_available
from storage.config import load_config
from storage.db import ReplicaReads, make_engine, migrate
from storage.drive import Drive
from storage.errors import ConfigError
from tests.conftest import FAST_SCRYPT, SMALL_CHUNKS


def drive_config(tmp_path, **database):
    return load_config(env={}, overrides={"storage": {"home": str(tmp_path / "home"), **SMALL_CHUNKS},
                                          "security": FAST_SCRYPT, "database": database})


def routed(drive: Drive) -> list[tuple[str, str]]:
    seen: list[tuple[str, str]] = []
    drive.replica_reads.listeners.append(lambda target, reason: seen.append((target, reason)))
    return seen


def names(drive: Drive, user, folder_id: int) -> set[str]:
    return {n.name for n in drive.list_children(user.id, folder_id, limit=1000)[0]}


def test_without_a_replica_listings_read_the_primary(tmp_path):
    drive = Drive(drive_config(tmp_path))
    try:
        migrate(drive.engine)
        seen = routed(drive)
        user, _ = drive.create_user("a@example.com", "password123")
        drive.mkdir(user.id, user.root_id, "docs")
        assert names(drive, user, user.root_id) == {"docs"}
        assert seen == [("primary", "no_replica")]
    finally:
        drive.close()


def test_a_replica_needs_a_mariadb_primary(tmp_path):
    with pytest.raises(ConfigError, match="replica_url"):
        Drive(drive_config(tmp_path, replica_url="mysql+pymysql://u:p@127.0.0.1:1/db"))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    if not mariadb_available():
        if os.environ.get("CI") == "true":
            pytest.fail("MariaDB (mariadbd, mariadb-install-db) is not installed: apt-get install mariadb-server")
        pytest.skip("MariaDB is not installed (apt-get install mariadb-server)")
    with MariaDBPair(tmp_path_factory.mktemp("mariadb")) as p:
        engine = make_engine(p.primary_url)
        migrate(engine)
        engine.dispose()
        yield p


@pytest.fixture
def drive(pair, tmp_path):
    pair.caught_up(30)
    d = Drive(drive_config(tmp_path, url=pair.primary_url, replica_url=pair.replica_url,
                           replica_wait_ms=2000, replica_retry_seconds=1.0))
    yield d
    d.close()


@pytest.fixture
def user(drive):
    return drive.create_user(f"u{os.urandom(4).hex()}@example.com", "password123")[0]


def test_a_caught_up_replica_serves_listings_and_each_sees_the_write_before_it(drive, user):
    seen = routed(drive)
    for i in range(10):
        drive.mkdir(user.id, user.root_id, f"d{i}")
        assert f"d{i}" in names(drive, user, user.root_id)
    assert seen == [("replica", "caught_up")] * 10


def test_a_lagging_replica_leaves_the_listing_to_the_primary(pair, drive, user):
    drive.replica_reads.wait_seconds = 0.2
    seen = routed(drive)
    pair.replica.admin("STOP SLAVE SQL_THREAD")
    try:
        drive.mkdir(user.id, user.root_id, "fresh")
        assert "fresh" in names(drive, user, user.root_id)
        assert seen == [("primary", "lagging")]
    finally:
        pair.replica.admin("START SLAVE SQL_THREAD")
    assert pair.caught_up(30)
    assert "fresh" in names(drive, user, user.root_id)
    assert seen[-1] == ("replica", "caught_up")


def test_a_dead_replica_leaves_listings_to_the_primary_until_it_is_back(pair, drive, user):
    seen = routed(drive)
    drive.mkdir(user.id, user.root_id, "before")
    pair.kill_replica()
    try:
        drive.mkdir(user.id, user.root_id, "during")
        assert names(drive, user, user.root_id) == {"before", "during"}
        assert names(drive, user, user.root_id) == {"before", "during"}
        # the first read found it down; the next did not try it again (replica_retry_seconds)
        assert seen == [("primary", "down"), ("primary", "down")]
    finally:
        pair.restart_replica()
    time.sleep(1.2)  # replica_retry_seconds
    assert pair.caught_up(30)
    drive.mkdir(user.id, user.root_id, "after")
    assert names(drive, user, user.root_id) == {"before", "during", "after"}
    assert seen[-1] == ("replica", "caught_up")


def test_a_read_the_replica_fails_runs_again_on_the_primary(drive):
    rr: ReplicaReads = drive.replica_reads
    seen = routed(drive)
    tried = []

    def read(sessions):
        tried.append(sessions)
        if sessions is rr.replica:
            raise OperationalError("SELECT 1", {}, Exception("Lost connection to server during query"))
        with sessions() as s:
            return s.connection().exec_driver_sql("SELECT 1").scalar()

    assert rr.run(read) == 1
    assert tried == [rr.replica, rr.primary]
    assert seen == [("primary", "failed")]
