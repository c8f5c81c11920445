"""Each job end to end on a real (SQLite + file://) drive, in one shared SparkSession."""

from __future__ import annotations

import hashlib

import pytest
import sqlalchemy as sa

from storage import clock
from storage.chunking import make_chunker
from storage.models import Block, Pack, User, VersionBlock
from tests.conftest import put_bytes, rand, read_all


def packs(drive, *states):
    with drive.sm() as s:
        q = sa.select(Pack)
        if states:
            q = q.where(Pack.state.in_(states))
        return s.execute(q).scalars().all()


def physical_bytes(drive) -> int:
    return sum(p.size for p in packs(drive, "sealed", "retiring"))


def live_bytes(drive) -> int:
    with drive.sm() as s:
        return int(s.execute(sa.select(sa.func.sum(Block.stored_size + 48))).scalar() or 0)


def test_reconcile_repairs_drift_and_a_second_run_changes_nothing(drive, make_user, run):
    u = make_user()
    f = put_bytes(drive, u, "a.bin", rand(300_000, 1))
    put_bytes(drive, u, "b.bin", rand(300_000, 2))
    with drive.sm() as s, s.begin():
        ids = [r[0] for r in s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == f.version_id))]
        s.execute(sa.update(Block).where(Block.id == ids[0]).values(refcount=Block.refcount + 3))  # leak
        s.execute(sa.update(Block).where(Block.id == ids[1]).values(refcount=0))                  # would lose data
        s.execute(sa.update(User).where(User.id == u.id).values(used_bytes=1))
    dry = run("reconcile", dry_run=True)
    assert dry.stats["refcount_drift"] == 2 and dry.stats["usage_drift"] == 1
    r1 = run("reconcile")
    assert r1.stats["repaired"] == 3 and r1.stats["increases"] == 1 and r1.stats["decreases"] == 1
    kinds = sorted((x["kind"], x["old"], x["new"]) for x in r1.stats["repairs"])
    assert kinds == [("refcount", 0, 1), ("refcount", 4, 1), ("usage", 1, 600_000)]
    r2 = run("reconcile")
    assert r2.stats["refcount_drift"] == 0 and r2.stats["usage_drift"] == 0 and r2.stats["repaired"] == 0


def test_compact_merges_small_packs_and_retires_them_after_grace(drive, make_user, run):
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 10 + i) for i in range(6)}
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    assert len(packs(drive, "sealed")) == 6
    plan = run("compact", dry_run=True)
    assert plan.stats["packs_to_rewrite"] == 6 and plan.stats["new_packs"] == 1
    assert len(packs(drive, "sealed")) == 6  # the dry run changed nothing
    old_bytes = sum(p.size for p in packs(drive, "sealed"))
    r = run("compact")
    assert r.stats["blocks_moved"] > 0 and r.stats["packs_retired"] == 6
    # the merge frees only the five packs' headers and footers: copied far past freed, as reported
    new_bytes = sum(p.size for p in packs(drive, "sealed"))
    assert (r.stats["bytes_copied"], r.stats["bytes_freed"]) == (new_bytes, old_bytes - new_bytes)
    assert 0 < r.stats["bytes_freed"] < r.stats["bytes_copied"]
    assert r.stats["amplification"] == round(new_bytes / (old_bytes - new_bytes), 3)
    assert len(packs(drive, "sealed")) == 1 and len(packs(drive, "retiring")) == 6
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d
    run("compact")  # inside the grace period: the old files stay for in-flight readers
    assert len(packs(drive, "retiring")) == 6
    clock.advance(3601)
    r = run("compact")
    assert r.stats["packs_deleted"] == 6 and len(packs(drive, "retiring")) == 0
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d


def test_compact_max_bytes_spreads_the_copying_over_runs(drive, make_user, spark):
    """With compact_max_bytes under one new pack's worth, each run writes one new pack and
    leaves the rest, saying so; later runs finish the work, and every file reads back."""
    from jobs.runner import run_job
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 30 + i) for i in range(8)}  # 8 packs, bins of two
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    cfg = type(drive.config)({**drive.config, "jobs": {**drive.config["jobs"], "target_pack_bytes": 100_000,
                                                        "fill_threshold": 0.9, "compact_max_bytes": 1}})
    written, deferred = [], []
    for _ in range(8):
        r = run_job("compact", drive, spark, cfg)
        if not r.stats["new_packs"]:
            break
        written.append(r.stats["new_packs"])
        deferred.append(r.stats["packs_deferred"])
        for n, d in files.items():
            assert read_all(drive, u, nodes[n]) == d
    assert written == [1] * len(written) and len(written) >= 3, (written, deferred)
    assert deferred[0] > 0 and deferred[-1] == 0 and deferred == sorted(set(deferred), reverse=True), deferred
    whole = run_job("compact", drive, spark, cfg, dry_run=True)
    assert whole.stats["packs_deferred"] == 0 and whole.stats["new_packs"] == 0


