"""storage.useradmin: search and paging, plan and quota, disable (every door shut), password
reset, delete (trash first, gc removes the account) and the last-admin rule, on SQLite and
MariaDB (the ``drive`` fixture)."""

from __future__ import annotations

import datetime as dt

import pytest

from storage import clock
from storage.accounts import Accounts
from storage.errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from storage.sharing import Sharing
from storage.useradmin import UserAdmin, parse_size
from tests.conftest import put_bytes

PW = "password123"


@pytest.fixture
def ua(drive):
    return UserAdmin(drive)


@pytest.fixture
def admin(drive):
    user, _ = drive.create_user("root-admin@example.com", "password-admin", admin=True)
    return user


def test_parse_size_reads_units_and_refuses_nonsense():
    assert parse_size("20G") == 20 * 10**9
    assert parse_size("1.5Mi") == 3 * 2**19
    assert parse_size("4096") == 4096
    assert parse_size(7) == 7
    for bad in ("lots", "-1", "5X", ""):
        with pytest.raises(InvalidInput):
            parse_size(bad)


def test_list_searches_by_email_and_pages_in_order(ua, drive):
    for i in range(5):
        drive.create_user(f"team{i}@example.com", PW)
    drive.create_user("other@example.org", PW)
    drive.create_user("under_score@example.com", PW)
    page, cursor = ua.list("TEAM", limit=2)
    assert [u.email for u in page] == ["team0@example.com", "team1@example.com"]
    seen = [u.email for u in page]
    while cursor:
        page, cursor = ua.list("team", cursor=cursor, limit=2)
        seen += [u.email for u in page]
    assert seen == [f"team{i}@example.com" for i in range(5)]
    # "%" and "_" are literals, not LIKE wildcards
    assert [u.email for u in ua.list("r%s")[0]] == [] and [u.email for u in ua.list("team_")[0]] == []
    assert [u.email for u in ua.list("r_sc")[0]] == ["under_score@example.com"]
    assert {u.email for u in ua.list("")[0]} >= {"other@example.org", "team4@example.com"}


def test_show_splits_usage_and_counts_nodes_and_tokens(ua, drive, make_user):
    user = make_user()
    put_bytes(drive, user, "a.bin", b"x" * 5000)
    put_bytes(drive, user, "a.bin", b"y" * 3000)
    gone = put_bytes(drive, user, "b.bin", b"z" * 100)
    drive.delete(user.id, gone.node.id)
    drive.login(user.email, PW)
    d = ua.show(ua.find(user.email))
    assert d.user.email == user.email and d.user.status == "active"
    assert d.usage.current >= 3000 and d.usage.old_versions >= 5000 and d.usage.trash >= 100
    assert d.nodes == 2
    assert d.tokens == 2  # the token create_user issued, and the sign-in's
    assert d.as_dict()["usage"]["trash_bytes"] == d.usage.trash
    with pytest.raises(NotFound):
        ua.find("nobody@example.com")
    with pytest.raises(NotFound):
        ua.show(10**9)


def test_create_and_update_plan_quota_and_admin(ua, drive):
    u = ua.create("New@Example.com", PW, plan="premium")
    assert u.email == "new@example.com"
    assert u.quota_bytes == drive.config["quota"]["premium_bytes"]
    with pytest.raises(Conflict):
        ua.create("new@example.com", PW)
    u = ua.update(u.id, plan="free")
    assert (u.plan, u.quota_bytes) == ("free", drive.config["quota"]["free_bytes"])
    u = ua.update(u.id, quota_bytes="2G", is_admin=True)
    assert (u.quota_bytes, u.is_admin) == (2 * 10**9, True)
    assert drive.account(u.id).quota_bytes == 2 * 10**9
    with pytest.raises(InvalidInput):
        ua.update(u.id, plan="gold")


def test_disable_shuts_every_door_and_enable_reopens_password(ua, drive, admin):
    user, token = drive.create_user("shut@example.com", PW)
    acc = Accounts(drive)
    _, digest = acc.sign_in(user.email, PW, "10.0.0.1", 1)
    assert acc.basic(user.email, PW, "10.0.0.1").id == user.id  # remembered in the Basic cache now
    assert acc.session_user(digest).id == user.id
    revoked = ua.disable(user.id, acting_id=admin.id)
    assert revoked == 2  # the token and the session
    with pytest.raises(Unauthorized, match="disabled"):
        drive.login(user.email, PW)
    with pytest.raises(Unauthorized):
        acc.sign_in(user.email, PW, "10.0.0.2", 1)
    with pytest.raises(Unauthorized):
        drive.user_for_token(token)
    with pytest.raises(Unauthorized):
        acc.basic(user.email, PW, "10.0.0.1")  # not from the cache either
    with pytest.raises(Unauthorized):
        acc.basic(user.email, token, "10.0.0.1")
    assert acc.session_user(digest) is None
    assert ua.show(user.id).user.status == "disabled"
    ua.enable(user.id)
    assert drive.user_for_token(drive.login(user.email, PW)).id == user.id
    with pytest.raises(Unauthorized):
        drive.user_for_token(token)  # revoked tokens stay revoked


