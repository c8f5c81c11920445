"""The [limits] on the folder tree: depth, nodes per user, nodes per copy, on every path that
creates or moves nodes. Each refusal is a LimitExceeded naming its limit, and leaves nothing
behind (the drive fixture's fsck recounts paths and node counts after every test)."""

import io

import pytest
import sqlalchemy as sa

from storage import batch
from storage.errors import LimitExceeded
from storage.models import Node, User
from tests.conftest import put_bytes


def limits(drive, **kw):
    drive.config["limits"] = {**drive.config["limits"], **kw}


def chain(drive, user, parent, n, prefix="d"):
    ids = []
    for i in range(n):
        parent = drive.mkdir(user.id, parent, f"{prefix}{i}").id
        ids.append(parent)
    return ids


def nodes_of(drive, user):
    with drive.sm() as s:
        return s.execute(sa.select(sa.func.count()).select_from(Node).where(Node.owner_id == user.id)).scalar_one()


def node_count(drive, user):
    with drive.sm() as s:
        return s.execute(sa.select(User.node_count).where(User.id == user.id)).scalar_one()


def test_mkdir_and_put_refused_past_max_depth(drive, make_user):
    limits(drive, max_depth=4)
    u = make_user()
    ids = chain(drive, u, u.root_id, 4)
    with pytest.raises(LimitExceeded) as exc:
        drive.mkdir(u.id, ids[-1], "too-deep")
    assert exc.value.details == {"limit": "max_depth", "max": 4} and "limits.max_depth" in str(exc.value)
    with pytest.raises(LimitExceeded):
        put_bytes(drive, u, "f.txt", b"x", parent=ids[-1])
    put_bytes(drive, u, "f.txt", b"x", parent=ids[-2])  # depth 4 itself is allowed
    assert node_count(drive, u) == 5


def test_move_refused_when_the_subtree_would_go_too_deep(drive, make_user):
    limits(drive, max_depth=4)
    u = make_user()
    a = chain(drive, u, u.root_id, 3, "a")  # a0/a1/a2: depths 1..3
    b = chain(drive, u, u.root_id, 2, "b")  # b0/b1
    with pytest.raises(LimitExceeded):
        drive.move(u.id, a[0], parent_id=b[1])  # a2 would be at depth 5
    assert drive.get(u.id, a[0]).parent_id == u.root_id
    assert drive.move(u.id, a[1], parent_id=b[1]).parent_id == b[1]  # a1, a2 at depths 3, 4
    with pytest.raises(LimitExceeded):
        drive.mkdir(u.id, a[2], "leaf")  # the moved paths count: a2 is at depth 4 now
    with pytest.raises(LimitExceeded):
        drive.move(u.id, b[0], parent_id=a[0])  # b0 at 2 would take a2 to 5
    assert drive.move(u.id, a[1], parent_id=a[0]).parent_id == a[0]  # back where it was


def test_copy_refused_past_max_depth(drive, make_user):
    limits(drive, max_depth=5)
    u = make_user()
    a = chain(drive, u, u.root_id, 3, "a")
    b = chain(drive, u, u.root_id, 3, "b")
    before = nodes_of(drive, u)
    with pytest.raises(LimitExceeded):
        drive.copy(u.id, a[0], b[2])
    assert nodes_of(drive, u) == before
    assert drive.copy(u.id, a[1], b[1]).parent_id == b[1]  # a1/a2 at depths 3 and 4


def test_copy_refused_past_nodes_per_copy_and_nothing_is_written(drive, make_user):
    limits(drive, max_nodes_per_copy=5)
    u = make_user()
    f = drive.mkdir(u.id, u.root_id, "F").id
    for i in range(4):
        put_bytes(drive, u, f"{i}.txt", b"data %d" % i, parent=f)
    assert drive.copy(u.id, f, u.root_id, "F2").name == "F2"  # 5 nodes: at the limit
    put_bytes(drive, u, "4.txt", b"one more", parent=f)
    used, before = drive.account(u.id).used_bytes, nodes_of(drive, u)
    with pytest.raises(LimitExceeded) as exc:
        drive.copy(u.id, f, u.root_id, "F3")
    assert exc.value.details["limit"] == "max_nodes_per_copy"
    assert nodes_of(drive, u) == before and drive.account(u.id).used_bytes == used


def test_copy_storm_stops_at_the_copy_limit(drive, make_user):
    """F into G, G into F, again and again: each copy doubles the tree until the copy limit
    refuses it; the user's node count stays below a bound the limit sets."""
    limits(drive, max_nodes_per_copy=50)
    u = make_user()
    f, g = drive.mkdir(u.id, u.root_id, "F").id, drive.mkdir(u.id, u.root_id, "G").id
    put_bytes(drive, u, "x", b"payload", parent=f)
    refused = 0
    for i in range(17):
        src, dst = (f, g) if i % 2 == 0 else (g, f)
        try:
            drive.copy(u.id, src, dst, f"c{i}")
        except LimitExceeded as exc:
            assert exc.details["limit"] == "max_nodes_per_copy"
            refused += 1
    assert refused > 0
    assert nodes_of(drive, u) <= 1 + 3 + 17 * 50
    assert node_count(drive, u) == nodes_of(drive, u) - 1  # the root is not counted


