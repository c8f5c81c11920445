"""storage/sharing.py: shares inherited down the tree, roles, and public links, on SQLite and
MariaDB (the ``drive`` fixture)."""

from __future__ import annotations

import hashlib
import io

import pytest
import sqlalchemy as sa

from storage import clock
from storage.errors import Forbidden, Gone, InvalidInput, NotFound, RateLimited, Unauthorized
from storage.models import Link, Share
from storage.sharing import Sharing
from tests.conftest import put_bytes, read_all


@pytest.fixture
def sh(drive):
    return Sharing(drive)


@pytest.fixture
def tree(drive, make_user):
    """owner: /top/mid/leaf.txt and /top/mid/deep/, /other.txt; and three more users."""
    o = make_user()
    top = drive.mkdir(o.id, o.root_id, "top")
    mid = drive.mkdir(o.id, top.id, "mid")
    deep = drive.mkdir(o.id, mid.id, "deep")
    leaf = put_bytes(drive, o, "leaf.txt", b"leaf bytes", parent=mid.id).node
    other = put_bytes(drive, o, "other.txt", b"not shared").node
    return dict(owner=o, top=top, mid=mid, deep=deep, leaf=leaf, other=other,
                bob=make_user(), carol=make_user(), eve=make_user())


# ---- shares -----------------------------------------------------------------------------------

