"""The quota model (storage/quota.py) through the drive, the uploads and the maintenance
helpers, on SQLite and MariaDB; every test ends with the ``drive`` fixture's deep fsck, which
recounts used and pending bytes from the truth."""

from __future__ import annotations

import datetime as dt
import hashlib
import io

import pytest
import sqlalchemy as sa

from storage import clock, maintenance, quota
from storage.errors import Conflict, QuotaExceeded, SessionLimit
from storage.fsck import fsck
from storage.models import Block, UploadPin, UploadSession, User
from storage.uploads import Uploads
from tests.conftest import put_bytes, rand

FLOOR = quota.BLOCK_FLOOR


def _to_noon() -> None:
    t = clock.now()
    clock.advance(((12 - t.hour) % 24) * 3600 - t.minute * 60 - t.second)


def _quota(drive, user, n):
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == user.id).values(quota_bytes=n))


def _acct(drive, user) -> tuple[int, int]:
    a = drive.account(user.id)
    return a.used_bytes, a.pending_bytes


def _refcounts(drive, vid) -> list[int]:
    with drive.sm() as s:
        from storage.models import VersionBlock
        return [r for (r,) in s.execute(sa.select(Block.refcount).join(VersionBlock, VersionBlock.block_id == Block.id)
                                        .where(VersionBlock.version_id == vid))]


def test_version_charge_pays_a_floor_per_block():
    assert quota.version_charge(0, 0) == 0
    assert quota.version_charge(10, 1) == 10
    assert quota.version_charge(1_000_000, 3) == 1_000_000       # normal blocks: their size
    assert quota.version_charge(1000, 1000) == 999 * FLOOR        # one-byte blocks: the floor
    assert quota.version_charge(1000, 1000, floor=1) == 1000
    assert quota.block_charge(1) == FLOOR and quota.block_charge(FLOOR + 1) == FLOOR + 1


T = dt.datetime(2026, 3, 10, 12, 0, 0)


def test_plan_thinning_keeps_a_day_then_hourly_daily_weekly():
    policy = quota.Retention()
    h = dt.timedelta(hours=1)
    versions = [
        (1, T - 10 * h), (2, T - 10 * h + dt.timedelta(minutes=1)),          # within a day: both kept
        (3, T - 30 * h), (4, T - 30 * h + dt.timedelta(minutes=20)),         # same hour on day 2: newest kept
        (5, T - 31 * h),                                                      # another hour: kept
        (6, T - 5 * 24 * h), (7, T - 5 * 24 * h + 2 * h),                     # same day, days 2-30: newest kept
        (8, T - 6 * 24 * h),                                                  # another day: kept
        (9, dt.datetime(2025, 12, 1, 9)), (10, dt.datetime(2025, 12, 3, 9)),  # Mon and Wed of one week: Wed kept
        (11, dt.datetime(2025, 11, 20, 9)),                                   # an older week: kept
        (12, T - 60 * 24 * h),                                                # the current version, old as it is
    ]
    assert quota.plan_thinning(versions, 12, T, policy) == [3, 6, 9]
    # none is ever planned twice over: what a run keeps, the next run at the same time keeps
    kept = [v for v in versions if v[0] not in (3, 6, 9)]
    assert quota.plan_thinning(kept, 12, T, policy) == []
    # a maximum age drops the weekly ones past it, never the current version
    assert quota.plan_thinning(versions, 12, T, quota.Retention(max_age=dt.timedelta(days=60))) == [3, 6, 9, 10, 11]
    assert quota.plan_thinning([(1, T - 400 * 24 * h)], 1, T, quota.Retention(max_age=dt.timedelta(days=1))) == []


