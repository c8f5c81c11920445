"""gc: purge, expire, mark, sweep; and the never-lose-data races with their negative controls."""

from __future__ import annotations

import hashlib
import threading

import pytest
import sqlalchemy as sa

from storage import clock
from storage.errors import RetryLater
from storage.maintenance import Safety
from storage.models import Block, UploadPin, UploadSession
from tests.conftest import put_bytes, rand, read_all


def blocks_of(drive, version_id=None):
    with drive.sm() as s:
        return {r.id: r for r in s.execute(sa.select(Block)).scalars()}


def test_gc_marks_then_sweeps_after_grace(drive, make_user, run):
    u = make_user()
    keep = put_bytes(drive, u, "keep.bin", rand(300_000, 1))
    gone = put_bytes(drive, u, "gone.bin", rand(300_000, 2))
    drive.delete(u.id, gone.node.id)
    drive.purge(u.id, gone.node.id)
    before = blocks_of(drive)
    dead = {bid for bid, b in before.items() if b.refcount == 0}
    assert dead
    r1 = run("gc")
    assert r1.stats["marked"] == len(dead) and r1.stats["swept"] == 0
    clock.advance(3601)
    r2 = run("gc")
    assert r2.stats["swept"] == len(dead)
    assert set(blocks_of(drive)) == set(before) - dead
    assert read_all(drive, u, keep.node.id) == rand(300_000, 1)


def test_gc_dry_run_changes_nothing(drive, make_user, run):
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(200_000, 3))
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)
    r = run("gc", dry_run=True)
    assert r.stats["plan_mark"]["blocks"] > 0 and r.stats["plan_mark"]["bytes"] > 0
    assert all(b.gc_marked_at is None for b in blocks_of(drive).values())


def test_gc_purges_expired_trash(drive, make_user, run):
    u = make_user()
    f = put_bytes(drive, u, "old.bin", rand(100_000, 4))
    drive.delete(u.id, f.node.id)
    clock.advance(31 * 86400)
    r = run("gc")
    assert r.stats["trash_purged"] == 1 and drive.list_trash(u.id) == []
    assert r.stats["marked"] > 0


def test_gc_fails_closed_when_the_live_set_cannot_be_built(drive, make_user, run, monkeypatch):
    import jobs.gc as gc
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(100_000, 5))
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)

    def broken(*a, **k):
        raise OSError("metadata read failed halfway")
    monkeypatch.setattr(gc, "live_set", broken)
    with pytest.raises(gc.LiveSetError):
        run("gc", grace=0)
    assert all(b.gc_marked_at is None for b in blocks_of(drive).values())
    from storage.jobruns import history
    assert history(drive.sm, 1)[0]["status"] == "failed"


# ---- pins -------------------------------------------------------------------------------------

def _pinned_block(drive, u):
    """A block with no refs, pinned by an active upload session (as storage/uploads.py does)."""
    f = put_bytes(drive, u, "p.bin", rand(50_000, 6))
    with drive.sm() as s, s.begin():
        bids = [b for (b,) in s.execute(sa.text("SELECT block_id FROM version_blocks WHERE version_id = :v"),
                                        {"v": f.version_id})]
        s.add(UploadSession(id="s1", user_id=u.id, parent_id=u.root_id, name="x", length=1,
                            expires_at=clock.now() + __import__("datetime").timedelta(days=1)))
        s.flush()
        for b in set(bids):
            s.add(UploadPin(session_id="s1", block_id=b))
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)
    return set(bids)


@pytest.mark.parametrize("honour_pins", [True, False], ids=["pins", "negative-control-no-pins"])
def test_pinned_blocks_survive_gc(drive, make_user, run, honour_pins):
    u = make_user()
    pinned = _pinned_block(drive, u)
    safety = Safety(honour_pins=honour_pins)
    run("gc", grace=0, safety=safety)
    clock.advance(5)
    run("gc", grace=0, safety=safety)
    survived = pinned <= set(blocks_of(drive))
    assert survived is honour_pins
    with drive.sm() as s, s.begin():  # let the after-test fsck see a consistent store
        s.execute(sa.delete(UploadPin))


def test_expired_session_releases_its_pins(drive, make_user, run):
    u = make_user()
    pinned = _pinned_block(drive, u)
    clock.advance(2 * 86400)
    r = run("gc", grace=0)
    assert r.stats["sessions_expired"] == 1 and r.stats["pins_released"] == len(pinned)
    clock.advance(5)
    run("gc", grace=0)
    assert not (pinned & set(blocks_of(drive)))


# ---- the in-flight upload against gc + compact with zero grace -------------------------------

def _paused_upload(drive, u, name, data):
    """Start a PUT that stops after its pack is durable, before its commit."""
    paused, resume, out = threading.Event(), threading.Event(), {}

    def hook():
        paused.set()
        assert resume.wait(60)
    drive.hooks["put:before_commit"] = hook

    def go():
        try:
            out["result"] = put_bytes(drive, u, name, data)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            out["error"] = exc
    t = threading.Thread(target=go)
    t.start()
    assert paused.wait(60)
    drive.hooks.pop("put:before_commit")
    return t, resume, out