def test_a_share_is_inherited_by_everything_below_and_nothing_beside(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    with pytest.raises(NotFound):
        drive.get(bob.id, tree["leaf"].id)
    info, created = sh.grant(o.id, tree["top"].id, bob.email, "viewer")
    assert created and (info.email, info.role, info.granted_by) == (bob.email, "viewer", o.id)
    assert [(x.user_id, x.pending) for x in sh.list_shares(o.id, tree["top"].id)] == [(bob.id, False)]
    for key in ("top", "mid", "deep", "leaf"):
        assert drive.get(bob.id, tree[key].id).role == "viewer"
    assert read_all(drive, bob, tree["leaf"].id) == b"leaf bytes"
    assert [n.name for n in drive.list_children(bob.id, tree["mid"].id)[0]] == ["deep", "leaf.txt"]
    with pytest.raises(NotFound):  # a sibling of the shared folder stays invisible
        drive.get(bob.id, tree["other"].id)
    with pytest.raises(NotFound):
        drive.get(bob.id, o.root_id)
    assert [n.id for n in sh.shared_with_me(bob.id)] == [tree["top"].id]
    assert sh.shared_with_me(tree["carol"].id) == []


def test_revoke_takes_everything_below_away(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["top"].id, bob.email, "editor")
    assert drive.get(bob.id, tree["leaf"].id).role == "editor"
    sh.revoke(o.id, tree["top"].id, bob.id)
    for key in ("top", "mid", "leaf"):
        with pytest.raises(NotFound):
            drive.get(bob.id, tree[key].id)
    with pytest.raises(NotFound):
        read_all(drive, bob, tree["leaf"].id)
    assert sh.shared_with_me(bob.id) == []
    with pytest.raises(NotFound):  # nothing left to revoke
        sh.revoke(o.id, tree["top"].id, bob.id)


def test_the_strongest_grant_on_the_path_wins(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["top"].id, bob.email, "viewer")
    sh.grant(o.id, tree["mid"].id, bob.email, "editor")
    assert drive.get(bob.id, tree["top"].id).role == "viewer"
    assert drive.get(bob.id, tree["deep"].id).role == "editor"
    with pytest.raises(Forbidden):
        drive.mkdir(bob.id, tree["top"].id, "nope")
    drive.mkdir(bob.id, tree["deep"].id, "yes")


def test_grant_again_changes_the_role(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["mid"].id, bob.email, "editor")
    info, created = sh.grant(o.id, tree["mid"].id, bob.email.upper(), "viewer")
    assert not created and info.role == "viewer"
    assert [(s.user_id, s.role) for s in sh.list_shares(o.id, tree["mid"].id)] == [(bob.id, "viewer")]
    with pytest.raises(Forbidden):
        put_bytes(drive, bob, "x.txt", b"x", parent=tree["mid"].id)


def test_viewer_reads_but_cannot_write(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["top"].id, bob.email, "viewer")
    leaf, mid = tree["leaf"].id, tree["mid"].id
    for write in (lambda: put_bytes(drive, bob, "new.txt", b"x", parent=mid),
                  lambda: put_bytes(drive, bob, "leaf.txt", b"changed", parent=mid),
                  lambda: drive.mkdir(bob.id, mid, "f"),
                  lambda: drive.move(bob.id, leaf, name="renamed.txt"),
                  lambda: drive.delete(bob.id, leaf)):
        with pytest.raises(Forbidden):
            write()
    assert read_all(drive, o, leaf) == b"leaf bytes"
    assert [n.name for n in drive.list_children(o.id, mid)[0]] == ["deep", "leaf.txt"]


def test_editor_writes_into_the_owners_drive(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["top"].id, bob.email, "editor")
    used = drive.account(o.id).used_bytes
    res = put_bytes(drive, bob, "by-bob.txt", b"12345", parent=tree["deep"].id)
    assert res.node.owner_id == o.id and res.node.role == "editor"
    put_bytes(drive, bob, "leaf.txt", b"new leaf", parent=tree["mid"].id)
    assert read_all(drive, o, tree["leaf"].id) == b"new leaf"
    # the leaf's old version stays, as an old version of the owner's file
    assert drive.account(o.id).used_bytes == used + 5 + len(b"new leaf")
    assert drive.account(bob.id).used_bytes == 0


def test_only_the_owner_manages_shares_and_links(drive, sh, tree):
    o, bob, carol, eve = tree["owner"], tree["bob"], tree["carol"], tree["eve"]
    sh.grant(o.id, tree["top"].id, bob.email, "editor")
    sh.grant(o.id, tree["top"].id, carol.email, "viewer")
    mid = tree["mid"].id
    for who in (bob, carol):  # they see the node, so they are told no, not "not found"
        for call in (lambda: sh.grant(who.id, mid, eve.email, "viewer"),
                     lambda: sh.revoke(who.id, tree["top"].id, carol.id),
                     lambda: sh.list_shares(who.id, mid),
                     lambda: sh.create_link(who.id, mid),
                     lambda: sh.list_links(who.id, mid)):
            with pytest.raises(Forbidden):
                call()
    for call in (lambda: sh.grant(eve.id, mid, bob.email, "editor"), lambda: sh.list_shares(eve.id, mid),
                 lambda: sh.create_link(eve.id, mid)):
        with pytest.raises(NotFound):
            call()
    assert sorted(s.user_id for s in sh.list_shares(o.id, tree["top"].id)) == sorted([bob.id, carol.id])
    with pytest.raises(NotFound):
        drive.get(eve.id, mid)


def test_grant_rejects_bad_roles_and_the_owner(sh, tree):
    o = tree["owner"]
    for email, role in ((tree["bob"].email, "owner"), (tree["bob"].email, "admin"),
                        ("nobody@example.com", "admin"), (o.email, "viewer")):
        with pytest.raises(InvalidInput):
            sh.grant(o.id, tree["top"].id, email, role)
    assert sh.list_shares(o.id, tree["top"].id) == []


def test_shares_of_a_trashed_node_stop_working(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["mid"].id, bob.email, "viewer")
    drive.delete(o.id, tree["mid"].id)
    with pytest.raises(NotFound):
        drive.get(bob.id, tree["leaf"].id)
    assert sh.shared_with_me(bob.id) == []


# ---- links --------------------------------------------------------------------------------------

def test_a_link_token_is_stored_only_as_its_hash(drive, sh, tree):
    o = tree["owner"]
    info, token = sh.create_link(o.id, tree["leaf"].id)
    assert token.startswith("bl_") and len(token) >= 43
    with drive.sm() as s:
        row = s.get(Link, info.id)
        values = [getattr(row, c.key) for c in sa.inspect(Link).columns]
    assert row.token_hash == hashlib.sha256(token.encode()).digest()
    secret = token[3:]
    for v in values:
        assert not (isinstance(v, str) and secret in v)
        assert not (isinstance(v, bytes) and (token.encode() in v or secret.encode() in v))
    _, other = sh.create_link(o.id, tree["leaf"].id)
    assert other != token
    assert sh.link_get(token, None)[1].id == tree["leaf"].id


def test_a_link_reads_its_subtree_as_a_viewer_and_nothing_else(drive, sh, tree):
    o = tree["owner"]
    _, token = sh.create_link(o.id, tree["mid"].id)
    link, node = sh.link_get(token, None)
    assert node.id == tree["mid"].id and node.role == "viewer" and link.role == "viewer"
    items, _ = sh.link_children(token, None)
    assert [i.name for i in items] == ["deep", "leaf.txt"] and {i.role for i in items} == {"viewer"}
    _info, _v, chunks = sh.link_open(token, None, tree["leaf"].id)
    assert b"".join(chunks) == b"leaf bytes"
    for outside in (tree["top"].id, tree["other"].id, o.root_id, tree["bob"].root_id, 10**9):
        with pytest.raises(NotFound):
            sh.link_get(token, None, outside)
    with pytest.raises(NotFound):
        sh.link_get("bl_" + "A" * 43, None)
    with pytest.raises(InvalidInput):
        sh.create_link(o.id, tree["mid"].id, role="editor")


def test_link_downloads_are_counted(drive, sh, tree):
    o = tree["owner"]
    info, token = sh.create_link(o.id, tree["leaf"].id)
    sh.link_get(token, None)  # looking is not downloading
    for _ in range(3):
        _n, _v, chunks = sh.link_open(token, None)
        assert b"".join(chunks) == b"leaf bytes"
    assert [(li.id, li.downloads) for li in sh.list_links(o.id, tree["leaf"].id)] == [(info.id, 3)]


def test_an_expired_link_is_gone(drive, sh, tree):
    o = tree["owner"]
    _, token = sh.create_link(o.id, tree["leaf"].id, expires_in=60)
    clock.advance(50)  # margin: the real clock ticks on too
    assert sh.link_get(token, None)[1].id == tree["leaf"].id
    clock.advance(10)
    with pytest.raises(Gone):
        sh.link_get(token, None)
    with pytest.raises(Gone):
        sh.link_open(token, None)
    for bad in (0, -1, 10 * 365 * 86400 + 1, "60", 1.5):
        with pytest.raises(InvalidInput):
            sh.create_link(o.id, tree["leaf"].id, expires_in=bad)


def test_a_revoked_link_is_gone(drive, sh, tree):
    o = tree["owner"]
    info, token = sh.create_link(o.id, tree["leaf"].id)
    keep, token2 = sh.create_link(o.id, tree["leaf"].id)
    sh.grant(o.id, tree["top"].id, tree["bob"].email, "editor")
    with pytest.raises(Forbidden):  # an editor may not revoke the owner's links
        sh.revoke_link(tree["bob"].id, tree["leaf"].id, info.id)
    assert sh.link_get(token, None)[1].id == tree["leaf"].id
    sh.revoke_link(o.id, tree["leaf"].id, info.id)
    with pytest.raises(Gone):
        sh.link_get(token, None)
    assert sh.link_get(token2, None)[1].id == tree["leaf"].id  # the other link lives on
    with pytest.raises(NotFound):
        sh.revoke_link(o.id, tree["leaf"].id, info.id)
    with pytest.raises(NotFound):  # a link id under the wrong node
        sh.revoke_link(o.id, tree["mid"].id, keep.id)
    links = {li.id: li for li in sh.list_links(o.id, tree["leaf"].id)}
    assert links[info.id].revoked_at is not None and links[keep.id].revoked_at is None


def test_a_link_to_a_trashed_node_is_not_found_until_restored(drive, sh, tree):
    o = tree["owner"]
    _, token = sh.create_link(o.id, tree["mid"].id)
    drive.delete(o.id, tree["mid"].id)
    with pytest.raises(NotFound):
        sh.link_get(token, None)
    drive.restore(o.id, tree["mid"].id)
    assert sh.link_get(token, None, tree["leaf"].id)[1].id == tree["leaf"].id
    drive.delete(o.id, tree["leaf"].id)
    with pytest.raises(NotFound):
        sh.link_open(token, None, tree["leaf"].id)


def test_a_password_link(drive, sh, tree):
    o = tree["owner"]
    info, token = sh.create_link(o.id, tree["leaf"].id, password="open sesame")
    assert info.has_password
    with drive.sm() as s:
        assert b"open sesame" not in s.get(Link, info.id).password_hash.encode()
    with pytest.raises(Unauthorized):
        sh.link_get(token, None)
    with pytest.raises(Unauthorized):
        sh.link_open(token, "wrong")
    _n, _v, chunks = sh.link_open(token, "open sesame")
    assert b"".join(chunks) == b"leaf bytes"
    assert sh.list_links(o.id, tree["leaf"].id)[0].downloads == 1  # the refused tries did not count


def test_link_password_guesses_are_limited(drive, sh, tree):
    o = tree["owner"]
    _, token = sh.create_link(o.id, tree["leaf"].id, password="right")
    _, token2 = sh.create_link(o.id, tree["leaf"].id, password="right")
    limit = drive.config["server"]["auth_max_failures"]
    for _ in range(limit):
        with pytest.raises(Unauthorized):
            sh.link_get(token, "guess")
    with pytest.raises(RateLimited) as exc:
        sh.link_get(token, "right")  # even the right one, until the window passes
    assert exc.value.details["retry_after"] >= 1
    for _ in range(3):  # asking without a password is no guess, and is not refused
        with pytest.raises(Unauthorized):
            sh.link_get(token2, None)
    assert sh.link_get(token2, "right")[1].id == tree["leaf"].id  # per link
    clock.advance(drive.config["server"]["auth_window_seconds"] + 1)
    assert sh.link_get(token, "right")[1].id == tree["leaf"].id


def test_a_successful_password_does_not_wipe_the_failures(drive, sh, tree):
    """A link password is shared by everyone holding the link: a guesser must not get a
    fresh allowance each time a legitimate reader gets in."""
    o = tree["owner"]
    _, token = sh.create_link(o.id, tree["leaf"].id, password="right")
    limit = drive.config["server"]["auth_max_failures"]
    for _ in range(limit - 1):
        with pytest.raises(Unauthorized):
            sh.link_get(token, "guess")
    sh.link_get(token, "right")
    with pytest.raises(Unauthorized):
        sh.link_get(token, "guess")
    with pytest.raises(RateLimited):
        sh.link_get(token, "guess")


def test_links_and_shares_survive_a_new_version(drive, sh, tree):
    o, bob = tree["owner"], tree["bob"]
    sh.grant(o.id, tree["mid"].id, bob.email, "viewer")
    _, token = sh.create_link(o.id, tree["leaf"].id)
    drive.put(o.id, tree["mid"].id, "leaf.txt", io.BytesIO(b"version two"))
    assert read_all(drive, bob, tree["leaf"].id) == b"version two"
    assert b"".join(sh.link_open(token, None)[2]) == b"version two"
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Share)).scalar_one() == 1
