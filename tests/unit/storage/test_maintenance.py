"""storage/maintenance.py: the guarded statements the jobs' load steps go through."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from storage import clock
from storage import maintenance as m
from storage.models import Block, Pack, VersionBlock
from tests.conftest import put_bytes, rand, read_all


def _dead_blocks(drive, u, seed=1):
    f = put_bytes(drive, u, f"d{seed}.bin", rand(100_000, seed))
    drive.delete(u.id, f.node.id)
    drive.purge(u.id, f.node.id)
    with drive.sm() as s:
        return [r[0] for r in s.execute(sa.select(Block.id).where(Block.refcount == 0))]


def test_leases(drive):
    assert m.acquire_lease(drive.sm, "x", "a", 60)
    assert not m.acquire_lease(drive.sm, "x", "b", 60)
    assert m.lease_holder(drive.sm, "x") == "a"
    clock.advance(61)
    assert m.acquire_lease(drive.sm, "x", "b", 60)
    m.release_lease(drive.sm, "x", "a")  # not a's any more: no effect
    assert m.lease_holder(drive.sm, "x") == "b"
    m.release_lease(drive.sm, "x", "b")
    assert m.lease_holder(drive.sm, "x") is None


def test_sweep_is_guarded_by_refcount_refs_and_cutoff(drive, make_user):
    u = make_user()
    dead = _dead_blocks(drive, u)
    t = clock.now()
    assert m.mark_blocks(drive.sm, dead, t) == len(dead)
    assert m.mark_blocks(drive.sm, dead, t) == 0  # already marked
    # Sweeping with a cutoff at the mark time removes nothing (strictly before).
    assert m.sweep_blocks(drive.sm, dead, t).blocks == 0
    # A block revived after the plan (a ref taken: refcount up, mark cleared) survives.
    revived = dead[0]
    with drive.sm() as s, s.begin():
        s.execute(sa.update(Block).where(Block.id == revived).values(refcount=1, gc_marked_at=None))
    res = m.sweep_blocks(drive.sm, dead, t + dt.timedelta(seconds=1))
    assert res.blocks == len(dead) - 1 and res.bytes > 0
    with drive.sm() as s, s.begin():
        assert s.execute(sa.select(Block.id)).scalars().all() == [revived]
        s.execute(sa.update(Block).where(Block.id == revived).values(refcount=0))


def test_a_block_with_a_ref_is_never_swept_even_if_its_refcount_drifted_to_zero(drive, make_user):
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(100_000, 3))
    with drive.sm() as s, s.begin():
        ids = [r[0] for r in s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == f.version_id))]
        s.execute(sa.update(Block).values(refcount=0, gc_marked_at=clock.now() - dt.timedelta(days=9)))
    assert m.mark_blocks(drive.sm, ids, clock.now()) == 0
    assert m.sweep_blocks(drive.sm, ids, clock.now()).blocks == 0
    assert len(m.repair_refcounts(drive.sm, ids)) == len(set(ids))
    assert read_all(drive, u, f.node.id) == rand(100_000, 3)


def test_sweep_cutoff_stops_at_the_oldest_upload_in_flight(drive):
    t = clock.now()
    assert m.sweep_cutoff(drive.sm, t, 60, 3600) == t - dt.timedelta(seconds=60)
    m.register_pack(drive.sm, "a" * 32, drive.blocks.hot.url_for(drive.blocks.pack_key("a" * 32)))
    started = clock.now()
    clock.advance(600)
    t = clock.now()
    assert m.sweep_cutoff(drive.sm, t, 60, 3600) == started
    assert m.sweep_cutoff(drive.sm, t, 60, 3600, m.Safety(honour_inflight=False)) == t - dt.timedelta(seconds=60)
    assert m.sweep_cutoff(drive.sm, t, 60, 300) == t - dt.timedelta(seconds=60)  # that upload is taken for dead
    assert m.abandon_open_packs(drive.sm, drive.blocks.packs, t - dt.timedelta(seconds=300)) == ["a" * 32]
    with drive.sm() as s:
        assert s.get(Pack, "a" * 32).state == "deleted"  # no file was ever written


def test_a_pack_is_deleted_only_after_it_left_the_index_and_the_grace_period(drive, make_user):
    u = make_user()
    dead = _dead_blocks(drive, u, 4)
    drive.blocks.close()  # small uploads share an open pack: seal it
    with drive.sm() as s:
        (p,) = s.execute(sa.select(Pack).where(Pack.state == "sealed")).scalars().all()
    backend, key = drive.blocks.backend_for(p.url)
    assert m.retire_packs(drive.sm, [p.id]) == 0  # blocks still point to it
    m.mark_blocks(drive.sm, dead, clock.now())
    clock.advance(10)
    assert m.sweep_blocks(drive.sm, dead, clock.now()).blocks == len(dead)
    assert m.retire_packs(drive.sm, [p.id]) == 1
    assert m.delete_retired_packs(drive.sm, drive.blocks.packs, clock.now() - dt.timedelta(seconds=60))["packs_deleted"] == 0
    assert backend.exists(key)
    clock.advance(61)
    assert m.delete_retired_packs(drive.sm, drive.blocks.packs, clock.now() - dt.timedelta(seconds=60))["packs_deleted"] == 1
    assert not backend.exists(key)
    with drive.sm() as s:
        assert s.get(Pack, p.id).state == "deleted"


def test_commit_refuses_a_pack_gc_gave_up_on(drive, make_user):
    """An upload slower than the open-pack grace: GC retires its pack; the commit must fail
    rather than seal a pack whose file is about to be deleted."""
    import pytest
    from storage.errors import RetryLater
    u = make_user()

    def give_up():
        clock.advance(10)
        m.abandon_open_packs(drive.sm, drive.blocks.packs, clock.now())
    drive.hooks["put:before_commit"] = give_up
    with pytest.raises(RetryLater):
        put_bytes(drive, u, "slow.bin", rand(100_000, 9))
    drive.hooks.pop("put:before_commit")
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Block)).scalar() == 0


def test_read_tracker_batches_last_read_times(drive, make_user):
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(100_000, 5))
    drive.blocks.close()  # small uploads share an open pack: seal it
    tracker = drive.blocks.read_tracker
    statements = []
    sa.event.listen(drive.engine, "before_cursor_execute",
                    lambda c, cur, stmt, *a: statements.append(stmt) if stmt.startswith("UPDATE packs") else None)
    for _ in range(5):
        read_all(drive, u, f.node.id)
    assert statements == []  # no write per read
    assert tracker.flush() == 1 and len(statements) == 1
    with drive.sm() as s:
        assert s.execute(sa.select(Pack.last_read_at).where(Pack.state == "sealed")).scalar() is not None
