"""webapi/dav/locks.py and webapi/dav/props.py: WsgiDAV's LockManager over locks in the
database, seen by two workers (two managers, two storages, two engines on one database), and
dead properties that survive a restart; on SQLite and MariaDB (the ``drive`` fixture)."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from wsgidav import util  # noqa: F401  (first: wsgidav.dav_error imported alone is a circular import)
from wsgidav.dav_error import HTTP_FORBIDDEN, HTTP_INSUFFICIENT_STORAGE, HTTP_LOCKED, DAVError
from wsgidav.lock_man.lock_manager import LockManager
from wsgidav.lock_man.lock_storage import LockStorageDict

from storage import clock, davstate
from storage.db import make_engine
from storage.drive import Drive
from storage.models import DavLock
from tests.conftest import put_bytes
from webapi.dav.locks import DbLockManager, DbLockStorage
from webapi.dav.props import PREFETCHED, DbPropertyManager

OWNER = b"<?xml version='1.0' encoding='UTF-8'?>\n<owner xmlns=\"DAV:\">litmus</owner>"


@pytest.fixture
def other_drive(drive, config):
    """A second worker's drive: its own engine (its own connections) on the same database."""
    d = Drive(config, engine=make_engine(drive.engine.url.render_as_string(hide_password=False)))
    yield d
    d.close()


@pytest.fixture
def workers(drive, other_drive):
    return DbLockManager(DbLockStorage(drive)), DbLockManager(DbLockStorage(other_drive))


@pytest.fixture
def urls(drive, make_user):
    """/a/b/f.txt, /a/g.txt and /c/ of one user, as URLs of the id namespace."""
    u = make_user()
    a = drive.mkdir(u.id, u.root_id, "a").id
    b = drive.mkdir(u.id, a, "b").id
    f = put_bytes(drive, u, "f.txt", b"f", parent=b).node.id
    g = put_bytes(drive, u, "g.txt", b"g", parent=a).node.id
    c = drive.mkdir(u.id, u.root_id, "c").id
    r = u.root_id
    return dict(root=f"/.ids/{r}", a=f"/.ids/{r}/{a}", b=f"/.ids/{r}/{a}/{b}", f=f"/.ids/{r}/{a}/{b}/{f}",
                g=f"/.ids/{r}/{a}/{g}", c=f"/.ids/{r}/{c}", ids=dict(a=a, b=b, f=f, g=g, c=c))


def lock(mgr, url, scope="exclusive", depth="0", timeout=600, principal="alice", tokens=()):
    return mgr.acquire(url=url, lock_type="write", lock_scope=scope, lock_depth=depth, lock_owner=OWNER,
                       timeout=timeout, principal=principal, token_list=list(tokens))


def refused(fn, status=HTTP_LOCKED) -> bool:
    try:
        fn()
    except DAVError as exc:
        assert exc.value == status, exc
        return True
    return False


# ---- the lock dicts and the timeouts are LockStorageDict's ------------------------------------

@pytest.mark.parametrize("timeout", [600, None, -1, 10 ** 9])
def test_lock_dicts_are_shaped_and_timed_as_lockstoragedicts(workers, urls, timeout):
    db = workers[0]
    mem = LockManager(LockStorageDict())
    before = clock.now().timestamp()
    ours = lock(db, urls["f"] + "/", timeout=timeout)
    after = clock.now().timestamp()
    theirs = lock(mem, urls["f"] + "/", timeout=timeout)
    assert set(ours) == set(theirs) == {"root", "type", "scope", "depth", "owner", "timeout", "principal",
                                        "token", "expire"}
    for key in ("root", "type", "scope", "depth", "owner", "principal"):
        assert ours[key] == theirs[key] and type(ours[key]) is type(theirs[key]), key
    assert ours["timeout"] == theirs["timeout"]  # a float, or the int maximum, in LockStorageDict
    assert type(ours["expire"]) is float and ours["token"].startswith("opaquelocktoken:")
    stored = db.get_lock(ours["token"])
    assert stored == ours  # what create returned is what is stored
    # LockStorageDict's default for no timeout, its maximum for an infinite or a longer one;
    # expire is that many seconds from when the lock was taken
    granted = ours["timeout"]
    assert granted == {600: 600.0, None: 604800.0, -1: 2419200.0, 10 ** 9: 2419200.0}[timeout]
    assert before <= ours["expire"] - granted <= after


