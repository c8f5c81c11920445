"""Readiness (storage/servers.py): a check writes to the database and the pack backend, at
most once per interval, and says which one failed; the heartbeat rows it leaves."""

from __future__ import annotations

import sqlalchemy as sa

from storage import clock
from storage.backends.local import LocalBackend
from storage.servers import FORGET_AFTER, PROBE_PREFIX, Readiness, beat, servers


class Counting:
    """A backend that counts the probe's writes and can be made to fail them."""

    def __init__(self, inner):
        self.inner, self.puts, self.fail = inner, 0, None

    def put(self, key, data):
        self.puts += 1
        if self.fail:
            raise self.fail
        self.inner.put(key, data)

    def read(self, key):
        return self.inner.read(key)

    def delete(self, key):
        self.inner.delete(key)


def test_a_check_writes_both_and_leaves_a_heartbeat_and_no_probe_object(drive, tmp_path):
    backend = LocalBackend((tmp_path / "probe").as_uri())
    ready = Readiness(drive.engine, drive.sm, backend, interval=0)
    assert ready.check() == {"database": "ok", "storage": "ok"}
    assert list(backend.list(PROBE_PREFIX.rstrip("/"))) == []
    (row,) = servers(drive.sm, clock.now() - FORGET_AFTER)
    assert row.id == ready.server_id and row.seen_at >= row.started_at
    clock.advance(5)
    ready.check()
    (again,) = servers(drive.sm, clock.now() - FORGET_AFTER)
    assert again.seen_at > row.seen_at


def test_checks_within_the_interval_get_the_last_answer(drive, tmp_path):
    backend = Counting(LocalBackend((tmp_path / "probe").as_uri()))
    ready = Readiness(drive.engine, drive.sm, backend, interval=3600)
    assert ready.check()["storage"] == "ok"
    backend.fail = OSError(28, "No space left on device")
    assert ready.check()["storage"] == "ok" and backend.puts == 1
    ready.interval = 0
    failed = ready.check()
    assert backend.puts == 2
    assert failed["database"] == "ok"
    assert failed["storage"].startswith("OSError") and "No space left" in failed["storage"]


def test_a_database_that_cannot_be_written_is_not_ready(drive, tmp_path):
    ready = Readiness(drive.engine, drive.sm, LocalBackend((tmp_path / "probe").as_uri()), interval=0)
    with drive.engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE servers"))
    try:
        checks = ready.check()
    finally:
        with drive.engine.begin() as conn:  # put it back for the fixture's fsck
            from storage.models import Server
            Server.__table__.create(conn)
    assert checks["storage"] == "ok"
    assert checks["database"] != "ok" and "servers" in checks["database"]


def test_a_week_old_heartbeat_is_forgotten_by_the_next_beat(drive):
    beat(drive.sm, "old:1", "old", 1, clock.now())
    clock.advance(FORGET_AFTER.total_seconds() + 60)
    beat(drive.sm, "new:2", "new", 2, clock.now())
    assert [s.id for s in servers(drive.sm, clock.now() - 10 * FORGET_AFTER)] == ["new:2"]
