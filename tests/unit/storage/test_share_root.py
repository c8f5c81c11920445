"""The node shared with an editor stays its owner's (storage/tree.py ``check_may_remove``):
the editor changes what is inside it, never deletes, moves or renames the shared node itself,
and leaves the share instead (storage/sharing.py ``Sharing.leave``). SQLite and MariaDB."""

from __future__ import annotations

import pytest

from storage.errors import Forbidden, NotFound
from storage.sharing import Sharing
from tests.conftest import put_bytes


@pytest.fixture
def shared(drive, make_user):
    """owner's /team (with /team/sub and /team/a.txt) shared with bob as editor."""
    o, bob = make_user(), make_user()
    team = drive.mkdir(o.id, o.root_id, "team")
    sub = drive.mkdir(o.id, team.id, "sub")
    a = put_bytes(drive, o, "a.txt", b"a", parent=team.id).node
    sh = Sharing(drive)
    sh.grant(o.id, team.id, bob.email, "editor")
    return dict(owner=o, bob=bob, team=team, sub=sub, a=a, sh=sh)


def test_an_editor_cannot_delete_move_or_rename_the_shared_folder(drive, shared):
    o, bob, team = shared["owner"], shared["bob"], shared["team"]
    with pytest.raises(Forbidden, match="only its owner"):
        drive.delete(bob.id, team.id)
    with pytest.raises(Forbidden, match="only its owner"):
        drive.move(bob.id, team.id, name="renamed")
    with pytest.raises(Forbidden, match="only its owner"):
        drive.move(bob.id, team.id, parent_id=shared["sub"].id)
    info = drive.get(o.id, team.id)
    assert (info.name, info.parent_id) == ("team", o.root_id)
    assert drive.list_trash(o.id) == []


def test_an_editor_changes_everything_inside_the_shared_folder(drive, shared):
    o, bob = shared["owner"], shared["bob"]
    assert drive.move(bob.id, shared["a"].id, name="b.txt").name == "b.txt"
    assert drive.move(bob.id, shared["a"].id, parent_id=shared["sub"].id).parent_id == shared["sub"].id
    drive.delete(bob.id, shared["sub"].id)
    assert [n.name for n in drive.list_children(o.id, shared["team"].id)[0]] == []
    assert [n.name for n in drive.list_trash(o.id)] == ["sub"]


def test_a_file_shared_directly_stays_in_place_too(drive, shared):
    o, bob = shared["owner"], shared["bob"]
    f = put_bytes(drive, o, "solo.txt", b"solo").node
    shared["sh"].grant(o.id, f.id, bob.email, "editor")
    with pytest.raises(Forbidden):
        drive.delete(bob.id, f.id)
    with pytest.raises(Forbidden):
        drive.move(bob.id, f.id, name="mine.txt")
    assert drive.get(o.id, f.id).name == "solo.txt"


def test_the_owner_still_deletes_and_renames_what_they_shared(drive, shared):
    o, team = shared["owner"], shared["team"]
    assert drive.move(o.id, team.id, name="team2").name == "team2"
    drive.delete(o.id, team.id)
    assert [n.name for n in drive.list_trash(o.id)] == ["team2"]


def test_a_grantee_leaves_a_share_and_the_owner_keeps_everything(drive, shared):
    o, bob, team, sh = shared["owner"], shared["bob"], shared["team"], shared["sh"]
    sh.leave(bob.id, team.id)
    assert sh.shared_with_me(bob.id) == []
    with pytest.raises(NotFound):
        drive.get(bob.id, team.id)
    assert sh.list_shares(o.id, team.id) == []
    assert [n.name for n in drive.list_children(o.id, team.id)[0]] == ["a.txt", "sub"]
    with pytest.raises(NotFound):  # nothing left to leave
        sh.leave(bob.id, team.id)


def test_leaving_needs_a_share_on_that_very_node(drive, shared, make_user):
    o, bob, sh = shared["owner"], shared["bob"], shared["sh"]
    with pytest.raises(NotFound):  # below the shared folder: the share is on /team
        sh.leave(bob.id, shared["sub"].id)
    with pytest.raises(NotFound):  # the owner has no share of their own files
        sh.leave(o.id, shared["team"].id)
    with pytest.raises(NotFound):
        sh.leave(make_user().id, shared["team"].id)
    assert [x.user_id for x in sh.list_shares(o.id, shared["team"].id)] == [bob.id]
