"""compact's bins close before they would pass the target pack size, so that the one new pack
a run writes at a time (its extra disk) is at most one target pack."""

from __future__ import annotations

import datetime as dt
import random

from storage.pack import INDEX_ENTRY, RECORD_HEADER

T0 = dt.datetime(2026, 1, 1)


def test_first_fit_puts_an_item_in_the_first_bin_it_fits_without_passing_capacity():
    from jobs.compact import first_fit
    assert first_fit([40, 40, 30, 1, 99, 100], 100) == [0, 0, 1, 0, 2, 3]
    assert first_fit([], 100) == []
    # small items a bigger one separates still share a bin
    assert first_fit([40, 81, 40, 81], 100) == [0, 1, 0, 2]
    # an item past capacity on its own still gets a bin, its own
    assert first_fit([10, 150, 10], 100) == [0, 1, 0]
    # only the last open_bins bins take more
    assert first_fit([60, 60, 60, 30], 100, open_bins=2) == [0, 1, 2, 1]


def test_first_fit_never_passes_capacity_and_opens_a_bin_only_when_needed():
    from jobs.compact import first_fit
    rng = random.Random(20)
    for _ in range(200):
        sizes = [rng.randint(1, 100) for _ in range(rng.randint(1, 40))]
        bins = first_fit(sizes, 100)
        totals: dict[int, int] = {}
        for i, (b, n) in enumerate(zip(bins, sizes)):
            if b not in totals:  # a new bin: the item fitted in none before it
                assert b == len(totals) and all(t + n > 100 for t in totals.values())
            totals[b] = totals.get(b, 0) + n
        assert max(totals.values()) <= 100


def _usage(spark, specs):
    """Hot sealed packs of (id, [live record bytes...], dead bytes)."""
    from jobs.compact import OVERHEAD, pack_usage
    packs, blocks, n = [], [], 0
    for pid, records, dead in specs:
        size = sum(records) + dead + OVERHEAD + len(records) * INDEX_ENTRY
        packs.append((pid, f"file:///hot/{pid}", "local", "sealed", size, T0))
        for r in records:
            n += 1
            blocks.append((n.to_bytes(32, "big"), pid, 24, r - RECORD_HEADER))
    return pack_usage(
        spark.createDataFrame(packs, "id string, url string, tier string, state string, size bigint, "
                                     "created_at timestamp_ntz"),
        spark.createDataFrame(blocks, "id binary, pack_id string, offset_in_pack bigint, stored_size bigint"))


def _new_pack_sizes(usage, plan) -> dict[int, int]:
    """The size of the new pack each bin makes: its packs' live records and index entries, and
    one header and trailer."""
    from jobs.compact import OVERHEAD
    copy = {r.id: r.bin for r in plan if r.action == "copy"}
    sizes: dict[int, int] = {}
    for r in usage.collect():
        if r.id in copy:
            sizes[copy[r.id]] = sizes.get(copy[r.id], OVERHEAD) + r.live_bytes + r.nblocks * INDEX_ENTRY
    return sizes


def test_no_new_pack_passes_the_target(spark):
    from jobs.compact import plan_compaction
    rng = random.Random(7)
    # packs about a third to two thirds of the target, a third dead: the old planner filled a
    # bin while the bytes before a pack were under the target, up to 1.6 target packs
    specs = [(f"p{i:02d}", [rng.randint(500, 4000) for _ in range(rng.randint(1, 4))], rng.randint(2000, 4000))
             for i in range(24)]
    usage = _usage(spark, specs).cache()
    target = 12_000
    plan = plan_compaction(usage, target=target, fill=0.5, dead_ratio=0.2, hot_prefix="file:///hot/").collect()
    sizes = _new_pack_sizes(usage, plan)
    assert len(sizes) >= 3 and max(sizes.values()) <= target, sizes
    # and no two bins would have fitted in one
    from jobs.compact import OVERHEAD
    assert all(sizes[a] + sizes[b] - OVERHEAD > target for a in sizes for b in sizes if a < b), sizes
    usage.unpersist()


def test_the_amplification_bound_holds_with_closed_bins(spark):
    from jobs.compact import plan_packs, summarize
    rng = random.Random(11)
    specs = [(f"p{i:02d}", [rng.randint(1000, 3000) for _ in range(3)], rng.randint(200, 6000)) for i in range(20)]
    usage = _usage(spark, specs).cache()
    args = dict(target=10_000, fill=0.1, dead_ratio=0.1, hot_prefix="file:///hot/")
    for bound in (1.5, 2.0, 4.0):
        planned = plan_packs(usage, max_amplification=bound, **args)
        stats = summarize(planned)
        assert 0 < stats["bytes_to_copy"] <= bound * stats["bytes_to_free"], (bound, stats)
        sizes = _new_pack_sizes(usage, planned.collect())
        assert max(sizes.values()) <= args["target"], sizes
    usage.unpersist()


def test_small_packs_still_merge_into_one_pack_up_to_the_target(spark):
    from jobs.compact import OVERHEAD, plan_compaction
    usage = _usage(spark, [(f"s{i}", [1000], 0) for i in range(5)])
    one = 1000 + INDEX_ENTRY
    # room for exactly three of them in a new pack: three, then the last two
    plan = plan_compaction(usage, target=3 * one + OVERHEAD, fill=0.9, dead_ratio=0.3,
                           hot_prefix="file:///hot/").collect()
    assert {r.id: (r.bin, r.action) for r in plan} == {
        "s0": (0, "copy"), "s1": (0, "copy"), "s2": (0, "copy"), "s3": (1, "copy"), "s4": (1, "copy")}
    # one byte less and a bin takes two: the third would pass the target; the fifth, alone, stays
    plan = plan_compaction(usage, target=3 * one + OVERHEAD - 1, fill=0.9, dead_ratio=0.3,
                           hot_prefix="file:///hot/").collect()
    assert {r.id: (r.bin, r.action) for r in plan} == {
        "s0": (0, "copy"), "s1": (0, "copy"), "s2": (1, "copy"), "s3": (1, "copy")}


def test_extra_disk_waits_for_the_read_bound_of_the_bins_still_extra(monkeypatch):
    from jobs import compact
    t = [100.0]
    monkeypatch.setattr(compact.time, "monotonic", lambda: t[0])
    extra = compact.ExtraDisk(limit=100, bound=10)
    assert extra.wait_for(150) == 0  # nothing extra yet: the first bin goes whatever its size
    extra.switched(60, ["a"])
    t[0] = 103.0
    extra.switched(30, ["b"])
    assert extra.wait_for(10) == 0 and extra.due() == []
    assert extra.wait_for(11) == 7  # 60 + 30 + 11 passes 100: until a's bound has passed
    assert extra.wait_for(80) == 10  # both must go
    t[0] = 110.5
    assert extra.due() == ["a"] and extra.wait_for(70) == 0 and extra.wait_for(71) == 2.5
