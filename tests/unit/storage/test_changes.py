"""storage/changes.py: the change feed, on SQLite and MariaDB (the ``drive`` fixture): every
kind of change once and in order, for the owner and for a grantee inside a share, never for
anyone else; shares gained and lost; paging; pruning and expired cursors."""

from __future__ import annotations

import base64
import datetime as dt
import io
import json

import pytest

from storage import clock
from storage.batch import FolderEntry, make_folders
from storage.changes import ChangeFeed, CursorExpired
from storage.errors import NotFound
from storage.sharing import Sharing
from tests.conftest import put_bytes


@pytest.fixture
def feed(drive):
    return ChangeFeed(drive.sm)


@pytest.fixture
def sh(drive):
    return Sharing(drive)


def read_all(feed, user, cursor, limit=1000):
    """Every entry after ``cursor`` as (kind, node id, name), and the cursor at the end."""
    out = []
    while True:
        page = feed.read(user.id, cursor, limit=limit)
        out += [(e.kind, e.node.id, e.node.name) for e in page.entries]
        cursor = page.cursor
        if not page.has_more:
            return out, cursor


def test_every_kind_of_change_reaches_the_owner_once_in_order(drive, feed, make_user):
    o = make_user()
    start = feed.latest(o.id)
    d = drive.mkdir(o.id, o.root_id, "docs")
    f = put_bytes(drive, o, "a.txt", b"one", parent=d.id).node
    put_bytes(drive, o, "a.txt", b"two", parent=d.id)
    moved = drive.move(o.id, f.id, name="b.txt", parent_id=o.root_id)
    drive.delete(o.id, f.id)
    drive.restore(o.id, f.id)
    drive.delete(o.id, f.id)
    drive.purge(o.id, f.id)
    entries, end = read_all(feed, o, start)
    assert entries == [("create", d.id, "docs"), ("create", f.id, "a.txt"), ("version", f.id, "a.txt"),
                       ("move", f.id, "b.txt"), ("delete", f.id, "b.txt"), ("restore", f.id, "b.txt"),
                       ("delete", f.id, "b.txt"), ("purge", f.id, "b.txt")]
    page = feed.read(o.id, start, limit=4)
    move = page.entries[3]
    assert (move.old_parent_id, move.old_name, move.node.parent_id) == (d.id, "a.txt", moved.parent_id)
    assert page.entries[2].node.size == 3 and page.entries[2].node.role == "owner"
    assert feed.read(o.id, end).entries == [] and feed.latest(o.id) == end


def test_copies_and_batch_folders_are_created(drive, feed, make_user):
    o = make_user()
    d = drive.mkdir(o.id, o.root_id, "src")
    put_bytes(drive, o, "x.txt", b"x", parent=d.id)
    start = feed.latest(o.id)
    c = drive.copy(o.id, d.id, o.root_id, "dst")
    make_folders(drive, o.id, [FolderEntry(o.root_id, "made")])
    kinds = [(k, n) for k, _i, n in read_all(feed, o, start)[0]]
    assert kinds == [("create", "dst"), ("create", "x.txt"), ("version", "x.txt"), ("create", "made")]
    assert c.name == "dst"


def test_a_grantee_sees_changes_inside_the_share_and_nothing_beside(drive, feed, sh, make_user):
    o, bob, eve = make_user(), make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    out = drive.mkdir(o.id, o.root_id, "out")
    b0, e0 = feed.latest(bob.id), feed.latest(eve.id)
    put_bytes(drive, o, "before.txt", b"x", parent=top.id)  # before the share: not bob's
    sh.grant(o.id, top.id, bob.email, "editor")
    f = put_bytes(drive, o, "in.txt", b"1", parent=top.id).node
    put_bytes(drive, bob, "in.txt", b"22", parent=top.id)  # bob's own edit, in the owner's journal
    put_bytes(drive, o, "beside.txt", b"not shared", parent=out.id)
    drive.move(o.id, f.id, parent_id=out.id)  # out of bob's view: a delete for him
    drive.move(o.id, f.id, parent_id=top.id)  # and back: a create
    mine = put_bytes(drive, bob, "mine.txt", b"bob's own").node
    g = put_bytes(drive, o, "gone.txt", b"g", parent=top.id).node
    drive.delete(bob.id, g.id)
    drive.restore(o.id, g.id)
    drive.delete(o.id, g.id)
    drive.purge(o.id, g.id)
    entries, b1 = read_all(feed, bob, b0)
    assert entries == [("share_gained", top.id, "top"), ("create", f.id, "in.txt"), ("version", f.id, "in.txt"),
                       ("delete", f.id, "in.txt"), ("create", f.id, "in.txt"), ("create", mine.id, "mine.txt"),
                       ("create", g.id, "gone.txt"), ("delete", g.id, "gone.txt"), ("restore", g.id, "gone.txt"),
                       ("delete", g.id, "gone.txt"), ("purge", g.id, "gone.txt")]
    page = feed.read(bob.id, b0)
    assert page.entries[3].node.parent_id == top.id  # shown where it was, not where it went
    assert page.entries[1].node.role == "editor"
    sh.grant(o.id, top.id, bob.email, "viewer")
    sh.revoke(o.id, top.id, bob.id)
    put_bytes(drive, o, "after.txt", b"x", parent=top.id)  # after the revoke: not bob's
    page = feed.read(bob.id, b1)
    assert [(e.kind, e.node.id, e.node.role) for e in page.entries] == [
        ("share_changed", top.id, "viewer"), ("share_lost", top.id, "viewer")]
    assert read_all(feed, eve, e0)[0] == []


