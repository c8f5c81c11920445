"""Materialised paths: ancestor lookups in constant queries, iterative walks, paths kept
right by move, copy and restore, and the migration that backfills them."""

import contextlib
import inspect
import sys

import pytest
import sqlalchemy as sa

from storage import tree
from storage.errors import Conflict, LimitExceeded, NotFound
from storage.models import Node
from storage.sharing import Sharing
from tests.conftest import put_bytes


def chain(drive, user, parent, n, prefix="d"):
    ids = []
    for i in range(n):
        parent = drive.mkdir(user.id, parent, f"{prefix}{i}").id
        ids.append(parent)
    return ids


@contextlib.contextmanager
def count_queries(engine):
    seen = []

    def note(conn, cursor, statement, *args):
        seen.append(statement)
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield seen
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def path_of(drive, node_id):
    with drive.sm() as s:
        return s.get(Node, node_id).path


def test_paths_name_the_parent_chain():
    assert tree.ancestors("/") == [] and tree.ancestors("/1/25/9/") == [1, 25, 9]
    assert tree.depth("/") == 0 and tree.depth("/1/25/9/") == 3
    assert tree.child_path("/1/", 25) == "/1/25/" and tree.path_of([1, 25]) == "/1/25/"


def test_subtree_range_holds_exactly_the_descendants(drive, make_user):
    u = make_user()
    a = chain(drive, u, u.root_id, 3, "a")
    b = drive.mkdir(u.id, u.root_id, "b").id
    prefix = tree.child_path(path_of(drive, a[0]), a[0])
    with drive.sm() as s:
        inside = set(s.execute(sa.select(Node.id).where(tree.under(Node.path, prefix))).scalars())
        deepest = s.execute(sa.select(sa.func.max(tree.depth_sql(Node.path))).where(tree.under(Node.path, prefix))).scalar_one()
    assert inside == {a[1], a[2]} and b not in inside
    assert deepest == 3


def test_role_checks_every_ancestor_in_one_query(drive, make_user):
    """A share high up applies to a node 150 levels below it, and finding that out costs the
    same one query at depth 150 as at depth 2."""
    owner, guest = make_user(), make_user()
    ids = chain(drive, owner, owner.root_id, 150)
    Sharing(drive).grant(owner.id, ids[0], guest.email, "editor")
    costs = {}
    for depth in (2, 150):
        with drive.sm() as s:
            node = s.get(Node, ids[depth - 1])
            with count_queries(drive.engine) as seen:
                role = tree.role_of(s, guest.id, node)
            assert role == "editor"
            costs[depth] = len(seen)
    assert costs[2] == costs[150] == 1
    stranger = make_user()
    with drive.sm() as s:
        node = s.get(Node, ids[-1])
        with count_queries(drive.engine) as seen:
            assert tree.role_of(s, stranger.id, node) is None
    assert len(seen) == 1


def test_copy_of_a_deep_chain_does_not_recurse(drive, make_user):
    """Copying a 250-level chain works with only a few dozen stack frames to spare: the walk
    is a loop, not one frame per level."""
    u = make_user()
    ids = chain(drive, u, u.root_id, 250)
    put_bytes(drive, u, "leaf.txt", b"bottom", parent=ids[-1])
    dest = drive.mkdir(u.id, u.root_id, "copy").id
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(len(inspect.stack(0)) + 120)
    try:
        top = drive.copy(u.id, ids[0], dest)
    finally:
        sys.setrecursionlimit(old)
    path = "/copy/" + "/".join(f"d{i}" for i in range(250)) + "/leaf.txt"
    leaf = drive.resolve(u.id, path)
    assert leaf.size == 6 and tree.ancestors(path_of(drive, leaf.id))[:3] == [u.root_id, dest, top.id]