def test_overwriting_with_an_empty_file_keeps_the_old_bytes_charged(drive, make_user):
    u = make_user()
    _quota(drive, u, 1_000_000)
    big = rand(600_000, 1)
    f = put_bytes(drive, u, "f", big)
    put_bytes(drive, u, "f", b"")  # the attack: the 600 KB stay as an old version
    assert _acct(drive, u) == (600_000, 0)
    with pytest.raises(QuotaExceeded) as err:
        put_bytes(drive, u, "g", rand(600_000, 2))
    # the refusal names what holds the room
    assert err.value.details["old_versions"] == 600_000 and err.value.details["trash"] == 0
    assert "old versions" in err.value.message
    u_split = drive.usage(u.id)
    assert (u_split.current, u_split.old_versions, u_split.trash, u_split.pending) == (0, 600_000, 0, 0)
    # the owner frees it at once; the current version cannot be purged this way
    with pytest.raises(Conflict):
        drive.purge_version(u.id, f.node.id, drive.get(u.id, f.node.id).version_id)
    assert drive.purge_version(u.id, f.node.id, f.version_id) == 600_000
    assert _refcounts(drive, f.version_id) == []
    put_bytes(drive, u, "g", rand(600_000, 2))
    assert _acct(drive, u) == (600_000, 0)


def test_a_copy_and_a_restored_version_are_charged_whole(drive, make_user):
    u = make_user()
    data = rand(100_000, 3)
    f = put_bytes(drive, u, "f", data)
    drive.copy(u.id, f.node.id, u.root_id, "f2")
    assert _acct(drive, u)[0] == 2 * len(data)  # dedup saves disk, never quota
    put_bytes(drive, u, "f", b"x")
    drive.restore_version(u.id, f.node.id, f.version_id)
    assert _acct(drive, u)[0] == 3 * len(data) + 1


def test_retention_thins_old_versions_and_credits_the_owner(drive, make_user):
    _to_noon()  # so that every version below falls on one calendar day
    u = make_user()
    sizes = []
    node = None
    for i in range(4):  # four versions an hour apart, then two days pass
        r = put_bytes(drive, u, "doc", rand(20_000 + i, 10 + i))
        node, sizes = r.node.id, sizes + [20_000 + i]
        clock.advance(3600)
    clock.advance(2 * 86400)
    assert _acct(drive, u)[0] == sum(sizes)
    policy = quota.Retention(keep_all=dt.timedelta(days=1), hourly=dt.timedelta(days=1),
                             daily=dt.timedelta(days=30))
    dry = maintenance.apply_retention(drive.sm, policy, clock.now(), dry_run=True)
    assert dry["versions_thinned"] == 2 and _acct(drive, u)[0] == sum(sizes)
    stats = maintenance.apply_retention(drive.sm, policy, clock.now())
    # all four were cut within one or two calendar days: the current one plus the newest
    # old one of each day are kept
    assert stats["versions_thinned"] == dry["versions_thinned"] == 2
    vs = drive.versions(u.id, node)
    assert vs[0].current and len(vs) == 2
    assert _acct(drive, u)[0] == sum(v.size for v in vs) == sum(sizes) - stats["version_bytes_freed"]
    assert maintenance.apply_retention(drive.sm, policy, clock.now())["versions_thinned"] == 0


