"""storage/davstate.py: WebDAV locks and dead properties in the database, on SQLite and
MariaDB (the ``drive`` fixture): the id namespace, expiry by the clock, the index ranges for
the locks above and below a root, and properties that follow their node."""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from storage import clock, davstate
from storage.clock import now
from storage.errors import LimitExceeded
from storage.models import DavLock, DavProp
from tests.conftest import put_bytes


@pytest.fixture
def nodes(drive, make_user):
    """owner: /a/b/f.txt, /a/b2/ and /c/; their roots in the id namespace."""
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    b = drive.mkdir(u.id, a, "b").id
    b2 = drive.mkdir(u.id, a, "b2").id
    f = put_bytes(drive, u, "f.txt", b"x", parent=b).node.id
    c = drive.mkdir(u.id, u.root_id, "c").id
    r = u.root_id
    roots = dict(root=davstate.id_root([], r), a=davstate.id_root([r], a), b=davstate.id_root([r, a], b),
                 b2=davstate.id_root([r, a], b2), f=davstate.id_root([r, a, b], f), c=davstate.id_root([r], c))
    return dict(user=u, ids=dict(root=r, a=a, b=b, b2=b2, f=f, c=c), roots=roots)


def add(drive, root, *, token=None, scope="exclusive", depth="0", timeout=60, owner="<owner/>", user_id=None):
    token = token or f"opaquelocktoken:{root}:{scope}:{depth}:{timeout}"
    return drive.tx(lambda s: davstate.create_lock(
        s, token=token, root=root, user_id=user_id, principal="alice", scope=scope, depth=depth,
        timeout=timeout, owner=owner, expires_at=davstate.expiry(timeout)))


def tokens(drive, root, **kw):
    return sorted(r.token for r in drive.tx(lambda s: davstate.locks_at(s, root, **kw)))


# ---- the id namespace -------------------------------------------------------------------------

def test_roots_of_the_id_namespace():
    assert davstate.id_root([1, 5], 9) == "/.ids/1/5/9"
    assert davstate.id_root([], 1) == "/.ids/1"
    assert davstate.root_ids("/.ids/1/5/9/") == [1, 5, 9]
    assert davstate.node_of("/.ids/1/5/9") == 9
    assert davstate.tree_root("/.ids/1/5/9") == "/.ids/1"
    for bad in ("/", "/.ids", "/.ids/", "/.ids/1/x", "/dav/1", "/.ids/1//5", ".ids/1"):
        with pytest.raises(ValueError):
            davstate.root_ids(bad)
    assert davstate.ancestor_roots("/.ids/1/5") == ["/.ids/1", "/.ids", "/"]
    assert davstate.ancestor_roots("/.ids") == ["/"]
    assert davstate.ancestor_roots("/") == []


# ---- locks ------------------------------------------------------------------------------------

def test_a_lock_round_trips_and_is_deleted(drive, nodes):
    root = nodes["roots"]["f"]
    before = now()
    rec = add(drive, root + "/", token="opaquelocktoken:1", scope="shared", owner="<owner>é</owner>",
              user_id=nodes["user"].id)
    after = now()
    assert rec.root == root  # the trailing "/" of a folder's URL is not part of its root
    got = drive.tx(lambda s: davstate.get_lock(s, "opaquelocktoken:1"))
    assert got == rec
    assert (got.scope, got.depth, got.kind, got.timeout, got.owner, got.user_id, got.principal) == \
        ("shared", "0", "write", 60, "<owner>é</owner>", nodes["user"].id, "alice")
    assert before + dt.timedelta(seconds=60) <= got.expires_at <= after + dt.timedelta(seconds=60)
    assert drive.tx(lambda s: davstate.delete_lock(s, "opaquelocktoken:1")) is True
    assert drive.tx(lambda s: davstate.get_lock(s, "opaquelocktoken:1")) is None
    assert drive.tx(lambda s: davstate.delete_lock(s, "opaquelocktoken:1")) is False


def test_a_lock_outside_the_id_namespace_or_malformed_is_refused(drive, nodes):
    for root in ("/", "/.ids", "/dav/a"):
        with pytest.raises(ValueError):
            add(drive, root)
    with pytest.raises(ValueError):
        add(drive, nodes["roots"]["f"], scope="everyone")
    with pytest.raises(ValueError):
        add(drive, nodes["roots"]["f"], depth="1")
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(DavLock)).scalar_one() == 0


