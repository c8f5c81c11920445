"""compact deletes the packs it superseded once no reader can hold them (the read bound of
storage/reads.py), and copies one bin at a time so that its extra disk stays one new pack."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from jobs import hooks
from storage import clock
from storage.models import Pack
from tests.conftest import put_bytes, rand, read_all


def states(drive) -> dict[str, int]:
    with drive.sm() as s:
        return dict(s.execute(sa.select(Pack.state, sa.func.count()).group_by(Pack.state)).all())


def pack_files(drive) -> int:
    return sum(p.stat().st_size for p in Path(drive.config["storage"]["home"]).rglob("*.pack"))


def test_superseded_packs_go_after_the_read_bound_not_the_grace(drive, make_user, run):
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 50 + i) for i in range(6)}
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    assert run("compact").stats["packs_retired"] == 6
    st, grace = drive.config["storage"], drive.config["gc"]["grace_seconds"]
    bound = st["read_location_max_seconds"] + st["timeout_seconds"]
    assert bound * 2 < grace

    clock.advance(bound / 2)  # a paused download may still read the old packs
    r = run("compact")
    assert r.stats["packs_deleted"] == 0 and states(drive)["retiring"] == 6
    clock.advance(bound)  # past the bound, well inside the grace
    r = run("compact")
    assert r.stats["packs_deleted"] == 6 and states(drive).get("retiring", 0) == 0
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d


def test_a_run_copies_switches_and_deletes_bin_by_bin(drive, make_user, spark):
    """With no reader to wait for (a read bound of 0), the packs each bin supersedes go before
    the next bin is written: the pack files never exceed what was there before plus the one
    new pack being written. All at once, they would grow by every new pack."""
    from jobs.runner import run_job
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 70 + i) for i in range(9)}
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    cfg = drive.config
    cfg = type(cfg)({**cfg, "storage": {**cfg["storage"], "read_location_max_seconds": 0, "timeout_seconds": 0},
                     "jobs": {**cfg["jobs"], "target_pack_bytes": 100_000, "fill_threshold": 0.9}})
    before = pack_files(drive)
    seen = []

    def measure():  # each bin's new pack is written, its blocks not yet switched to it
        seen.append(pack_files(drive) - before)

    hooks.HOOKS["compact:after_write"] = measure
    try:
        r = run_job("compact", drive, spark, cfg)
    finally:
        hooks.HOOKS.pop("compact:after_write", None)
    assert r.stats["new_packs"] >= 3 and len(seen) == r.stats["new_packs"]
    assert r.stats["packs_deleted"] == r.stats["packs_retired"] >= 6  # a last bin of one pack stays
    largest = max(p.size for p in _sealed(drive))
    assert r.stats["bytes_written"] > 2 * largest  # all at once would break the bound below
    assert max(seen) <= largest, (seen, largest)
    assert pack_files(drive) < before
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d


def _compact_with(drive, spark, storage: dict, jobs: dict):
    """Run compact with these settings, measuring the pack files after each new pack is written
    (before its switch) against the files before the run."""
    from jobs.runner import run_job
    cfg = drive.config
    cfg = type(cfg)({**cfg, "storage": {**cfg["storage"], **storage},
                     "jobs": {**cfg["jobs"], "target_pack_bytes": 100_000, "fill_threshold": 0.9, **jobs}})
    before = pack_files(drive)
    seen = []
    hooks.HOOKS["compact:after_write"] = lambda: seen.append(pack_files(drive) - before)
    try:
        return run_job("compact", drive, spark, cfg), seen
    finally:
        hooks.HOOKS.pop("compact:after_write", None)


def test_a_run_leaves_the_bins_past_one_target_pack_of_extra_disk_to_the_next(drive, make_user, spark):
    """Bounding the extra disk, with the default read bound and no waiting, the first bin's new pack stays extra disk
    (readers may hold the packs it superseded): the run writes no more than one target pack
    and leaves the rest; the next run, past the bound, deletes them and goes on."""
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 90 + i) for i in range(7)}
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    st = drive.config["storage"]
    bound = st["read_location_max_seconds"] + st["timeout_seconds"]
    assert bound > 60
    r, seen = _compact_with(drive, spark, {}, {"compact_bound_extra_disk": True, "compact_wait_seconds": 0})
    assert r.stats["new_packs"] >= 3 and len(seen) == 1 and seen[0] <= 100_000, (r.stats, seen)
    assert r.stats["bins_deferred_for_disk"] == r.stats["new_packs"] - 1
    assert r.stats["packs_deleted"] == 0 and r.stats["packs_retired"] == 2 and states(drive)["retiring"] == 2
    assert r.stats["bytes_copied"] < 100_000 and r.stats["bytes_freed"] >= 0
    clock.advance(bound + 1)
    r2, seen = _compact_with(drive, spark, {}, {"compact_bound_extra_disk": True, "compact_wait_seconds": 0})
    assert r2.stats["packs_deleted"] == 2 and len(seen) == 1 and seen[0] <= 100_000, (r2.stats, seen)
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d


def test_a_run_waits_for_the_read_bound_to_write_every_bin_within_one_target_pack(drive, make_user, spark):
    u = make_user()
    files = {f"f{i}.bin": rand(40_000, 110 + i) for i in range(7)}
    nodes = {n: put_bytes(drive, u, n, d).node.id for n, d in files.items()}
    r, seen = _compact_with(drive, spark, {"read_location_max_seconds": 1, "timeout_seconds": 0},
                            {"compact_bound_extra_disk": True, "compact_wait_seconds": 60})
    assert r.stats["new_packs"] >= 3 and len(seen) == r.stats["new_packs"], (r.stats, seen)
    assert r.stats["bins_deferred_for_disk"] == 0 and max(seen) <= 100_000, seen
    # every bin but the last had its superseded packs deleted before the next was written
    assert r.stats["packs_deleted"] >= 2 * (r.stats["new_packs"] - 1)
    for n, d in files.items():
        assert read_all(drive, u, nodes[n]) == d


def _sealed(drive):
    with drive.sm() as s:
        return s.execute(sa.select(Pack).where(Pack.state == "sealed")).scalars().all()