def test_a_file_of_tiny_blocks_pays_the_floor_and_each_block_is_held_pending(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    parts = [bytes([i]) for i in range(50)]
    hashes = [hashlib.sha256(p).hexdigest() for p in parts]
    for h, p in zip(hashes, parts):
        up.put_block(u.id, h, p)
    assert _acct(drive, u) == (0, 50 * FLOOR)
    data = b"".join(parts)
    up.commit_blocks(u.id, u.root_id, "tiny", hashes, len(data), hashlib.sha256(data).hexdigest())
    assert _acct(drive, u) == (49 * FLOOR, 0)


def test_block_puts_past_the_quota_are_refused_before_a_byte_is_stored(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _quota(drive, u, 3 * FLOOR)
    blocks = [rand(100, 40 + i) for i in range(4)]
    for b in blocks[:3]:
        up.put_block(u.id, hashlib.sha256(b).hexdigest(), b)
    with drive.sm() as s:
        n_blocks = s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one()
    with pytest.raises(QuotaExceeded) as err:
        up.put_block(u.id, hashlib.sha256(blocks[3]).hexdigest(), blocks[3])
    assert err.value.details["pending"] == 3 * FLOOR
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one() == n_blocks
    # sending a block again holds nothing more
    up.put_block(u.id, hashlib.sha256(blocks[0]).hexdigest(), blocks[0])
    assert _acct(drive, u) == (0, 3 * FLOOR)


def test_a_block_session_has_an_absolute_lifetime_and_a_cap(drive, make_user):
    u = make_user()
    drive.config["quota"]["block_session_seconds"] = 3 * 3600
    drive.config["quota"]["block_session_max_blocks"] = 5
    up = Uploads(drive)
    sid = f"blocks-{u.id}"
    first = rand(1000, 50)
    up.put_block(u.id, hashlib.sha256(first).hexdigest(), first)
    for i in range(3):  # a block an hour keeps the session busy, but not past its lifetime
        clock.advance(3600 - 1)
        b = rand(1000, 51 + i)
        up.put_block(u.id, hashlib.sha256(b).hexdigest(), b)
    with drive.sm() as s:
        us = s.get(UploadSession, sid)
        assert us.expires_at == us.created_at + dt.timedelta(seconds=3 * 3600)
    assert _acct(drive, u) == (0, 4 * FLOOR)
    clock.advance(10)  # the lifetime is over: the next block starts a new session
    last = rand(1000, 60)
    up.put_block(u.id, hashlib.sha256(last).hexdigest(), last)
    assert up.missing(u.id, [hashlib.sha256(first).hexdigest()]) == [hashlib.sha256(first).hexdigest()]
    assert _acct(drive, u) == (0, FLOOR)
    for i in range(4):
        b = rand(1000, 70 + i)
        up.put_block(u.id, hashlib.sha256(b).hexdigest(), b)
    over = rand(1000, 80)
    with drive.sm() as s:
        n_blocks = s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one()
    with pytest.raises(SessionLimit):
        up.put_block(u.id, hashlib.sha256(over).hexdigest(), over)
    with drive.sm() as s:  # refused before it was stored
        assert s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one() == n_blocks
    with drive.sm() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(UploadPin)
                         .where(UploadPin.session_id == sid)).scalar_one() == 5
    assert _acct(drive, u) == (0, 5 * FLOOR)


def test_tus_reservations_add_up_and_are_released_on_terminate_and_expiry(drive, make_user):
    u = make_user()
    up = Uploads(drive)
    _quota(drive, u, 1_000_000)
    a = up.create(u.id, u.root_id, "a", 600_000)
    with pytest.raises(QuotaExceeded) as err:
        up.create(u.id, u.root_id, "b", 600_000)
    assert err.value.details["pending"] == 600_000
    with pytest.raises(QuotaExceeded):  # a plain PUT cannot take the reserved room either
        put_bytes(drive, u, "c", rand(500_000, 5), size_hint=500_000)
    up.terminate(u.id, a.id)
    assert _acct(drive, u) == (0, 0)
    b = up.create(u.id, u.root_id, "b", 600_000)
    up.append(u.id, b.id, 0, io.BytesIO(rand(1000, 6)), declared=1000)
    clock.advance(drive.config["server"]["upload_expire_seconds"] + 1)
    assert maintenance.expire_upload_sessions(drive.sm, clock.now())["sessions_expired"] == 1
    assert _acct(drive, u) == (0, 0)
    c = up.create(u.id, u.root_id, "c", 400_000)
    clock.advance(drive.config["server"]["upload_expire_seconds"] + 1)
    assert up.expire() == 1
    assert _acct(drive, u) == (0, 0)
    with drive.sm() as s:
        assert s.get(UploadSession, c.id).reserved_bytes == 0


def test_an_editors_upload_charges_the_owner_and_the_reservation_is_the_editors(drive, make_user):
    from storage.sharing import Sharing
    owner, editor = make_user(), make_user()
    folder = drive.mkdir(owner.id, owner.root_id, "shared")
    Sharing(drive).grant(owner.id, folder.id, editor.email, "editor")
    up = Uploads(drive)
    data = rand(50_000, 7)
    s = up.create(editor.id, folder.id, "e.bin", len(data))
    assert _acct(drive, editor) == (0, len(data)) and _acct(drive, owner) == (0, 0)
    up.append(editor.id, s.id, 0, io.BytesIO(data), declared=len(data))
    assert _acct(drive, editor) == (0, 0) and _acct(drive, owner) == (len(data), 0)
    put_bytes(drive, editor, "p.bin", data[:1000], parent=folder.id)
    assert _acct(drive, owner) == (len(data) + 1000, 0)
    # the owner cleans up: delete, then purge from the trash
    drive.delete(owner.id, folder.id)
    assert drive.usage(owner.id).trash == len(data) + 1000
    assert drive.empty_trash(owner.id) == (1, 2)
    assert _acct(drive, owner) == (0, 0)


def test_purging_a_trash_entry_frees_every_version_it_kept(drive, make_user):
    u = make_user()
    f = put_bytes(drive, u, "f", rand(10_000, 8))
    put_bytes(drive, u, "f", rand(20_000, 9))
    drive.delete(u.id, f.node.id)
    assert drive.usage(u.id).trash == 30_000 and _acct(drive, u)[0] == 30_000
    assert drive.purge(u.id, f.node.id) == 2
    assert _acct(drive, u) == (0, 0)
    assert _refcounts(drive, f.version_id) == []


def test_fsck_and_repair_usage_recount_used_and_pending(drive, make_user):
    u = make_user()
    put_bytes(drive, u, "f", rand(10_000, 11))
    put_bytes(drive, u, "f", rand(10_000, 12))
    Uploads(drive).create(u.id, u.root_id, "g", 5_000)
    with drive.sm() as s, s.begin():
        s.execute(sa.update(User).where(User.id == u.id).values(used_bytes=10_000, pending_bytes=0))
    kinds = [p.kind for p in fsck(drive).problems]
    assert kinds == ["usage", "usage"]
    repairs = maintenance.repair_usage(drive.sm, [u.id])
    assert [(r.kind, r.old, r.new) for r in repairs] == [("usage", 10_000, 20_000), ("pending", 0, 5_000)]
    assert fsck(drive).ok and maintenance.repair_usage(drive.sm, [u.id]) == []


def test_the_migration_backfills_block_counts_and_recounts_used_bytes(tmp_path):
    from alembic import command

    from storage.db import _alembic_config, make_engine
    engine = make_engine(f"sqlite:///{tmp_path / 'm.db'}")

    def upgrade(rev):
        with engine.begin() as conn:
            cfg = _alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, rev)
    upgrade("0004")
    with engine.begin() as c:
        c.exec_driver_sql("INSERT INTO users (id, email, password_hash, plan, quota_bytes, used_bytes, is_admin, "
                          "created_at) VALUES (1, 'a@x.io', 'h', 'free', 100, 5, 0, '2026-01-01')")
        c.exec_driver_sql("INSERT INTO nodes (id, owner_id, kind, name, created_at, updated_at, current_version_id) "
                          "VALUES (1, 1, 'file', 'f', '2026-01-01', '2026-01-01', 2)")
        for vid, size in ((1, 7), (2, 5)):
            c.exec_driver_sql(f"INSERT INTO file_versions (id, node_id, size, sha256, created_at) "
                              f"VALUES ({vid}, 1, {size}, x'{'00' * 32}', '2026-01-01')")
        for seq in range(3):  # version 1: three 2-3 byte blocks
            c.exec_driver_sql(f"INSERT INTO version_blocks (version_id, seq, block_id, offset) "
                              f"VALUES (1, {seq}, x'{'%02x' % seq * 32}', {seq})")
    upgrade("0008")
    with engine.connect() as c:
        assert c.exec_driver_sql("SELECT id, nblocks FROM file_versions ORDER BY id").all() == [(1, 3), (2, 0)]
        assert c.exec_driver_sql("SELECT used_bytes, pending_bytes FROM users").one() == (2 * FLOOR + 5, 0)
