"""storage.db.get_row: Session.get's answers, with one prebuilt select for a row the session
has not loaded."""

from __future__ import annotations

import sqlalchemy as sa

from storage.db import get_row, rows_by_id
from storage.models import FileVersion, Node, User
from tests.conftest import put_bytes, rand


def _statements(engine) -> tuple[list[str], callable]:
    seen: list[str] = []

    def statement(_conn, _cursor, text, *_):
        seen.append(text)
    sa.event.listen(engine, "before_cursor_execute", statement)
    return seen, lambda: sa.event.remove(engine, "before_cursor_execute", statement)


def test_a_row_not_loaded_is_read_once_and_then_held(drive, make_user):
    u = make_user()
    res = put_bytes(drive, u, "a.bin", rand(100))
    seen, stop = _statements(drive.engine)
    try:
        with drive.sm() as s:
            node = get_row(s, Node, res.node.id)
            assert (node.name, node.owner_id, node.current_version_id) == ("a.bin", u.id, res.version_id)
            assert get_row(s, Node, res.node.id) is node  # the session's own object, no second read
            assert s.get(Node, res.node.id) is node
            v = get_row(s, FileVersion, res.version_id)
            assert (v.size, v.node_id) == (100, res.node.id)
            assert get_row(s, User, u.id).email == u.email
    finally:
        stop()
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 3


def test_a_missing_row_is_none(drive, make_user):
    make_user()
    with drive.sm() as s:
        assert get_row(s, Node, 10**9) is None
        assert get_row(s, User, -1) is None


def test_an_expired_row_is_read_again(drive, make_user):
    """What the session holds but has expired is refreshed, as Session.get would: a change
    committed by another session since is seen."""
    u = make_user()
    res = put_bytes(drive, u, "b.bin", rand(10))
    with drive.reads() as s:
        node = get_row(s, Node, res.node.id)
        drive.move(u.id, res.node.id, name="c.bin")
        assert get_row(s, Node, res.node.id).name == "b.bin"  # held, not expired: as s.get
        s.rollback()  # a new transaction, with everything the session holds expired
        assert get_row(s, Node, res.node.id) is node
        assert node.name == "c.bin"


def test_many_rows_are_read_in_one_select_and_the_held_ones_kept(drive, make_user):
    u = make_user()
    ids = [put_bytes(drive, u, f"{i}.bin", rand(100, i)).node.id for i in range(3)]
    seen, stop = _statements(drive.engine)
    try:
        with drive.sm() as s:
            held = get_row(s, Node, ids[0])
            got = rows_by_id(s, Node, ids + [10 ** 9])  # a missing id is left out
            assert sorted(got) == sorted(ids) and got[ids[0]] is held
            assert [got[i].name for i in ids] == ["0.bin", "1.bin", "2.bin"]
            assert rows_by_id(s, Node, [ids[1]]) == {ids[1]: got[ids[1]]} and rows_by_id(s, Node, []) == {}
    finally:
        stop()
    assert len([q for q in seen if q.lstrip().upper().startswith("SELECT")]) == 2  # the held row, then the rest
