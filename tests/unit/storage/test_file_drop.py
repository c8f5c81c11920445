"""File-drop links (role ``uploader``): files go in under a free name, charged to the folder's
owner, and nothing is ever listed or read through the link; on SQLite and MariaDB (the
``drive`` fixture)."""

from __future__ import annotations

import io

import pytest
import sqlalchemy as sa

from storage import clock
from storage.errors import Forbidden, Gone, InvalidInput, NotFound, QuotaExceeded, RateLimited, Unauthorized
from storage.models import User
from storage.sharing import Sharing, free_name_candidates
from tests.conftest import put_bytes, read_all


@pytest.fixture
def sh(drive):
    return Sharing(drive)


@pytest.fixture
def inbox(drive, make_user):
    """An owner with /inbox holding report.pdf, and a file beside it."""
    o = make_user()
    box = drive.mkdir(o.id, o.root_id, "inbox")
    put_bytes(drive, o, "report.pdf", b"owner's own", parent=box.id)
    put_bytes(drive, o, "secret.txt", b"not in the inbox")
    return o, box


def names(drive, user, folder_id):
    return [n.name for n in drive.list_children(user.id, folder_id)[0]]


def test_free_names_keep_the_extension():
    got = list(free_name_candidates("a.tar.gz"))
    assert got[:3] == ["a.tar.gz", "a.tar (2).gz", "a.tar (3).gz"]
    assert list(free_name_candidates(".profile"))[1] == ".profile (2)"
    assert list(free_name_candidates("README"))[1] == "README (2)"


def test_a_drop_adds_a_file_as_the_owner_and_never_overwrites(drive, sh, inbox):
    o, box = inbox
    _, token = sh.create_link(o.id, box.id, role="uploader")
    first = sh.link_put(token, None, "photo.jpg", io.BytesIO(b"one"))
    assert first.created and first.node.name == "photo.jpg" and first.node.owner_id == o.id
    again = sh.link_put(token, None, "photo.jpg", io.BytesIO(b"two"))
    clash = sh.link_put(token, None, "report.pdf", io.BytesIO(b"dropped"))
    assert (again.node.name, clash.node.name) == ("photo (2).jpg", "report (2).pdf")
    assert names(drive, o, box.id) == ["photo (2).jpg", "photo.jpg", "report (2).pdf", "report.pdf"]
    assert read_all(drive, o, first.node.id) == b"one"  # the first drop is untouched
    report = drive.lookup(o.id, box.id, ["report.pdf"])
    assert read_all(drive, o, report.id) == b"owner's own"
    assert len(drive.versions(o.id, report.id)) == 1


def test_nothing_is_read_or_listed_through_a_drop_link(drive, sh, inbox):
    o, box = inbox
    _, token = sh.create_link(o.id, box.id, role="uploader")
    report = drive.lookup(o.id, box.id, ["report.pdf"])
    with pytest.raises(Forbidden):
        sh.link_get(token, None)
    with pytest.raises(Forbidden):
        sh.link_children(token, None)
    with pytest.raises(Forbidden):
        sh.link_get(token, None, report.id)
    with pytest.raises(Forbidden):
        sh.link_open(token, None, report.id)
    assert sh.link_info(token, None).role == "uploader"


def test_a_view_link_takes_no_file_and_a_drop_link_needs_a_folder(drive, sh, inbox):
    o, box = inbox
    _, view = sh.create_link(o.id, box.id)
    with pytest.raises(Forbidden):
        sh.link_put(view, None, "x.txt", io.BytesIO(b"x"))
    assert names(drive, o, box.id) == ["report.pdf"]
    report = drive.lookup(o.id, box.id, ["report.pdf"])
    with pytest.raises(InvalidInput):
        sh.create_link(o.id, report.id, role="uploader")


