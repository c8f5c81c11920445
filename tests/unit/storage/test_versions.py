"""The one commit path (storage/versions.py) and the transaction runner (storage/db.py)."""

from __future__ import annotations

import hashlib
import re

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.exc import OperationalError

from storage import versions
from storage.db import run_tx
from storage.errors import PreconditionFailed
from storage.models import FileVersion, Node, User, VersionBlock
from storage.versions import Ref
from tests.conftest import put_bytes, rand


def test_placed_gives_each_ref_its_offset():
    refs = [Ref(b"a" * 32, 5), Ref(b"b" * 32, 3), Ref(b"c" * 32, 7)]
    assert [(seq, off) for seq, _, off in versions.placed(refs)] == [(0, 0), (1, 5), (2, 8)]


class _V:
    def __init__(self, vid: int, sha: bytes):
        self.id, self.sha256 = vid, sha


def test_preconditions():
    sha = hashlib.sha256(b"x").digest()
    cur, node = _V(7, sha), object()
    versions.check_preconditions("f", node, cur, None, False)
    versions.check_preconditions("f", node, cur, 7, False)
    versions.check_preconditions("f", node, cur, "7", False)
    versions.check_preconditions("f", node, cur, sha.hex(), False)
    versions.check_preconditions("f", None, None, None, True)
    with pytest.raises(PreconditionFailed) as exc:
        versions.check_preconditions("f", node, cur, 6, False)
    assert exc.value.details["current"] == 7 and exc.value.details["current_sha256"] == sha.hex()
    with pytest.raises(PreconditionFailed):
        versions.check_preconditions("f", None, None, 7, False)  # nothing there to match
    with pytest.raises(PreconditionFailed) as exc:
        versions.check_preconditions("f", node, cur, None, True)
    assert exc.value.details["current"] == 7


def test_version_refs_read_back_what_put_wrote(drive, make_user):
    u = make_user()
    data = rand(3_000_000, seed=11)
    res = put_bytes(drive, u, "f.bin", data)
    with drive.sm() as s:
        v = s.get(FileVersion, res.version_id)
        refs = versions.version_refs(s, v)
        rows = s.execute(sa.select(VersionBlock.block_id, VersionBlock.offset)
                         .where(VersionBlock.version_id == v.id).order_by(VersionBlock.seq)).all()
    assert len(refs) > 1 and sum(r.size for r in refs) == len(data)
    assert [(r.block_id, off) for _, r, off in versions.placed(refs)] == [tuple(r) for r in rows]
    assert refs[0].block_id == hashlib.sha256(data[:refs[0].size]).digest()


def test_restore_version_charges_once_and_copies_the_refs(drive, make_user):
    u = make_user()
    first = put_bytes(drive, u, "f.bin", rand(200_000, seed=1))
    put_bytes(drive, u, "f.bin", rand(100_000, seed=2))
    with drive.sm() as s:
        before = s.get(User, u.id).used_bytes
    res = drive.restore_version(u.id, first.node.id, first.version_id)
    with drive.sm() as s:
        assert s.get(User, u.id).used_bytes == before + 200_000
        old, new = s.get(FileVersion, first.version_id), s.get(FileVersion, res.version_id)
        assert versions.version_refs(s, new) == versions.version_refs(s, old)
        assert s.get(Node, first.node.id).current_version_id == res.version_id
    assert res.node.sha256 == old.sha256.hex() and res.node.version_id == res.version_id


def test_a_node_moved_on_meanwhile_fails_the_commit(drive, make_user):
    u = make_user()
    first = put_bytes(drive, u, "f.bin", b"one")

    def run(s):
        node = s.get(Node, first.node.id)
        stale = versions.NewVersion(None, node, node.name, [], 0, hashlib.sha256(b"").digest())
        s.execute(sa.update(Node).where(Node.id == node.id).values(current_version_id=None)
                  .execution_options(synchronize_session=False))
        versions.write_versions(s, drive.limits, u.id, [stale])
    with pytest.raises(PreconditionFailed):
        drive.tx(run, attempts=1)


def test_run_tx_retries_the_races_a_retry_resolves(drive):
    calls = []

    def clash(s):
        calls.append(1)
        if len(calls) < 3:
            raise DBIntegrityError("INSERT", {}, Exception("duplicate"))
        return "done"
    assert run_tx(drive.sm, clash) == "done" and len(calls) == 3

    def deadlock(s):
        calls.append(1)
        raise OperationalError("UPDATE", {}, Exception(1213, "Deadlock found"))
    calls.clear()
    with pytest.raises(OperationalError):
        run_tx(drive.sm, deadlock, attempts=2)
    assert len(calls) == 2

    def other(s):
        calls.append(1)
        raise OperationalError("UPDATE", {}, Exception(2006, "gone away"))
    calls.clear()
    with pytest.raises(OperationalError):
        run_tx(drive.sm, other)
    assert len(calls) == 1  # not a race: raised at once



def test_a_put_reads_its_owner_once_and_repeats_no_statement_in_its_commit(drive, make_user):
    """The commit of a small put reuses what the request already checked: the owner's row is
    read once (before the body, for the quota and limit checks), and no statement of the
    commit transaction runs twice with the same parameters."""
    u = make_user()
    put_bytes(drive, u, "warm.bin", rand(4096))
    for created in (True, False):  # a new file, then a new version of it
        seen: list[str] = []

        def statement(_conn, _cursor, text, params, *_):
            seen.append(" ".join(text.split()) + f" -- {params!r}")

        def begin(_conn):
            seen.append("-- transaction --")
        sa.event.listen(drive.engine, "before_cursor_execute", statement)
        sa.event.listen(drive.engine, "begin", begin)
        try:
            res = put_bytes(drive, u, "new.bin", rand(4096))
        finally:
            sa.event.remove(drive.engine, "before_cursor_execute", statement)
            sa.event.remove(drive.engine, "begin", begin)
        assert res.created == created and res.version_id == res.node.version_id
        # the whole row (Session.get labels its columns, storage.db.get_row does not)
        assert sum(1 for q in seen if re.match(r"SELECT users\.id(?: AS users_id)?, users\.email", q)) == 1
        commit = seen[len(seen) - 1 - seen[::-1].index("-- transaction --") + 1:]
        assert any(q.startswith("INSERT INTO file_versions") for q in commit)
        assert len(commit) == len(set(commit)), [q[:80] for q in commit]