def test_scenario_jobs_bring_physical_bytes_down_to_live_bytes(drive, make_user, run):
    """Uploads, edits, deletes and purges; then gc + compact bring physical bytes to the live
    bytes (within the pack fill threshold), and every live file reads back."""
    u = make_user()
    live = {}
    for i in range(8):
        data = rand(120_000, 100 + i)
        live[put_bytes(drive, u, f"f{i}.bin", data).node.id] = data
    ids = list(live)
    for nid in ids[:3]:  # edits: new versions; the old ones stay (versions are kept)
        data = rand(120_000, 200 + nid)
        info = drive.get(u.id, nid)
        put_bytes(drive, u, info.name, data)
        live[nid] = data
    for nid in ids[3:6]:  # deletes, then purges
        drive.delete(u.id, nid)
        drive.purge(u.id, nid)
        live.pop(nid)
    before = physical_bytes(drive)
    for _ in range(2):
        run("gc", grace=0)
        clock.advance(5)
    run("compact", grace=0)
    clock.advance(5)
    run("compact", grace=0)
    after, lb = physical_bytes(drive), live_bytes(drive)
    assert after < before
    target = drive.config["jobs"]["target_pack_bytes"]
    # Left over: pack headers/footers, and at most one partly filled pack.
    assert after - lb <= drive.config["jobs"]["fill_threshold"] * target + 64 * 1024, (before, after, lb)
    for nid, data in live.items():
        assert read_all(drive, u, nid) == data


def test_dedup_scan_merges_identical_files_stored_as_different_blocks(drive, make_user, run):
    u = make_user()
    data = rand(300_000, 7)
    a = put_bytes(drive, u, "a.bin", data)
    drive.blocks.chunker = make_chunker({**drive.config["storage"], "chunker": "fixed"})
    b = put_bytes(drive, u, "b.bin", data)
    with drive.sm() as s:
        blocks_a = {r[0] for r in s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == a.version_id))}
        blocks_b = {r[0] for r in s.execute(sa.select(VersionBlock.block_id).where(VersionBlock.version_id == b.version_id))}
    assert blocks_a and not (blocks_a & blocks_b)
    r = run("dedup_scan")
    assert r.stats["duplicate_versions"] == 1 and r.stats["versions_merged"] == 1
    assert r.stats["bytes_saved_by_merge"] > 250_000
    run("gc", grace=0)
    clock.advance(5)
    run("gc", grace=0)
    with drive.sm() as s:
        left = {r[0] for r in s.execute(sa.select(Block.id))}
    assert blocks_a <= left and not (blocks_b & left)
    assert read_all(drive, u, b.node.id) == data and read_all(drive, u, a.node.id) == data
    assert run("dedup_scan").stats["duplicate_versions"] == 0


def _records_on_disk(drive) -> dict[bytes, int]:
    """How many records of each block the pack files on the backend hold."""
    from collections import Counter
    from jobs.executor import read_records
    backend = drive.blocks.hot
    n = Counter()
    for key, _ in backend.list("packs"):
        if key.endswith(".pack"):
            recs, _, _ = read_records(drive.blocks, backend.url_for(key))
            n.update(r["block_id"] for r in recs)
    return dict(n)