def test_a_token_issued_before_disable_is_refused_even_if_not_revoked(ua, drive):
    """The row check alone shuts the door: a session of a disabled user is refused."""
    user, _ = drive.create_user("racer@example.com", PW)
    acc = Accounts(drive)
    _, digest = acc.sign_in(user.email, PW, "10.0.0.3", 1)
    ua.disable(user.id)
    digest2 = acc.open_session(user.id, None, 1)  # as if opened in a race with disable
    assert acc.session_user(digest2) is None
    assert acc.session_user(digest) is None


def test_reset_password_sets_or_generates_and_revokes(ua, drive):
    user, token = drive.create_user("forgot@example.com", PW)
    assert ua.reset_password(user.id, "brand-new-pass") is None
    with pytest.raises(Unauthorized):
        drive.user_for_token(token)
    with pytest.raises(Unauthorized):
        drive.login(user.email, PW)
    assert drive.login(user.email, "brand-new-pass").startswith("bd_")
    generated = ua.reset_password(user.id)
    assert generated and len(generated) >= 16
    assert drive.login(user.email, generated).startswith("bd_")
    with pytest.raises(InvalidInput):
        ua.reset_password(user.id, "short")


def test_no_admin_locks_out_themselves_or_the_last_admin(ua, drive, admin):
    with pytest.raises(Forbidden):
        ua.disable(admin.id, acting_id=admin.id)
    with pytest.raises(Forbidden):
        ua.delete(admin.id, acting_id=admin.id)
    with pytest.raises(Conflict, match="last admin"):
        ua.disable(admin.id)  # from the CLI, no acting admin: still the last one
    with pytest.raises(Conflict, match="last admin"):
        ua.update(admin.id, is_admin=False)
    other = ua.create("second-admin@example.com", PW, is_admin=True)
    ua.disable(other.id, acting_id=admin.id)
    with pytest.raises(Conflict):
        ua.delete(admin.id, acting_id=other.id)  # the other one is disabled: admin is the last enabled
    ua.enable(other.id)
    ua.update(admin.id, is_admin=False)
    assert not drive.account(admin.id).is_admin


def test_delete_trashes_everything_and_gc_removes_the_account_after_retention(ua, drive, make_user, admin):
    owner = drive.create_user("leaving@example.com", PW)[0]
    friend = make_user()
    folder = drive.mkdir(owner.id, owner.root_id, "docs")
    put_bytes(drive, owner, "a.bin", b"a" * 10000, parent=folder.id)
    put_bytes(drive, owner, "top.bin", b"t" * 500)
    Sharing(drive).grant(owner.id, folder.id, friend.email, "viewer")
    Sharing(drive).create_link(owner.id, folder.id)
    kept = put_bytes(drive, friend, "mine.bin", b"m" * 300)

    assert ua.delete(owner.id, acting_id=admin.id) == 2
    d = ua.show(owner.id)
    assert d.user.status == "deleted" and d.usage.current == 0 and d.usage.trash > 0
    with pytest.raises(Unauthorized):
        drive.login(owner.email, PW)
    with pytest.raises(Conflict):
        ua.enable(owner.id)
    with pytest.raises(Conflict):
        drive.create_user(owner.email, PW)  # the address is not free yet
    # before the trash retention passes, gc keeps the account and its trash
    assert ua.remove_deleted() == {"deleted_users_waiting": 1, "deleted_users_removed": 0}
    assert len(drive.list_trash(owner.id)) == 2
    assert ua.count_deleted() == 1

    retention = dt.timedelta(days=drive.config["trash"]["retention_days"])
    clock.advance((retention + dt.timedelta(hours=1)).total_seconds())
    while drive.purge_expired_trash(clock.now() - retention):
        pass
    assert ua.remove_deleted() == {"deleted_users_waiting": 0, "deleted_users_removed": 1}
    assert ua.count_deleted() == 0
    with pytest.raises(NotFound):
        ua.find(owner.email)
    assert drive.get(friend.id, kept.node.id).size == 300  # nobody else's files touched
    again, _ = drive.create_user(owner.email, PW)
    assert again.id != owner.id and drive.list_children(again.id, again.root_id)[0] == []


def test_gc_finishes_a_delete_that_was_cut_off(ua, drive, make_user, monkeypatch):
    user = make_user()
    put_bytes(drive, user, "one.bin", b"1" * 100)
    put_bytes(drive, user, "two.bin", b"2" * 100)
    monkeypatch.setattr(UserAdmin, "_trash_all", lambda self, uid: 0)  # cut off after the mark
    ua.delete(user.id)
    monkeypatch.undo()
    assert len(drive.list_children(user.id, user.root_id)[0]) == 2
    assert ua.remove_deleted()["deleted_users_waiting"] == 1
    assert drive.list_children(user.id, user.root_id)[0] == []
    assert len(drive.list_trash(user.id)) == 2