def test_a_grantee_following_along_sees_each_change_once(drive, feed, sh, make_user):
    o, bob = make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    cur = feed.latest(bob.id)
    sh.grant(o.id, top.id, bob.email, "viewer")
    seen = []
    for i in range(3):
        put_bytes(drive, o, f"f{i}.txt", b"x", parent=top.id)
        page = feed.read(bob.id, cur)
        seen += [(e.kind, e.node.name) for e in page.entries]
        cur = page.cursor
    assert seen == [("share_gained", "top"), ("create", "f0.txt"), ("create", "f1.txt"), ("create", "f2.txt")]
    assert feed.read(bob.id, cur).entries == []


def test_leaving_a_share_is_a_share_lost(drive, feed, sh, make_user):
    o, bob = make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    sh.grant(o.id, top.id, bob.email, "viewer")
    cur = feed.latest(bob.id)
    sh.leave(bob.id, top.id)
    with pytest.raises(NotFound):
        sh.leave(bob.id, top.id)
    assert read_all(feed, bob, cur)[0] == [("share_lost", top.id, "top")]


def test_purging_a_shared_folder_is_a_share_lost(drive, feed, sh, make_user):
    o, bob = make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    sh.grant(o.id, top.id, bob.email, "viewer")
    cur = feed.latest(bob.id)
    drive.delete(o.id, top.id)
    entries, cur = read_all(feed, bob, cur)
    assert entries == [("delete", top.id, "top")]
    drive.purge(o.id, top.id)
    assert read_all(feed, bob, cur)[0] == [("share_lost", top.id, "top")]


def test_paging_with_has_more(drive, feed, make_user):
    o = make_user()
    start = feed.latest(o.id)
    ids = [drive.mkdir(o.id, o.root_id, f"d{i}").id for i in range(5)]
    first = feed.read(o.id, start, limit=2)
    assert [e.node.id for e in first.entries] == ids[:2] and first.has_more
    second = feed.read(o.id, first.cursor, limit=2)
    assert [e.node.id for e in second.entries] == ids[2:4] and second.has_more
    last = feed.read(o.id, second.cursor, limit=2)
    assert [e.node.id for e in last.entries] == ids[4:] and not last.has_more


def test_pruned_changes_expire_older_cursors_only(drive, feed, make_user):
    o, idle = make_user(), make_user()
    old, idle_cur = feed.latest(o.id), feed.latest(idle.id)
    drive.mkdir(o.id, o.root_id, "old")
    mid = feed.latest(o.id)
    clock.advance(10 * 86400)
    drive.mkdir(o.id, o.root_id, "new")
    assert feed.prune(clock.now() - dt.timedelta(days=1)) == 1
    with pytest.raises(CursorExpired) as err:
        feed.read(o.id, old)
    assert err.value.code == "reset"
    assert [e.node.name for e in feed.read(o.id, mid).entries] == ["new"]
    assert feed.read(idle.id, idle_cur).entries == []  # nothing of theirs was pruned


@pytest.mark.parametrize("bad", ["", "garbage", base64.urlsafe_b64encode(b"[1,2]").decode(),
                                 base64.urlsafe_b64encode(json.dumps({"v": 1, "u": 1, "p": {"x": 1}}).encode()).decode()])
def test_garbled_cursors_are_a_reset(feed, make_user, bad):
    with pytest.raises(CursorExpired):
        feed.read(make_user().id, bad)


def test_another_users_cursor_is_a_reset(feed, make_user):
    a, b = make_user(), make_user()
    with pytest.raises(CursorExpired):
        feed.read(b.id, feed.latest(a.id))


def test_watch_wakes_for_the_users_changes_only(drive, feed, sh, make_user):
    o, bob, eve = make_user(), make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    sh.grant(o.id, top.id, bob.email, "viewer")
    watches = [feed.watch(u.id, feed.latest(u.id)) for u in (o, bob, eve)]
    assert not any(w.ready for w in watches)
    assert feed.woken(watches) == []
    drive.put(o.id, top.id, "n.txt", io.BytesIO(b"n"))
    assert feed.woken(watches) == watches[:2]
    drive.put(eve.id, eve.root_id, "e.txt", io.BytesIO(b"e"))
    assert feed.woken(watches[2:]) == watches[2:]


def test_a_watch_is_not_woken_by_changes_it_cannot_see(drive, feed, sh, make_user):
    o, bob = make_user(), make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    out = drive.mkdir(o.id, o.root_id, "out")
    sh.grant(o.id, top.id, bob.email, "viewer")
    w = feed.watch(bob.id, feed.latest(bob.id))
    drive.put(o.id, out.id, "beside.txt", io.BytesIO(b"x"))
    assert feed.woken([w]) == [] and not w.ready
    drive.put(o.id, top.id, "in.txt", io.BytesIO(b"x"))
    assert feed.woken([w]) == [w]