def test_depth_is_capped_by_the_path_column_too(drive, make_user):
    """A max_depth set higher than paths can hold still ends in LimitExceeded, not in a
    database error."""
    drive.config["limits"] = {**drive.config["limits"], "max_depth": 100_000}
    u = make_user()
    with drive.sm() as s, s.begin():  # a folder with a path near the column's size, written directly
        parent = s.get(Node, u.root_id)
        node = Node(owner_id=u.id, parent_id=parent.id, kind="folder", name="x", live_name="x",
                    path="/" + f"{u.root_id}/" * (3070 // (len(str(u.root_id)) + 1)))
        s.add(node)
        s.flush()
        nid = node.id
    with pytest.raises(LimitExceeded):
        drive.mkdir(u.id, nid, "deeper")
    with drive.sm() as s, s.begin():  # put it back as fsck expects it
        node = s.get(Node, nid)
        node.path = tree.child_path("/", u.root_id)
    drive.skip_fsck = True  # the node count was bypassed on purpose above


def test_move_rewrites_the_subtree_and_shares_follow(drive, make_user):
    owner, guest = make_user(), make_user()
    a = chain(drive, owner, owner.root_id, 4, "a")
    f = put_bytes(drive, owner, "f.txt", b"in a3", parent=a[3]).node.id
    b = drive.mkdir(owner.id, owner.root_id, "b").id
    Sharing(drive).grant(owner.id, b, guest.email, "viewer")
    assert drive.get(guest.id, b).role == "viewer"
    with pytest.raises(NotFound):
        drive.get(guest.id, f)
    drive.move(owner.id, a[1], parent_id=b)
    assert tree.ancestors(path_of(drive, f)) == [owner.root_id, b, a[1], a[2], a[3]]
    assert drive.get(guest.id, f).role == "viewer"  # b's share now covers it
    drive.move(owner.id, a[1], parent_id=a[0])
    assert tree.ancestors(path_of(drive, f)) == [owner.root_id, *a]
    with pytest.raises(NotFound):
        drive.get(guest.id, f)


def test_cycles_refused_by_path(drive, make_user):
    u = make_user()
    a = chain(drive, u, u.root_id, 3)
    with pytest.raises(Conflict):
        drive.move(u.id, a[0], parent_id=a[2])
    with pytest.raises(Conflict):
        drive.move(u.id, a[1], parent_id=a[1])
    with pytest.raises(Conflict):
        drive.copy(u.id, a[0], a[2])


def test_restore_follows_a_moved_folder(drive, make_user):
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    c = drive.mkdir(u.id, a, "c").id
    leaf = put_bytes(drive, u, "leaf", b"x", parent=c).node.id
    b = drive.mkdir(u.id, u.root_id, "b").id
    drive.delete(u.id, c)
    drive.move(u.id, a, parent_id=b)  # the trashed c moves with its folder
    assert tree.ancestors(path_of(drive, leaf)) == [u.root_id, b, a, c]
    drive.restore(u.id, c)
    assert drive.resolve(u.id, "/b/a/c/leaf").id == leaf
    drive.delete(u.id, c)
    drive.delete(u.id, a)
    drive.restore(u.id, c)  # its folder is in the trash: c lands in the root
    assert drive.resolve(u.id, "/c/leaf").id == leaf
    assert tree.ancestors(path_of(drive, leaf)) == [u.root_id, c]


@pytest.fixture(params=["sqlite", pytest.param("mariadb", marks=pytest.mark.integration)])
def empty_db(request, tmp_path):
    """An empty database of this test's own (the migration runs from nothing to 0004, then on)."""
    from storage.db import make_engine
    if request.param == "sqlite":
        yield make_engine(f"sqlite:///{tmp_path / 'old.db'}")
        return
    from tests.e2e.conftest import own_mysql_database
    with own_mysql_database(request.getfixturevalue("mysql_url")) as url:
        engine = make_engine(url)
        yield engine
        engine.dispose()


def test_migration_backfills_paths_and_counts(empty_db):
    from alembic import command

    from storage.db import _alembic_config, migrate
    engine = empty_db
    with engine.begin() as conn:
        cfg = _alembic_config(engine)
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO users (id, email, password_hash, plan, quota_bytes, used_bytes, is_admin, "
                             "root_id, created_at) VALUES (:id, :email, 'x', 'free', 1, 0, 0, :root, '2026-01-01')"),
                     [{"id": uid, "email": f"u{uid}@x", "root": uid * 1000} for uid in (1, 2)])
        rows = [(1000, 1, None), (2000, 2, None)] + [(1001 + i, 1, 1000 + i) for i in range(700)]
        for nid, owner, parent in rows:  # a 700-level chain under user 1's root, parents first
            conn.execute(sa.text("INSERT INTO nodes (id, owner_id, parent_id, kind, name, live_name, created_at, "
                                 "updated_at) VALUES (:id, :owner, :parent, 'folder', :name, :live, '2026-01-01', "
                                 "'2026-01-01')"),
                         {"id": nid, "owner": owner, "parent": parent, "name": str(nid),
                          "live": str(nid) if parent else None})
    migrate(engine)
    with engine.connect() as conn:
        paths = dict(conn.execute(sa.text("SELECT id, path FROM nodes")).all())
        counts = dict(conn.execute(sa.text("SELECT id, node_count FROM users")).all())
    assert paths[1000] == paths[2000] == "/"
    assert paths[1001] == "/1000/" and paths[1614] == "/" + "".join(f"{1000 + i}/" for i in range(614))
    # past the 3,072 characters the column holds, paths stay NULL (fsck lists them) instead
    # of failing the migration
    assert paths[1615] is None and paths[1700] is None
    assert counts == {1: 700, 2: 0}
    engine.dispose()