def test_dedup_scan_merges_copies_of_a_block_left_by_a_lost_insert_race(drive, make_user, run):
    """Two uploads store the same blocks at once; the one that commits second keeps dead
    copies in its pack. dedup_scan points the blocks at the copies in the fuller pack, so the
    other pack retires whole; after the grace period one copy of each block is left on disk,
    every file reads back and deep fsck is clean."""
    from storage.fsck import fsck
    u = make_user()
    drive.blocks.chunker = make_chunker({**drive.config["storage"], "chunker": "fixed"})
    c = drive.config["storage"]["chunk_avg"]
    x, z = rand(2 * c, 60), rand(3 * c, 61)

    def race():  # runs once, after a.bin's blocks are in its pack and before it commits
        drive.hooks.pop("put:before_commit")
        put_bytes(drive, u, "b.bin", x)
    drive.hooks["put:before_commit"] = race
    a = put_bytes(drive, u, "a.bin", x + z)
    with drive.sm() as s:
        pack_of = dict(s.execute(sa.select(VersionBlock.block_id, Block.pack_id)
                                 .join(Block, Block.id == VersionBlock.block_id)
                                 .where(VersionBlock.version_id == a.version_id)).all())
    assert len(set(pack_of.values())) == 2  # x's blocks live in b's pack, z's in a's
    on_disk = _records_on_disk(drive)
    assert sorted(on_disk.values()) == [1, 1, 1, 2, 2]  # x's two blocks are stored twice

    dry = run("dedup_scan", dry_run=True)
    assert dry.stats["extra_block_copies"] == 2 and dry.stats["blocks_to_repoint"] == 2
    assert dry.stats["packs_emptied_by_repoint"] == 1 and dry.stats["bytes_saved_by_repoint"] > 2 * c
    with drive.sm() as s:  # the dry run moved nothing
        assert dict(s.execute(sa.select(Block.id, Block.pack_id).where(Block.id.in_(list(pack_of)))).all()) == pack_of

    r = run("dedup_scan")
    assert r.stats["blocks_repointed"] == 2 and r.stats["packs_retired"] == 1 and not r.stats["bad_copies"]
    with drive.sm() as s:
        now_in = dict(s.execute(sa.select(Block.id, Block.pack_id).where(Block.id.in_(list(pack_of)))).all())
        retiring = s.execute(sa.select(Pack.id).where(Pack.state == "retiring")).scalars().all()
    assert len(set(now_in.values())) == 1 and len(retiring) == 1 and retiring[0] not in now_in.values()
    assert read_all(drive, u, a.node.id) == x + z
    assert fsck(drive, deep=True).ok
    assert run("dedup_scan").stats["blocks_to_repoint"] == 0  # merged: nothing left to do

    clock.advance(3601)
    run("compact")  # past the grace period: the emptied pack's file goes
    assert sorted(_records_on_disk(drive).values()) == [1] * 5
    assert read_all(drive, u, a.node.id) == x + z
    for nid in [n for n in _file_nodes(drive, u) if n != a.node.id]:
        assert read_all(drive, u, nid) == x
    assert fsck(drive, deep=True).ok


def test_compact_reclaims_the_copy_an_upload_of_another_users_content_wrote(drive, make_user, run):
    """B's PUT of content A stores writes its own copy of every block (so its latency tells B
    nothing); the copy is dead from the start and compact reclaims it after the grace period."""
    from storage.fsck import fsck
    a, b = make_user(), make_user()
    data = rand(300_000, 62)
    ra = put_bytes(drive, a, "a.bin", data)
    rb = put_bytes(drive, b, "b.bin", data)
    assert set(_records_on_disk(drive).values()) == {2}
    with drive.sm() as s:
        n_blocks = s.execute(sa.select(sa.func.count()).select_from(Block)).scalar_one()
    assert len(_records_on_disk(drive)) == n_blocks
    run("compact")
    clock.advance(3601)
    run("compact")
    assert set(_records_on_disk(drive).values()) == {1}
    assert read_all(drive, a, ra.node.id) == data and read_all(drive, b, rb.node.id) == data
    assert fsck(drive, deep=True).ok


def _file_nodes(drive, u) -> list[int]:
    from storage.models import Node
    with drive.sm() as s:
        return s.execute(sa.select(Node.id).where(Node.owner_id == u.id, Node.kind == "file")).scalars().all()


@pytest.fixture
def cold_config(tmp_path):
    from tests.unit.jobs.conftest import jobs_config
    cfg = jobs_config(tmp_path)
    cfg["storage"]["cold_url"] = (tmp_path / "cold").as_uri()
    return cfg


