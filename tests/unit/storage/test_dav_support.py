"""What storage keeps for WebDAV and the Nextcloud clients, on SQLite and MariaDB: a folder's
change count (its etag) moves with every change below it and only then; a client's mtime is
kept per version; Drive.lookup walks names with the caller's role; Basic credentials."""

from __future__ import annotations

import datetime as dt
import io

import pytest

from storage.accounts import Accounts
from storage.errors import NotFound, Unauthorized
from storage.sharing import Sharing


def changes(drive, user, node_id) -> int:
    return drive.get(user.id, node_id).changes


def test_every_change_below_a_folder_moves_its_count_and_no_other(drive, make_user):
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a")
    b = drive.mkdir(u.id, a.id, "b")
    other = drive.mkdir(u.id, u.root_id, "other")

    def snapshot():
        return {n: changes(drive, u, i) for n, i in (("root", u.root_id), ("a", a.id), ("b", b.id),
                                                      ("other", other.id))}
    steps = [
        ("new file", lambda: drive.put(u.id, b.id, "f.txt", io.BytesIO(b"1")), {"root", "a", "b"}),
        ("new version", lambda: drive.put(u.id, b.id, "f.txt", io.BytesIO(b"2")), {"root", "a", "b"}),
        ("new folder", lambda: drive.mkdir(u.id, b.id, "c"), {"root", "a", "b"}),
        ("move out", lambda: drive.move(u.id, drive.resolve(u.id, "/a/b/f.txt").id, parent_id=other.id),
         {"root", "a", "b", "other"}),
        ("rename", lambda: drive.move(u.id, drive.resolve(u.id, "/other/f.txt").id, name="g.txt"),
         {"root", "other"}),
        ("delete", lambda: drive.delete(u.id, drive.resolve(u.id, "/other/g.txt").id), {"root", "other"}),
        ("restore", lambda: drive.restore(u.id, drive.list_trash(u.id)[0].id), {"root", "other"}),
        ("copy", lambda: drive.copy(u.id, other.id, a.id, "copied"), {"root", "a"}),
    ]
    for what, step, moved in steps:
        before = snapshot()
        step()
        after = snapshot()
        assert {n for n in after if after[n] != before[n]} == moved, what


def test_a_clients_mtime_is_kept_with_the_version(drive, make_user):
    u = make_user()
    when = dt.datetime(2017, 7, 14, 2, 40)
    r = drive.put(u.id, u.root_id, "m.txt", io.BytesIO(b"x"), mtime=when)
    assert r.node.mtime == when and drive.get(u.id, r.node.id).mtime == when
    r2 = drive.put(u.id, u.root_id, "m.txt", io.BytesIO(b"y"))  # none given: the version's time
    assert r2.node.mtime != when and r2.node.mtime == drive.versions(u.id, r.node.id)[0].created_at


def test_lookup_walks_names_with_the_callers_role(drive, make_user):
    owner, viewer, stranger = make_user(), make_user(), make_user()
    team = drive.mkdir(owner.id, owner.root_id, "team")
    sub = drive.mkdir(owner.id, team.id, "sub")
    drive.put(owner.id, sub.id, "f.txt", io.BytesIO(b"f"))
    Sharing(drive).grant(owner.id, team.id, viewer.email, "viewer")
    found = drive.lookup(viewer.id, team.id, ["sub", "f.txt"])
    assert found is not None and found.name == "f.txt" and found.role == "viewer"
    assert drive.lookup(viewer.id, team.id, []).id == team.id
    assert drive.lookup(viewer.id, team.id, ["nope"]) is None
    assert drive.lookup(viewer.id, team.id, ["sub", "f.txt", "below-a-file"]) is None
    with pytest.raises(NotFound):
        drive.lookup(stranger.id, team.id, ["sub"])


def test_basic_credentials_password_app_password_and_a_changed_password(drive, make_user):
    accts = Accounts(drive)
    u = make_user()
    assert accts.basic(u.email, "password123", "10.0.0.1").id == u.id
    assert accts.basic(u.email.upper(), "password123", "10.0.0.1").id == u.id
    token = drive.login(u.email, "password123")
    assert accts.basic(u.email, token, "10.0.0.1").id == u.id
    other = make_user()
    with pytest.raises(Unauthorized):
        accts.basic(other.email, token, "10.0.0.1")  # an app password is its own account's only
    with pytest.raises(Unauthorized):
        accts.basic(u.email, "wrong-password", "10.0.0.1")
    # a remembered password stops working as soon as the password changes
    accts.change_password(u.id, "password123", "a-new-password", "10.0.0.1", None)
    with pytest.raises(Unauthorized):
        accts.basic(u.email, "password123", "10.0.0.1")
    assert accts.basic(u.email, "a-new-password", "10.0.0.1").id == u.id