def test_nodes_per_user_limit_on_every_door(drive, make_user):
    limits(drive, max_nodes_per_user=4)
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    put_bytes(drive, u, "f", b"1", parent=a)
    sub = drive.mkdir(u.id, a, "sub").id
    put_bytes(drive, u, "f", b"2", parent=a)  # a new version, not a new node
    doors = [
        lambda: drive.mkdir(u.id, u.root_id, "b"),
        lambda: put_bytes(drive, u, "g", b"3", parent=sub),
        lambda: drive.copy(u.id, sub, u.root_id, "sub2"),
        lambda: batch.make_folders(drive, u.id, [batch.FolderEntry(u.root_id, "c")]),
    ]
    drive.mkdir(u.id, u.root_id, "b0")  # the 4th node
    for door in doors:
        with pytest.raises(LimitExceeded) as exc:
            door()
        assert exc.value.details == {"limit": "max_nodes_per_user", "max": 4}
    # the trash still counts; purging frees the room
    b0 = drive.resolve(u.id, "/b0").id
    drive.delete(u.id, b0)
    with pytest.raises(LimitExceeded):
        drive.mkdir(u.id, u.root_id, "b")
    drive.purge(u.id, b0)
    assert drive.mkdir(u.id, u.root_id, "b").name == "b"
    assert node_count(drive, u) == 4


def test_tus_upload_is_refused_at_commit_when_the_limit_filled_meanwhile(drive, make_user):
    from storage.uploads import Uploads
    limits(drive, max_nodes_per_user=1)
    u = make_user()
    up = Uploads(drive)
    sid = up.create(u.id, u.root_id, "new.bin", 3).id  # room for one node when it starts
    drive.mkdir(u.id, u.root_id, "only")
    with pytest.raises(LimitExceeded):
        up.append(u.id, sid, 0, io.BytesIO(b"abc"))  # the last byte commits the file
    assert nodes_of(drive, u) == 2


def test_new_files_are_refused_before_their_bytes_are_read(drive, make_user):
    """A PUT or a resumable upload that would create a file past a limit is refused when it
    starts: no byte is read, no upload session opened."""
    from storage.uploads import Uploads
    limits(drive, max_depth=1)
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id

    class Unread(io.RawIOBase):
        def readinto(self, b):
            raise AssertionError("the body was read")
    with pytest.raises(LimitExceeded):
        drive.put(u.id, a, "f.bin", Unread())
    with pytest.raises(LimitExceeded):
        Uploads(drive).create(u.id, a, "f.bin", 10)
    limits(drive, max_depth=5, max_nodes_per_user=1)
    with pytest.raises(LimitExceeded):
        Uploads(drive).create(u.id, a, "f.bin", 10)


def test_batch_folders_refused_past_max_depth(drive, make_user):
    limits(drive, max_depth=2)
    u = make_user()
    a = chain(drive, u, u.root_id, 2)
    with pytest.raises(LimitExceeded):
        batch.make_folders(drive, u.id, [batch.FolderEntry(a[-1], "deep")])
    assert batch.make_folders(drive, u.id, [batch.FolderEntry(a[0], "ok")])[0].created


def test_fsck_recounts_node_counts_and_paths_and_reconcile_repairs_the_count(drive, make_user):
    from storage import maintenance
    from storage.fsck import fsck
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    b = drive.mkdir(u.id, a, "b").id
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == u.id).values(node_count=7))
        s.execute(sa.update(Node).where(Node.id == b).values(path=f"/{u.root_id}/"))
    kinds = sorted(p.kind for p in fsck(drive).problems)
    assert kinds == ["node-count", "node-path"]
    assert maintenance.node_count_drift(drive.sm) == [u.id]
    repairs = maintenance.repair_node_counts(drive.sm, [u.id])
    assert [(r.kind, r.old, r.new) for r in repairs] == [("node_count", 7, 2)]
    assert maintenance.node_count_drift(drive.sm) == []
    with drive.sm() as s, s.begin():
        s.execute(sa.update(Node).where(Node.id == b).values(path=f"/{u.root_id}/{a}/"))


def test_a_put_is_refused_at_commit_when_a_limit_filled_meanwhile(drive, make_user):
    """The limits a put checks before reading its body hold at its commit too: a folder made,
    or moved deeper, while the bytes were read refuses the new file and writes nothing."""
    limits(drive, max_nodes_per_user=2, max_depth=2)
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    drive.hooks["put:before_commit"] = lambda: drive.mkdir(u.id, u.root_id, "late")
    try:
        with pytest.raises(LimitExceeded) as exc:
            put_bytes(drive, u, "f.bin", b"x", parent=a)
        assert exc.value.details == {"limit": "max_nodes_per_user", "max": 2}
        limits(drive, max_nodes_per_user=10)
        drive.hooks["put:before_commit"] = lambda: drive.move(u.id, a, parent_id=drive.resolve(u.id, "/late").id)
        with pytest.raises(LimitExceeded) as exc:
            put_bytes(drive, u, "f.bin", b"x", parent=a)  # a is at depth 2 now: f.bin would be at 3
        assert exc.value.details == {"limit": "max_depth", "max": 2}
    finally:
        drive.hooks.pop("put:before_commit")
    assert nodes_of(drive, u) == 3 and node_count(drive, u) == 2  # the root, a and late
    assert drive.list_children(u.id, a)[0] == []