def test_locks_on_a_root_above_it_and_below_it(drive, nodes):
    r = nodes["roots"]
    add(drive, r["a"], token="t-a", depth="infinity")
    add(drive, r["b"], token="t-b")
    add(drive, r["f"], token="t-f", scope="shared")
    add(drive, r["b2"], token="t-b2")
    add(drive, r["c"], token="t-c")
    assert tokens(drive, r["b"]) == ["t-b"]
    assert tokens(drive, r["b"], ancestors=True) == ["t-a", "t-b"]
    assert tokens(drive, r["b"], on_root=False, descendants=True) == ["t-f"]
    assert tokens(drive, r["a"], on_root=False, descendants=True) == ["t-b", "t-b2", "t-f"]
    assert tokens(drive, r["root"], on_root=False, descendants=True) == ["t-a", "t-b", "t-b2", "t-c", "t-f"]
    assert tokens(drive, "/", on_root=False, descendants=True) == ["t-a", "t-b", "t-b2", "t-c", "t-f"]
    assert tokens(drive, r["f"], ancestors=True) == ["t-a", "t-b", "t-f"]
    assert tokens(drive, r["c"], ancestors=True, descendants=True) == ["t-c"]
    assert tokens(drive, r["b"], on_root=False) == []


def test_the_range_below_a_root_is_exact_about_ids_that_share_digits(drive, make_user):
    """Roots are compared as strings: /.ids/1/5 must not take /.ids/1/50 or /.ids/1/5x for
    one of its own."""
    u = make_user()
    r = u.root_id
    add(drive, f"/.ids/{r}/5/7", token="under-5")
    add(drive, f"/.ids/{r}/50", token="beside-50")
    add(drive, f"/.ids/{r}/5", token="on-5")
    add(drive, f"/.ids/{r}/4/5", token="other-branch")
    assert tokens(drive, f"/.ids/{r}/5", on_root=False, descendants=True) == ["under-5"]
    assert tokens(drive, f"/.ids/{r}/5", descendants=True) == ["on-5", "under-5"]
    assert tokens(drive, f"/.ids/{r}/50/1", ancestors=True) == ["beside-50"]


def test_an_expired_lock_is_invisible_then_deleted(drive, nodes):
    r = nodes["roots"]
    add(drive, r["f"], token="short", timeout=10)
    add(drive, r["b"], token="long", timeout=1000, depth="infinity")
    add(drive, r["c"], token="never", timeout=-1)
    assert drive.tx(lambda s: davstate.get_lock(s, "never")).expires_at is None
    clock.advance(11)
    assert drive.tx(lambda s: davstate.get_lock(s, "short")) is None
    assert tokens(drive, r["f"], ancestors=True) == ["long"]
    assert tokens(drive, r["root"], on_root=False, descendants=True) == ["long", "never"]
    with drive.sm() as s:  # get_lock deleted the expired row it was asked for
        assert s.get(DavLock, "short") is None
    add(drive, r["b2"], token="short2", timeout=10)
    clock.advance(2000)
    assert drive.tx(lambda s: davstate.refresh_lock(s, "long", timeout=60, expires_at=davstate.expiry(60))) is None
    assert drive.tx(lambda s: davstate.delete_lock(s, "short2")) is False  # expired counts as not there
    assert drive.tx(lambda s: davstate.purge_expired_locks(s)) == 1  # "long"; "short2" went above
    with drive.sm() as s:
        assert s.execute(sa.select(DavLock.token)).scalars().all() == ["never"]


def test_purge_within_a_tree_leaves_other_trees_alone(drive, nodes, make_user):
    other = make_user()
    add(drive, nodes["roots"]["f"], token="mine", timeout=5)
    add(drive, davstate.id_root([], other.root_id), token="theirs", timeout=5)
    clock.advance(10)
    assert drive.tx(lambda s: davstate.purge_expired_locks(s, within=nodes["roots"]["root"])) == 1
    with drive.sm() as s:
        assert s.execute(sa.select(DavLock.token)).scalars().all() == ["theirs"]


def test_refresh_gives_a_live_lock_a_new_lifetime(drive, nodes):
    add(drive, nodes["roots"]["f"], token="t", timeout=10)
    clock.advance(8)
    until = now() + dt.timedelta(seconds=100)
    rec = drive.tx(lambda s: davstate.refresh_lock(s, "t", timeout=100, expires_at=until))
    assert rec.timeout == 100 and rec.expires_at == until
    clock.advance(50)  # past the first lifetime, inside the second
    assert drive.tx(lambda s: davstate.get_lock(s, "t")).token == "t"
    assert drive.tx(lambda s: davstate.refresh_lock(s, "nope", timeout=5, expires_at=None)) is None


def test_delete_all_locks(drive, nodes):
    add(drive, nodes["roots"]["f"], token="1")
    add(drive, nodes["roots"]["c"], token="2")
    assert drive.tx(davstate.delete_all_locks) == 2
    assert tokens(drive, "/", on_root=False, descendants=True) == []


def test_hold_tree_takes_a_root_of_the_namespace_and_refuses_anything_else(drive, nodes):
    drive.tx(lambda s: davstate.hold_tree(s, nodes["roots"]["f"]))
    with pytest.raises(ValueError):
        drive.tx(lambda s: davstate.hold_tree(s, "/"))


# ---- dead properties --------------------------------------------------------------------------

