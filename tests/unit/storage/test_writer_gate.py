"""storage.db.WriterGate: SQLite's writers of every thread and process take turns on a lock
beside the database, held from BEGIN IMMEDIATE until the transaction ends, whichever way."""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading

import pytest
from sqlalchemy import text

from storage.db import WriterGate, make_engine, make_sessionmaker, read_only_sessions


def free(path) -> bool:
    """Whether another holder could take the gate's file lock now."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


@pytest.fixture
def db(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path / 'gate.db'}")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    yield engine, make_sessionmaker(engine), tmp_path / ("gate.db" + WriterGate.SUFFIX)
    engine.dispose()


def test_a_write_holds_the_gate_until_it_commits_or_rolls_back(db):
    engine, sm, lock = db
    with sm() as s, s.begin():
        s.execute(text("INSERT INTO t VALUES (1)"))
        assert not free(lock)
    assert free(lock)
    with pytest.raises(RuntimeError), sm() as s, s.begin():
        s.execute(text("INSERT INTO t VALUES (2)"))
        raise RuntimeError("rolled back")
    assert free(lock)
    with sm() as s:  # begun by its first statement, closed without a commit
        s.execute(text("INSERT INTO t VALUES (3)"))
        assert not free(lock)
    assert free(lock)
    with engine.connect() as c:  # ended while the connection stays checked out
        c.execute(text("INSERT INTO t VALUES (4)"))
        assert not free(lock)
        c.rollback()
        assert free(lock)
        c.execute(text("INSERT INTO t VALUES (5)"))
        c.commit()
        assert free(lock)
        assert c.execute(text("SELECT x FROM t")).scalars().all() == [1, 5]


def test_a_failed_statement_leaves_the_gate(db):
    _engine, sm, lock = db
    with pytest.raises(Exception, match="no such table"), sm() as s, s.begin():
        s.execute(text("INSERT INTO missing VALUES (1)"))
    assert free(lock)
    with sm() as s, s.begin():  # the next writer is not kept waiting
        s.execute(text("INSERT INTO t VALUES (4)"))


def test_reads_do_not_take_the_gate(db):
    _engine, sm, lock = db
    with read_only_sessions(sm)() as s:
        assert s.execute(text("SELECT count(*) FROM t")).scalar() == 0
        assert free(lock)


def test_a_writer_waits_for_another_process_holding_the_gate(db):
    _engine, sm, lock = db
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys\n"
         f"fd = os.open({str(lock)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\nsys.stdin.readline()\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        began, done = threading.Event(), threading.Event()

        def write():
            with sm() as s, s.begin():
                s.execute(text("INSERT INTO t VALUES (5)"))
                began.set()
            done.set()
        th = threading.Thread(target=write)
        th.start()
        assert not began.wait(1.0)  # queued behind the other process, not beside it
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert done.wait(30)
        th.join()
    finally:
        holder.kill()
        holder.wait()
    assert free(lock)


def test_past_its_wait_a_writer_goes_on_without_the_gate(tmp_path):
    """The gate adds no failure: a writer it cannot let through in time is left to SQLite's
    own wait, and the next writer of the process is not blocked by it."""
    gate = WriterGate(tmp_path / "x.writers", wait_seconds=0.2)
    other = os.open(gate.path, os.O_RDWR | os.O_CREAT)
    fcntl.flock(other, fcntl.LOCK_EX)
    try:
        info: dict = {}
        gate.enter(info)
        assert info == {}
        gate.leave(info)  # nothing held, nothing released
        second: dict = {}
        gate.enter(second)  # the process's own lock was given back
        assert second == {}
    finally:
        os.close(other)
    held: dict = {}
    gate.enter(held)
    assert held and not free(gate.path)
    gate.leave(held)
    assert free(gate.path)