def test_tier_moves_cold_packs_and_reads_still_work(cold_config, db_engine, spark):
    from jobs.runner import run_job
    from storage.drive import Drive
    from storage.fsck import fsck
    clock.reset()
    drive = Drive(cold_config, engine=db_engine)
    u, _ = drive.create_user("t@example.com", "password123")
    hot_read = put_bytes(drive, u, "read.bin", rand(100_000, 1))
    idle = put_bytes(drive, u, "idle.bin", rand(100_000, 2))
    clock.advance(20 * 86400)
    read_all(drive, u, hot_read.node.id)
    drive.blocks.read_tracker.flush()
    clock.advance(15 * 86400)
    cfg0 = type(cold_config)({**cold_config, "gc": {"grace_seconds": 0}})
    plan = run_job("tier", drive, spark, cfg0, dry_run=True)
    assert plan.stats["packs_to_tier"] == 1
    r = run_job("tier", drive, spark, cfg0)
    assert r.stats["packs_tiered"] == 1
    cold_prefix = cold_config.cold_url
    with drive.sm() as s:
        urls = dict(s.execute(sa.select(Pack.state, Pack.url).where(Pack.url.startswith(cold_prefix))).all())
    assert list(urls) == ["sealed"]
    assert read_all(drive, u, idle.node.id) == rand(100_000, 2)
    clock.advance(5)
    r = run_job("tier", drive, spark, cfg0)
    assert r.stats["packs_deleted"] == 1  # the hot copy, after the grace period
    assert read_all(drive, u, idle.node.id) == rand(100_000, 2)
    assert fsck(drive, deep=True).ok
    clock.reset()


def test_scrub_finds_corruption_and_repairs_from_another_copy(drive, make_user, run):
    u = make_user()
    data = rand(200_000, 5)
    f = put_bytes(drive, u, "a.bin", data)
    (p,) = packs(drive, "sealed")
    backend, key = drive.blocks.backend_for(p.url)
    good = backend.read(key)
    # Another copy of the same pack (as tiering leaves one while the old copy retires).
    copy_id = "c" * 32
    backend.put(drive.blocks.pack_key(copy_id), good)
    with drive.sm() as s, s.begin():
        s.add(Pack(id=copy_id, url=drive.blocks.hot.url_for(drive.blocks.pack_key(copy_id)), tier="local",
                   state="retiring", size=len(good), created_at=clock.now(), retired_at=clock.now()))
    with drive.sm() as s:
        off, stored = s.execute(sa.select(Block.offset_in_pack, Block.stored_size).where(Block.pack_id == p.id).limit(1)).one()
    bad = bytearray(good)
    bad[off + 48 + stored // 2] ^= 0xFF
    backend.put(key, bytes(bad))
    r = run("scrub")
    assert r.stats["bad_records"] == 1 and r.stats["live_blocks_damaged"] == 1 and r.stats["blocks_repaired"] == 1
    assert read_all(drive, u, f.node.id) == data
    assert {x.id for x in packs(drive, "retiring")} >= {p.id}  # the damaged pack left the index
    assert run("scrub").stats["live_blocks_damaged"] == 0


def test_scrub_without_another_copy_reports_and_changes_nothing(drive, make_user, run):
    u = make_user()
    put_bytes(drive, u, "a.bin", rand(100_000, 6))
    (p,) = packs(drive, "sealed")
    backend, key = drive.blocks.backend_for(p.url)
    data = bytearray(backend.read(key))
    data[100] ^= 0xFF
    backend.put(key, bytes(data))
    r = run("scrub")
    assert r.stats["live_blocks_damaged"] == 1 and r.stats["unrepairable"]
    assert [x.id for x in packs(drive, "sealed")] == [p.id]
    drive.skip_fsck = True  # the damage is the point of this test


def test_rebuild_index_into_a_fresh_database(drive, make_user, run, tmp_path):
    u = make_user()
    files = {}
    for i in range(4):
        data = rand(150_000, 40 + i)
        files[put_bytes(drive, u, f"f{i}.bin", data).node.id] = data
    run("compact", grace=0)  # some blocks now also have dead copies in retiring packs
    target = f"sqlite:///{tmp_path / 'rebuilt.db'}"
    r = run("rebuild_index", options={"into": target})
    assert r.stats["fsck_ok"], r.stats["fsck_problems"]
    assert r.stats["files_ok"] == 4 and r.stats["files_bad"] == 0
    from storage.db import make_engine
    from storage.drive import Drive
    d2 = Drive(drive.config, engine=make_engine(target))
    for nid, data in files.items():
        assert hashlib.sha256(read_all(d2, u, nid)).digest() == hashlib.sha256(data).digest()