def test_a_drop_is_charged_to_the_owner_and_refused_past_their_quota(drive, sh, inbox):
    o, box = inbox
    _, token = sh.create_link(o.id, box.id, role="uploader")
    before = drive.usage(o.id).used
    sh.link_put(token, None, "data.bin", io.BytesIO(b"z" * 5000))
    dropped = drive.usage(o.id).used - before
    put_bytes(drive, o, "own.bin", b"q" * 5000)  # the owner's own upload of as many bytes
    assert dropped > 0 and drive.usage(o.id).used - before == 2 * dropped
    before = drive.usage(o.id).used
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == o.id).values(quota_bytes=before + 1000))
    with pytest.raises(QuotaExceeded):
        sh.link_put(token, None, "big.bin", io.BytesIO(b"y" * 4000), size_hint=4000)
    with pytest.raises(QuotaExceeded):  # no size told beforehand: refused while reading
        sh.link_put(token, None, "big.bin", io.BytesIO(b"y" * 4000))
    assert drive.usage(o.id).used == before and drive.usage(o.id).pending == 0
    assert "big.bin" not in names(drive, o, box.id)


def test_a_drop_checks_the_password_expiry_and_revocation(drive, sh, inbox):
    o, box = inbox
    info, token = sh.create_link(o.id, box.id, role="uploader", password="pw", expires_in=60)
    with pytest.raises(Unauthorized):
        sh.link_put(token, None, "a.txt", io.BytesIO(b"a"))
    with pytest.raises(Unauthorized):
        sh.link_put(token, "wrong", "a.txt", io.BytesIO(b"a"))
    assert sh.link_put(token, "pw", "a.txt", io.BytesIO(b"a")).node.name == "a.txt"
    key = sh.link_unlock(token, "pw")
    assert sh.link_put(token, None, "b.txt", io.BytesIO(b"b"), unlock=key).node.name == "b.txt"
    with pytest.raises(Unauthorized):
        # a key changed in its last character (never to itself: a key ending in "0" stays valid
        # with "0")
        sh.link_put(token, None, "c.txt", io.BytesIO(b"c"), unlock=key[:-1] + ("1" if key.endswith("0") else "0"))
    clock.advance(61)
    with pytest.raises(Gone):
        sh.link_put(token, "pw", "d.txt", io.BytesIO(b"d"))
    _, token2 = sh.create_link(o.id, box.id, role="uploader")
    link2 = sh.list_links(o.id, box.id)[-1]
    sh.revoke_link(o.id, box.id, link2.id)
    with pytest.raises(Gone):
        sh.link_put(token2, None, "e.txt", io.BytesIO(b"e"))
    with pytest.raises(NotFound):
        sh.link_put("bl_nope", None, "f.txt", io.BytesIO(b"f"))
    assert names(drive, o, box.id) == ["a.txt", "b.txt", "report.pdf"]
    assert info.role == "uploader"


def test_drop_password_guesses_are_limited_like_reads(drive, sh, inbox):
    o, box = inbox
    _, token = sh.create_link(o.id, box.id, role="uploader", password="pw")
    for _ in range(drive.config["server"]["auth_max_failures"]):
        with pytest.raises(Unauthorized):
            sh.link_put(token, "guess", "a.txt", io.BytesIO(b"a"))
    with pytest.raises(RateLimited):
        sh.link_put(token, "pw", "a.txt", io.BytesIO(b"a"))
    with pytest.raises(RateLimited):
        sh.link_unlock(token, "pw")


def test_an_unlock_key_opens_only_its_own_link(drive, sh, inbox):
    o, box = inbox
    report = drive.lookup(o.id, box.id, ["report.pdf"])
    _, one = sh.create_link(o.id, report.id, password="same")
    _, two = sh.create_link(o.id, report.id, password="same")
    key = sh.link_unlock(one, "same")
    assert sh.link_get(one, None, unlock=key)[1].id == report.id
    with pytest.raises(Unauthorized):
        sh.link_get(two, None, unlock=key)
    with pytest.raises(Unauthorized):
        sh.link_unlock(one, "wrong")


def test_a_drop_writes_every_block_even_those_the_owner_has(drive, sh, inbox):
    """The dropper is not the owner: skipping the owner's blocks would answer faster and tell
    the dropper what the owner stores."""
    o, box = inbox
    _li, token = sh.create_link(o.id, box.id, "uploader")
    again = put_bytes(drive, o, "mine-again.txt", b"not in the inbox")
    assert again.new_bytes == 0  # the owner's own upload of what they have writes nothing
    got = sh.link_put(token, None, "guess.txt", io.BytesIO(b"not in the inbox"))
    assert got.new_bytes > 0