def test_an_infinite_lock_stored_without_expiry_reads_back_as_minus_one(drive, workers, urls):
    drive.tx(lambda s: davstate.create_lock(s, token="opaquelocktoken:x", root=urls["c"], user_id=None,
                                            principal="alice", scope="shared", depth="0", timeout=-1,
                                            owner="", expires_at=None))
    got = workers[1].get_lock("opaquelocktoken:x")
    assert got["timeout"] == -1 and got["expire"] == -1 and got["owner"] == b""


# ---- two workers on one database --------------------------------------------------------------

def test_a_lock_taken_by_one_worker_blocks_a_conflicting_one_in_the_other(workers, urls):
    w1, w2 = workers
    taken = lock(w1, urls["f"])
    assert refused(lambda: lock(w2, urls["f"]))
    assert refused(lambda: lock(w2, urls["f"], scope="shared"))
    assert refused(lambda: lock(w2, urls["b"], depth="infinity"))  # a folder above, with the child locked
    lock(w2, urls["b"], depth="0")  # depth 0 on the folder does not cover the file
    lock(w2, urls["g"])  # nor does a lock on the file beside it
    assert w2.get_lock(taken["token"]) == taken
    assert [x["token"] for x in w2.get_url_lock_list(urls["f"])] == [taken["token"]]


def test_shared_locks_share_and_exclude_an_exclusive_one(workers, urls):
    w1, w2 = workers
    s1 = lock(w1, urls["f"], scope="shared")
    s2 = lock(w2, urls["f"], scope="shared", principal="bob")
    assert refused(lambda: lock(w1, urls["f"]))
    assert sorted(x["token"] for x in w1.get_url_lock_list(urls["f"])) == sorted([s1["token"], s2["token"]])


def test_a_depth_infinity_lock_on_a_folder_covers_what_is_below_it(workers, urls):
    w1, w2 = workers
    held = lock(w1, urls["a"], depth="infinity")
    for url in (urls["a"], urls["b"], urls["f"], urls["g"]):
        assert refused(lambda: w2.check_write_permission(url=url, depth="0", token_list=[], principal="alice"))
        assert refused(lambda: lock(w2, url, scope="shared"))
    # the holder, with its token, may write below it; someone else with the token may not
    w2.check_write_permission(url=urls["f"], depth="0", token_list=[held["token"]], principal="alice")
    assert refused(lambda: w2.check_write_permission(url=urls["f"], depth="0", token_list=[held["token"]],
                                                     principal="bob"))
    w2.check_write_permission(url=urls["c"], depth="infinity", token_list=[], principal="bob")
    # a depth-infinity write on a folder above a lock is refused even to its holder
    assert refused(lambda: w2.check_write_permission(url=urls["root"], depth="infinity",
                                                     token_list=[held["token"]], principal="alice"))
    w2.check_write_permission(url=urls["root"], depth="0", token_list=[], principal="bob")
    assert [x["token"] for x in w2.get_indirect_url_lock_list(urls["f"])] == [held["token"]]


def test_a_url_outside_the_id_namespace_cannot_be_locked(workers, urls):
    w1, _ = workers
    for url in ("/.ids/shared/7", "/.ids", "/"):
        assert refused(lambda: lock(w1, url), HTTP_FORBIDDEN)
    assert w1.get_url_lock_list("/", recursive=True) == []
    w1.check_write_permission(url="/.ids/shared/7", depth="infinity", token_list=[], principal="alice")


def test_refresh_through_the_other_worker(workers, urls):
    w1, w2 = workers
    held = lock(w1, urls["f"], timeout=100)
    clock.advance(90)
    fresh = w2.refresh(held["token"], timeout=1000)
    assert fresh["timeout"] == 1000 and fresh["expire"] > held["expire"]
    clock.advance(500)  # past the first lifetime, inside the second
    assert w1.get_lock(held["token"], key="root") == urls["f"]
    assert refused(lambda: lock(w1, urls["f"]))
    with pytest.raises(ValueError):
        w2.refresh("opaquelocktoken:nope", timeout=10)


def test_an_expired_lock_is_gone_for_both_workers_and_deleted(drive, workers, urls):
    w1, w2 = workers
    held = lock(w1, urls["a"], depth="infinity", timeout=60)
    clock.advance(61)
    assert w2.get_lock(held["token"]) is None
    assert w2.get_url_lock_list(urls["a"]) == []
    w2.check_write_permission(url=urls["f"], depth="0", token_list=[], principal="bob")
    lock(w2, urls["f"], principal="bob")  # taking a lock in the tree deletes its expired ones
    with drive.sm() as s:
        assert s.get(DavLock, held["token"]) is None
    assert w1.storage.delete(held["token"]) is False


