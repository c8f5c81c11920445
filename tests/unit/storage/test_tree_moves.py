"""Two moves that cross (A into B while B goes into A) run as real concurrent transactions,
each in its own thread and session. A barrier holds each one at its first write or locking
statement until both have done their reads, so both pass the cycle check on what they read
(the race a plain check-then-write loses). Exactly one may commit; the other gets Conflict;
the tree has no cycle."""

import threading

import pytest
import sqlalchemy as sa

from storage.errors import Conflict
from storage.models import Node


def _first_write(statement: str) -> bool:
    s = statement.lstrip().upper()
    return s.startswith(("UPDATE", "INSERT", "DELETE", "BEGIN IMMEDIATE")) or "FOR UPDATE" in s


def crossed_moves(drive, user_id, moves):
    barrier = threading.Barrier(len(moves))
    # On SQLite writers pass one at a time (storage.db.WriterGate): the second mover reaches
    # its BEGIN IMMEDIATE only once the first has committed, so the first waits here in vain.
    wait = 1 if drive.engine.dialect.name == "sqlite" else 10
    movers: set[int] = set()
    held: set[int] = set()

    def gate(conn, cursor, statement, *args):
        me = threading.get_ident()
        if me in movers and me not in held and _first_write(statement):
            held.add(me)
            try:
                barrier.wait(timeout=wait)
            except threading.BrokenBarrierError:  # the other one is already waiting on a lock we hold
                pass

    results: dict[int, str] = {}

    def run(i, node_id, parent_id):
        movers.add(threading.get_ident())
        try:
            drive.move(user_id, node_id, parent_id=parent_id)
            results[i] = "moved"
        except Conflict:
            results[i] = "conflict"
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            results[i] = repr(exc)

    sa.event.listen(drive.engine, "before_cursor_execute", gate)
    try:
        threads = [threading.Thread(target=run, args=(i, n, p)) for i, (n, p) in enumerate(moves)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        sa.event.remove(drive.engine, "before_cursor_execute", gate)
    assert held == movers  # both really met at the barrier
    return sorted(results.values())


def assert_no_cycle(drive, root_id):
    with drive.sm() as s:
        parent = dict(s.execute(sa.select(Node.id, Node.parent_id)).all())
    for start in parent:
        cur, steps = start, 0
        while parent.get(cur) is not None:
            cur, steps = parent[cur], steps + 1
            assert steps <= len(parent), f"node {start} is on a cycle"


@pytest.mark.parametrize("shape", ["siblings", "nested"])
def test_crossed_moves_one_wins(drive, make_user, shape):
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "A").id
    b = drive.mkdir(u.id, u.root_id, "B").id
    if shape == "siblings":
        moves = [(a, b), (b, a)]
    else:  # each goes below the other, two levels down: locking only the two rows named would not do
        under_a = drive.mkdir(u.id, drive.mkdir(u.id, a, "a1").id, "a2").id
        under_b = drive.mkdir(u.id, drive.mkdir(u.id, b, "b1").id, "b2").id
        moves = [(a, under_b), (b, under_a)]
    assert crossed_moves(drive, u.id, moves) == ["conflict", "moved"]
    assert_no_cycle(drive, u.root_id)
    tops = {n.name for n in drive.list_children(u.id, u.root_id)[0]}
    assert len(tops & {"A", "B"}) == 1
