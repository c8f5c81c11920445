"""Looking up a name in a folder reads that name's keys, not the folder: the work of
``live_child`` and ``clashes`` does not grow with the number of children.

The work is counted by the database itself: SQLite's virtual-machine steps (a progress handler
called on every step) and MariaDB's handler reads (``Handler_read_%`` of the session)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from storage import tree
from storage.errors import Conflict
from storage.models import Node
from storage.names import fold_key
from storage.tree import live_columns

CHILDREN = 1000


def _work(s, fn):
    """``fn()``'s answer and how much the database did for it, run on session ``s``'s
    connection."""
    conn = s.connection()
    if conn.dialect.name == "sqlite":
        raw = conn.connection.dbapi_connection
        steps = [0]

        def step():
            steps[0] += 1
            return 0
        raw.set_progress_handler(step, 1)
        try:
            answer = fn()
        finally:
            raw.set_progress_handler(None, 1)
        return answer, steps[0]

    def reads() -> int:
        return sum(int(v) for _k, v in conn.exec_driver_sql("SHOW SESSION STATUS LIKE 'Handler_read%%'"))
    before = reads()
    answer = fn()
    return answer, reads() - before


def _folder_with(drive, user, name: str, n: int) -> int:
    """A folder of ``user``'s named ``name`` holding ``n`` files (rows only: the test looks up
    names and reads no content)."""
    folder = drive.mkdir(user.id, user.root_id, name).id
    drive.skip_fsck = True  # bare rows: no versions, not counted in the owner's node count
    with drive.sm() as s, s.begin():
        path = s.execute(sa.select(Node.path).where(Node.id == folder)).scalar_one()
        s.execute(sa.insert(Node), [dict(owner_id=user.id, parent_id=folder, kind="file", name=f"c{i:05d}.txt",
                                         path=path, **live_columns(f"c{i:05d}.txt")) for i in range(n)])
    return folder


def test_a_name_is_found_in_a_big_folder_by_its_keys(drive, make_user):
    u = make_user()
    small = _folder_with(drive, u, "small", 1)
    big = _folder_with(drive, u, "big", CHILDREN)
    work = {}
    with drive.sm() as s:
        for label, folder in (("small", small), ("big", big)):
            # a free name, a name there, and a name there in another case
            free, work[label, "free"] = _work(s, lambda f=folder: tree.live_child(s, f, "new.txt"))
            assert free is None
            hit, work[label, "hit"] = _work(s, lambda f=folder: tree.live_child(s, f, "c00000.txt"))
            assert hit.name == "c00000.txt"
            clash, work[label, "clash"] = _work(s, lambda f=folder: tree.clashes(s, {(f, "C00000.TXT"), (f, "other.txt")}))
            assert clash == {(folder, "C00000.TXT"): "c00000.txt"}
            many, work[label, "many"] = _work(s, lambda f=folder: tree.live_children(s, f, ["new.txt", "c00000.txt"]))
            assert many["new.txt"] is None and many["c00000.txt"].name == "c00000.txt"
    for what in ("free", "hit", "clash", "many"):
        # The factored form (folder AND (name OR fold)) reads all 1,000 children: dozens of
        # times the small folder's work. By the keys, the two folders cost about the same.
        assert work["big", what] <= 2 * work["small", what] + 20, (what, work)


def test_a_case_clash_is_still_refused(drive, make_user):
    u = make_user()
    folder = _folder_with(drive, u, "f", 10)
    with drive.sm() as s:
        assert tree.live_child(s, folder, "c00003.txt").name == "c00003.txt"
        assert tree.live_child(s, folder, "c00003.txt.bak") is None
        with pytest.raises(Conflict, match="only in case"):
            tree.live_child(s, folder, "C00003.TXT")
        assert fold_key("C00003.TXT") == fold_key("c00003.txt")


def test_names_looked_up_together_are_each_found_free_or_refused(drive, make_user):
    u = make_user()
    folder = _folder_with(drive, u, "f", 10)
    with drive.sm() as s:
        got = tree.live_children(s, folder, ["c00001.txt", "c00002.txt", "new.txt"])
        assert {k: v and v.name for k, v in got.items()} == {"c00001.txt": "c00001.txt", "c00002.txt": "c00002.txt",
                                                             "new.txt": None}
        with pytest.raises(Conflict, match="only in case"):
            tree.live_children(s, folder, ["new.txt", "C00003.TXT"])
        assert tree.live_children(s, folder, []) == {}