def test_release_in_one_worker_frees_the_other(workers, urls):
    w1, w2 = workers
    held = lock(w1, urls["a"], depth="infinity")
    w2.release(held["token"])
    assert w1.get_lock(held["token"]) is None
    w1.check_write_permission(url=urls["f"], depth="0", token_list=[], principal="bob")
    lock(w1, urls["f"], principal="bob")
    w2.remove_all_locks_from_url(urls["a"], recursive=True)
    assert w1.get_url_lock_list(urls["a"], recursive=True) == []


def test_clear_and_cleanup(workers, urls):
    w1, w2 = workers
    lock(w1, urls["f"], timeout=10)
    lock(w1, urls["c"], timeout=1000)
    clock.advance(20)
    w2.storage.cleanup()
    kept = w1.storage.get_lock_list("/", include_root=False, include_children=True, token_only=True)
    assert len(kept) == 1
    assert w1.storage.run(lambda s: s.execute(sa.select(DavLock.token)).scalars().all()) == kept
    w2.storage.clear()
    assert w1.storage.get_lock_list("/", include_root=False, include_children=True, token_only=True) == []


def test_the_conflict_rules_are_wsgidavs_own(workers, urls):
    """The same requests, one after another, through LockManager over LockStorageDict and
    through the database: the same answers."""
    db = workers[0]
    mem = LockManager(LockStorageDict())
    steps = [(urls["b"], "shared", "infinity", "alice"), (urls["f"], "shared", "0", "bob"),
             (urls["f"], "exclusive", "0", "bob"), (urls["a"], "exclusive", "0", "carol"),
             (urls["a"], "shared", "infinity", "carol"), (urls["g"], "exclusive", "infinity", "dan"),
             (urls["root"], "shared", "infinity", "erin"), (urls["c"], "exclusive", "0", "erin"),
             (urls["c"], "exclusive", "0", "erin"), (urls["root"], "shared", "0", "fred")]
    answers = []
    for mgr in (mem, db):
        answers.append([not refused(lambda: lock(mgr, url, scope=scope, depth=depth, principal=who))
                        for url, scope, depth, who in steps])
    assert answers[0] == answers[1]
    assert answers[1] == [True, True, False, True, False, True, False, True, False, True]


def test_two_workers_taking_conflicting_locks_at_once_get_one(drive, other_drive, urls):
    """Worker 1 has checked for conflicts and not yet stored its lock when worker 2 asks for
    the same exclusive lock: worker 2 must wait for worker 1's transaction, and then see it."""
    checked, second_done = threading.Event(), threading.Event()

    class Slow(DbLockStorage):
        def create(self, path, lock_):
            checked.set()
            second_done.wait(3)  # worker 2 cannot finish before this create commits
            return super().create(path, lock_)

    w1, w2 = DbLockManager(Slow(drive)), DbLockManager(DbLockStorage(other_drive))
    results: dict[str, object] = {}

    def first():
        results["first"] = lock(w1, urls["f"])

    def second():
        try:
            results["second"] = lock(w2, urls["f"])
        except DAVError as exc:
            results["second"] = exc
        finally:
            second_done.set()

    t1 = threading.Thread(target=first)
    t1.start()
    assert checked.wait(30)
    t2 = threading.Thread(target=second)
    t2.start()
    t1.join(60)
    t2.join(60)
    assert isinstance(results["first"], dict)
    assert isinstance(results["second"], DAVError) and results["second"].value == HTTP_LOCKED
    assert [x["token"] for x in w2.get_url_lock_list(urls["f"])] == [results["first"]["token"]]


# ---- dead properties --------------------------------------------------------------------------