def test_properties_set_get_list_remove(drive, nodes):
    f, c = nodes["ids"]["f"], nodes["ids"]["c"]
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}b", "<b xmlns='urn:x'>1</b>"))
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}a", "<a xmlns='urn:x'>é</a>"))
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}b", "<b xmlns='urn:x'>2</b>"))  # over the old value
    drive.tx(lambda s: davstate.set_prop(s, c, "{urn:x}a", "<a xmlns='urn:x'>c</a>"))
    assert drive.tx(lambda s: davstate.prop_names(s, f)) == ["{urn:x}a", "{urn:x}b"]
    assert drive.tx(lambda s: davstate.get_prop(s, f, "{urn:x}b")) == "<b xmlns='urn:x'>2</b>"
    assert drive.tx(lambda s: davstate.get_prop(s, f, "{urn:x}a")) == "<a xmlns='urn:x'>é</a>"
    assert drive.tx(lambda s: davstate.get_prop(s, f, "{urn:x}zzz")) is None
    assert drive.tx(lambda s: davstate.remove_prop(s, f, "{urn:x}b")) is True
    assert drive.tx(lambda s: davstate.remove_prop(s, f, "{urn:x}b")) is False
    assert drive.tx(lambda s: davstate.prop_names(s, f)) == ["{urn:x}a"]
    assert drive.tx(lambda s: davstate.remove_props(s, f)) == 1
    assert drive.tx(lambda s: davstate.prop_names(s, f)) == []
    assert drive.tx(lambda s: davstate.prop_names(s, c)) == ["{urn:x}a"]  # another node's are untouched


def test_copy_makes_the_destination_an_exact_copy(drive, nodes):
    f, c, b2 = nodes["ids"]["f"], nodes["ids"]["c"], nodes["ids"]["b2"]
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}a", "A"))
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}b", "B"))
    drive.tx(lambda s: davstate.set_prop(s, c, "{urn:x}old", "gone after the copy"))
    assert drive.tx(lambda s: davstate.copy_props(s, f, c)) == 2
    assert {n: drive.tx(lambda s: davstate.get_prop(s, c, n)) for n in drive.tx(lambda s: davstate.prop_names(s, c))} \
        == {"{urn:x}a": "A", "{urn:x}b": "B"}
    assert drive.tx(lambda s: davstate.copy_props(s, f, f)) == 2  # onto itself: unchanged
    assert drive.tx(lambda s: davstate.prop_names(s, f)) == ["{urn:x}a", "{urn:x}b"]
    drive.tx(lambda s: davstate.set_prop(s, b2, "{urn:x}x", "x"))
    assert drive.tx(lambda s: davstate.copy_props(s, nodes["ids"]["a"], b2)) == 0  # a source without any
    assert drive.tx(lambda s: davstate.prop_names(s, b2)) == []


def test_properties_follow_their_node_through_a_move(drive, nodes):
    u, f = nodes["user"], nodes["ids"]["f"]
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}a", "A"))
    drive.move(u.id, f, parent_id=nodes["ids"]["c"], name="g.txt")
    assert drive.tx(lambda s: davstate.get_prop(s, f, "{urn:x}a")) == "A"


def test_property_bounds(drive, nodes, monkeypatch):
    f = nodes["ids"]["f"]
    with pytest.raises(LimitExceeded):
        drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}" + "n" * 300, "v"))
    with pytest.raises(LimitExceeded):
        drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}big", "é" * 40000))  # 80,000 bytes
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}fits", "v" * davstate.MAX_PROP_VALUE_BYTES))
    monkeypatch.setattr(davstate, "MAX_NODE_PROPS_BYTES", 100)
    drive.tx(lambda s: davstate.remove_props(s, f))
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}a", "a" * 60))
    with pytest.raises(LimitExceeded):
        drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}b", "b" * 60))
    drive.tx(lambda s: davstate.set_prop(s, f, "{urn:x}a", "a" * 90))  # replacing its own value is not adding
    with drive.sm() as s:
        assert s.execute(sa.select(DavProp.name).where(DavProp.node_id == f)).scalars().all() == ["{urn:x}a"]


def test_nodes_with_props_of_a_folder_and_its_children(drive, nodes):
    ids = nodes["ids"]
    for nid in (ids["a"], ids["b2"], ids["f"], ids["c"]):
        drive.tx(lambda s: davstate.set_prop(s, nid, "{urn:x}a", "A"))
    drive.tx(lambda s: davstate.set_prop(s, ids["a"], "{urn:x}b", "B"))
    # a's children are b and b2; f is a grandchild, c is beside a
    assert drive.tx(lambda s: davstate.nodes_with_props(s, ids["a"])) == {ids["a"], ids["b2"]}
    assert drive.tx(lambda s: davstate.nodes_with_props(s, ids["b"])) == {ids["f"]}
    assert drive.tx(lambda s: davstate.nodes_with_props(s, nodes["ids"]["root"])) == {ids["a"], ids["c"]}