@pytest.mark.parametrize("protect", [True, False], ids=["protected", "negative-control-no-inflight-protection"])
def test_inflight_upload_survives_gc_and_compact(drive, make_user, run, protect):
    u = make_user()
    old = rand(400_000, 10)
    shared = put_bytes(drive, u, "old.bin", old)
    # The new file starts with the old one's blocks (dedup hits on blocks about to die)
    # and continues with new data (a new pack written before the pause).
    data = old + rand(300_000, 11)
    drive.delete(u.id, shared.node.id)
    drive.purge(u.id, shared.node.id)
    for i in range(3):  # small packs for compact to merge
        put_bytes(drive, u, f"small{i}.bin", rand(60_000, 20 + i))
    t, resume, out = _paused_upload(drive, u, "new.bin", data)
    safety = Safety(honour_inflight=protect)
    for _ in range(2):
        run("gc", grace=0, safety=safety)
        run("compact", grace=0)
        clock.advance(5)
    resume.set()
    t.join(60)
    if protect:
        assert "error" not in out, out.get("error")
        assert hashlib.sha256(read_all(drive, u, out["result"].node.id)).digest() == hashlib.sha256(data).digest()
    else:
        # Without the protection the upload's pack and dedup hits were reclaimed: the
        # commit must fail (never commit a version over missing bytes).
        assert isinstance(out.get("error"), RetryLater)


@pytest.mark.parametrize("grace", [3600, 0], ids=["grace", "negative-control-no-grace"])
def test_dedup_hit_racing_a_sweep(drive, make_user, run, grace, monkeypatch):
    """An upload finds the caller's own blocks as known; then the caller's file holding them
    is purged and GC marks and sweeps them before the upload commits. With the protections
    the blocks survive and the file reads back."""
    u = make_user()
    data = rand(200_000, 30)
    f = put_bytes(drive, u, "a.bin", data)
    dead = set(blocks_of(drive))
    # Pause the copy right after the known-block lookup whose hits it will reference: the
    # second, made once its open pack row exists (BlockWriter.protect_hits).
    store = drive.blocks
    found, go_on = threading.Event(), threading.Event()
    real = store.index.known_blocks
    hits = []

    def known(ids):
        got = real(ids)
        if got:
            hits.append(len(got))
            if len(hits) == 2:
                found.set()
                assert go_on.wait(60)
        return got
    monkeypatch.setattr(store.index, "known_blocks", known)
    out = {}

    def upload():
        try:
            out["r"] = put_bytes(drive, u, "b.bin", data)
        except BaseException as exc:  # noqa: BLE001
            out["error"] = exc
    th = threading.Thread(target=upload)
    th.start()
    assert found.wait(60)
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)  # the hits are dead blocks now
    assert {b.refcount for b in blocks_of(drive).values()} == {0}
    # The in-flight protection is off here, so only the grace period protects the hit.
    safety = Safety(honour_inflight=False) if grace == 0 else Safety()
    run("gc", grace=grace, safety=safety)
    clock.advance(10)
    run("gc", grace=grace, safety=safety)
    go_on.set()
    th.join(60)
    if grace:
        assert "error" not in out
        assert dead <= set(blocks_of(drive))
        assert read_all(drive, u, out["r"].node.id) == data
    else:
        assert isinstance(out.get("error"), RetryLater)  # the loss is detected, never committed


def test_dedup_hit_protected_by_inflight_upload_even_with_zero_grace(drive, make_user, run, monkeypatch):
    """The caller's file is purged while an upload of its content again holds the blocks as
    dedup hits: the upload's open pack keeps GC from sweeping them, whatever the grace."""
    u = make_user()
    data = rand(200_000, 31)
    f = put_bytes(drive, u, "a.bin", data)
    store = drive.blocks
    found, go_on = threading.Event(), threading.Event()
    real = store.index.known_blocks
    hits = []

    def known(ids):  # paused on the lookup made once the upload's open row exists
        got = real(ids)
        if got:
            hits.append(len(got))
            if len(hits) == 2:
                found.set()
                assert go_on.wait(60)
        return got
    monkeypatch.setattr(store.index, "known_blocks", known)
    out = {}
    th = threading.Thread(target=lambda: out.setdefault("r", put_bytes(drive, u, "b.bin", data)))
    clock.advance(2)
    th.start()
    assert found.wait(60)
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)
    assert {b.refcount for b in blocks_of(drive).values()} == {0}
    clock.advance(2)
    run("gc", grace=0)
    clock.advance(10)
    r = run("gc", grace=0)
    assert r.stats["swept"] == 0
    go_on.set()
    th.join(60)
    assert read_all(drive, u, out["r"].node.id) == data


def test_gc_removes_a_deleted_account_after_its_trash_is_purged(drive, make_user, run):
    from storage.errors import NotFound
    from storage.useradmin import UserAdmin
    ua = UserAdmin(drive)
    leaving, staying = make_user(), make_user()
    put_bytes(drive, leaving, "mine.bin", rand(150_000, 5))
    kept = put_bytes(drive, staying, "kept.bin", rand(150_000, 6))
    ua.delete(leaving.id)
    r = run("gc", dry_run=True)
    assert r.stats["deleted_users_waiting"] == 1 and len(drive.list_trash(leaving.id)) == 1
    r = run("gc")  # within the trash retention: kept
    assert r.stats["deleted_users_waiting"] == 1 and r.stats["marked"] == 0
    clock.advance(31 * 86400)
    r = run("gc")
    assert r.stats["trash_purged"] == 1 and r.stats["deleted_users_removed"] == 1 and r.stats["marked"] > 0
    with pytest.raises(NotFound):
        drive.user_by_email(leaving.email)
    assert read_all(drive, staying, kept.node.id) == rand(150_000, 6)