def test_properties_round_trip_and_survive_a_restart(drive, other_drive, config, urls):
    pm = DbPropertyManager(drive)
    f, c = urls["f"], urls["c"] + "/"
    pm.write_property(f, "{urn:x}color", b'<ns0:color xmlns:ns0="urn:x">r&#233;d</ns0:color>')
    pm.write_property(f, "{urn:x}size", '<ns0:size xmlns:ns0="urn:x">3</ns0:size>')
    pm.write_property(c, "{urn:x}color", b'<ns0:color xmlns:ns0="urn:x">blue</ns0:color>')
    pm.write_property(f, "{urn:x}size", b'<ns0:size xmlns:ns0="urn:x">4</ns0:size>')
    del pm
    restarted = Drive(config, engine=make_engine(drive.engine.url.render_as_string(hide_password=False)))
    try:
        pm2 = DbPropertyManager(restarted)
        assert sorted(pm2.get_properties(f)) == ["{urn:x}color", "{urn:x}size"]
        assert pm2.get_property(f, "{urn:x}color") == '<ns0:color xmlns:ns0="urn:x">r&#233;d</ns0:color>'
        assert pm2.get_property(f, "{urn:x}size") == '<ns0:size xmlns:ns0="urn:x">4</ns0:size>'
        assert pm2.get_property(urls["c"], "{urn:x}color") == '<ns0:color xmlns:ns0="urn:x">blue</ns0:color>'
        assert pm2.get_property(f, "{urn:x}nope") is None
        pm2.remove_property(f, "{urn:x}size")
        pm2.remove_property(f, "{urn:x}size")  # not there: no error
        assert DbPropertyManager(other_drive).get_properties(f) == ["{urn:x}color"]
        pm2.remove_properties(f)
        assert pm2.get_properties(f) == []
        assert pm2.get_properties(c) == ["{urn:x}color"]
    finally:
        restarted.close()


def test_properties_follow_the_node_on_move_and_are_copied_by_id(drive, urls):
    pm = DbPropertyManager(drive)
    pm.write_property(urls["f"], "{urn:x}a", b"<a xmlns='urn:x'>1</a>")
    pm.move_properties(urls["f"], urls["c"] + "/f.txt", with_children=False)
    assert pm.get_property(urls["f"], "{urn:x}a") == "<a xmlns='urn:x'>1</a>"
    pm.copy_properties(urls["f"], urls["g"])
    assert pm.get_property(urls["g"], "{urn:x}a") == "<a xmlns='urn:x'>1</a>"
    pm.remove_property(urls["f"], "{urn:x}a")
    assert pm.get_property(urls["g"], "{urn:x}a") == "<a xmlns='urn:x'>1</a>"  # a copy, not a link


def test_dry_runs_bounds_and_urls_outside_the_namespace(drive, urls):
    pm = DbPropertyManager(drive)
    pm.write_property(urls["f"], "{urn:x}a", b"<a xmlns='urn:x'>1</a>", dry_run=True)
    pm.remove_property(urls["g"], "{urn:x}a", dry_run=True)
    assert pm.get_properties(urls["f"]) == []
    big = b"<a xmlns='urn:x'>" + b"x" * 70000 + b"</a>"
    assert refused(lambda: pm.write_property(urls["f"], "{urn:x}a", big, dry_run=True), HTTP_INSUFFICIENT_STORAGE)
    assert refused(lambda: pm.write_property(urls["f"], "{urn:x}a", big), HTTP_INSUFFICIENT_STORAGE)
    assert pm.get_properties(urls["f"]) == []
    assert pm.get_properties("/.ids") == [] and pm.get_property("/", "{urn:x}a") is None
    assert refused(lambda: pm.write_property("/.shared/x", "{urn:x}a", b"<a/>"), HTTP_FORBIDDEN)
    pm.remove_properties("/.shared/x")
    pm.copy_properties("/.shared/x", urls["f"])
    assert pm.get_properties(urls["f"]) == []


def test_a_listing_asks_only_about_the_nodes_that_have_properties(drive, urls):
    pm = DbPropertyManager(drive)
    ids = urls["ids"]
    pm.write_property(urls["a"], "{urn:x}on-a", b"<x/>")
    pm.write_property(urls["g"], "{urn:x}on-g", b"<g/>")
    pm.write_property(urls["f"], "{urn:x}on-f", b"<f/>")  # below b: not a child of a
    environ: dict = {}
    pm.prefetch_children(environ, ids["a"])
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(statement)
    sa.event.listen(drive.engine, "before_cursor_execute", seen)
    try:
        assert pm.get_properties(urls["b"], environ) == [] and pm.get_property(urls["b"], "{urn:x}on-a", environ) is None
        assert statements == []  # b has none, and the prefetch said so
        assert pm.get_properties(urls["a"], environ) == ["{urn:x}on-a"]
        assert pm.get_property(urls["g"], "{urn:x}on-g", environ) == "<g/>"
        assert pm.get_properties(urls["f"], environ) == ["{urn:x}on-f"]  # not covered: asked
        assert len([q for q in statements if q.lstrip().upper().startswith("SELECT")]) == 3
        pm.write_property(urls["b"], "{urn:x}new", b"<n/>", environ=environ)
        assert PREFETCHED not in environ and pm.get_properties(urls["b"], environ) == ["{urn:x}new"]
    finally:
        sa.event.remove(drive.engine, "before_cursor_execute", seen)
