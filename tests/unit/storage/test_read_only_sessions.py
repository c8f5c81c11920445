"""Read-only sessions (storage/db.py): on SQLite they begin DEFERRED, so they read beside a
writer that holds the lock instead of queueing behind it, and refuse to write."""

from __future__ import annotations

import sqlite3

import pytest
import sqlalchemy as sa

from storage.db import ReadOnlySession, make_engine, make_sessionmaker, migrate, read_only_sessions
from storage.models import User


@pytest.fixture
def sm(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'meta.db'}")
    migrate(engine)
    yield make_sessionmaker(engine)
    engine.dispose()


def test_a_read_runs_while_another_connection_holds_the_write_lock(sm, tmp_path):
    with sm() as s, s.begin():
        s.add(User(email="a@example.com", password_hash="x", quota_bytes=10))
    writer = sqlite3.connect(tmp_path / "meta.db", isolation_level=None, timeout=1)
    writer.execute("BEGIN IMMEDIATE")
    writer.execute("UPDATE users SET quota_bytes = 99")
    try:
        with read_only_sessions(sm)() as s:  # an IMMEDIATE begin would wait for the lock
            assert s.execute(sa.select(User.quota_bytes)).scalar_one() == 10  # the last commit
    finally:
        writer.execute("ROLLBACK")
        writer.close()


def test_reads_begin_deferred_and_writes_begin_immediate(sm):
    seen: list[str] = []
    engine = sm.kw["bind"]
    sa.event.listen(engine, "before_cursor_execute", lambda c, cur, stmt, *a: seen.append(stmt.split()[0:2]))
    with read_only_sessions(sm)() as s:
        s.execute(sa.select(User.id)).all()
    with sm() as s, s.begin():
        s.execute(sa.select(User.id)).all()
    assert [w for w in seen if w[0] == "BEGIN"] == [["BEGIN"], ["BEGIN", "IMMEDIATE"]]


@pytest.mark.parametrize("statement", [sa.update(User).values(quota_bytes=1), sa.delete(User),
                                       sa.insert(User).values(email="b@example.com", password_hash="x", quota_bytes=1)])
def test_a_write_through_a_read_only_session_is_refused_and_changes_nothing(sm, statement):
    with sm() as s, s.begin():
        s.add(User(email="a@example.com", password_hash="x", quota_bytes=10))
    with read_only_sessions(sm)() as s, pytest.raises(ReadOnlySession):
        s.execute(statement)
    with sm() as s:
        assert s.execute(sa.select(User.email, User.quota_bytes)).all() == [("a@example.com", 10)]
