"""A batch commit over quota (storage/batch.py ``commit_many``): the files that fit land, each
one that does not is refused with ``QuotaExceeded``, keeping its blocks pinned for a retry; and
``check_room``, which tells a client before it sends a block. SQLite and MariaDB."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from storage.batch import FRAME, FileEntry, PlannedFile, check_room, commit_many, put_blocks
from storage.errors import QuotaExceeded
from storage.models import User
from storage.sharing import Sharing
from storage.uploads import Uploads
from tests.conftest import rand

KB = 1000


def _set_quota(drive, user, n: int) -> None:
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == user.id).values(quota_bytes=n))


def _send(up, user, data: bytes) -> FileEntry:
    """Send ``data`` as one block; the entry that commits it under the name set later."""
    h = hashlib.sha256(data).digest()
    put_blocks(up, user.id, FRAME.pack(h, len(data)) + data)
    return FileEntry(0, "", [h], len(data), h)


def _entry(e: FileEntry, parent_id: int, name: str) -> FileEntry:
    return FileEntry(parent_id, name, e.blocks, e.size, e.sha256, None, True)


def test_the_files_that_fit_land_and_the_others_are_refused(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _set_quota(drive, u, 100 * KB)
    orig = _send(up, u, rand(30 * KB, 1))
    commit_many(up, u.id, [_entry(orig, u.root_id, "orig")])
    new = _send(up, u, rand(10 * KB, 2))  # held as pending until committed
    # copies of stored content cost their size again: the third does not fit beside the others
    res = commit_many(up, u.id, [_entry(orig, u.root_id, f"copy{i}") for i in (1, 2, 3)]
                      + [_entry(new, u.root_id, "new")])
    assert [type(r).__name__ for r in res] == ["Committed", "Committed", "QuotaExceeded", "Committed"]
    assert (res[2].details["needed"], res[2].details["quota"]) == (30 * KB, 100 * KB)
    assert sorted(n.name for n in drive.list_children(u.id, u.root_id)[0]) == ["copy1", "copy2", "new", "orig"]
    acc = drive.account(u.id)
    assert (acc.used_bytes, acc.pending_bytes) == (100 * KB, 0)


def test_a_batch_that_fits_is_charged_as_before(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    a, b = _send(up, u, rand(20 * KB, 4)), _send(up, u, rand(20 * KB, 5))
    res = commit_many(up, u.id, [_entry(a, u.root_id, "a"), _entry(b, u.root_id, "b")])
    assert all(not isinstance(r, QuotaExceeded) for r in res)
    acc = drive.account(u.id)
    assert (acc.used_bytes, acc.pending_bytes) == (40 * KB, 0)


def test_an_editor_batch_charges_the_owner_file_by_file(drive, make_user):
    o, bob = make_user(), make_user()
    team = drive.mkdir(o.id, o.root_id, "team")
    Sharing(drive).grant(o.id, team.id, bob.email, "editor")
    up = Uploads(drive)
    a, b = _send(up, bob, rand(30 * KB, 6)), _send(up, bob, rand(30 * KB, 7))
    _set_quota(drive, o, 40 * KB)
    res = commit_many(up, bob.id, [_entry(a, team.id, "a"), _entry(b, team.id, "b")])
    assert [type(r).__name__ for r in res] == ["Committed", "QuotaExceeded"]
    assert drive.account(o.id).used_bytes == 30 * KB
    assert drive.account(bob.id).pending_bytes == 30 * KB  # b's block, kept for a retry


def test_check_room_refuses_before_sending_and_counts_what_was_sent(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _set_quota(drive, u, 100 * KB)
    sent = _send(up, u, rand(60 * KB, 8))  # pending 60 KB: 40 KB of room left
    with pytest.raises(QuotaExceeded) as exc:
        check_room(up, u.id, [PlannedFile(60 * KB, 1), PlannedFile(30 * KB, 1)])
    assert (exc.value.details["needed"], exc.value.details["available"]) == (90 * KB, 40 * KB)
    # told which blocks were sent already, their pending bytes are room for the files they make
    check_room(up, u.id, [PlannedFile(60 * KB, 1), PlannedFile(30 * KB, 1)], sent.blocks)
    with pytest.raises(QuotaExceeded):
        check_room(up, u.id, [PlannedFile(60 * KB, 1), PlannedFile(50 * KB, 1)], sent.blocks)


def test_check_room_asks_the_quota_of_the_folder_owner(drive, make_user):
    o, bob = make_user(), make_user()
    team = drive.mkdir(o.id, o.root_id, "team")
    Sharing(drive).grant(o.id, team.id, bob.email, "editor")
    up = Uploads(drive)
    _set_quota(drive, o, 10 * KB)
    check_room(up, bob.id, [PlannedFile(50 * KB, 1)])  # bob's own drive: bob's quota
    with pytest.raises(QuotaExceeded) as exc:
        check_room(up, bob.id, [PlannedFile(50 * KB, 1, team.id)])
    assert (exc.value.details["quota"], exc.value.details["available"]) == (10 * KB, 10 * KB)
