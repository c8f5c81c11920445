"""The jobs' pure DataFrame transforms on small frames."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

T0 = dt.datetime(2026, 1, 1)


def b(n: int) -> bytes:
    return bytes([n]) * 32


def test_refcount_and_usage_drift(spark):
    from jobs.reconcile import missing_blocks, refcount_drift, usage_drift
    blocks = spark.createDataFrame([(b(1), 2), (b(2), 1), (b(3), 0), (b(4), 5)], "id binary, refcount bigint")
    refs = spark.createDataFrame([(1, b(1)), (2, b(1)), (1, b(3)), (3, b(9))], "version_id bigint, block_id binary")
    assertDataFrameEqual(refcount_drift(blocks, refs),
                         spark.createDataFrame([(b(2), 1, 0), (b(3), 0, 1), (b(4), 5, 0)],
                                               "id binary, refcount bigint, counted bigint"))
    assertDataFrameEqual(missing_blocks(blocks, refs), spark.createDataFrame([(3, b(9))], "version_id bigint, block_id binary"))
    users = spark.createDataFrame([(1, 100, 0), (2, 0, 0), (3, 7, 0), (4, 10, 3), (5, 8192, 0)],
                                  "id bigint, used_bytes bigint, pending_bytes bigint")
    # every version counts (user 1: a current and an old one); one of 3 one-byte blocks pays
    # (3 - 1) * floor
    versions = spark.createDataFrame([(1, 60, 1), (1, 40, 1), (2, 5, 1), (4, 10, 1), (5, 3, 3)],
                                     "owner_id bigint, size bigint, nblocks bigint")
    sessions = spark.createDataFrame([(4, 2), (1, 0)], "user_id bigint, reserved_bytes bigint")
    assertDataFrameEqual(usage_drift(users, versions, sessions, floor=4096),
                         spark.createDataFrame([(2, 0, 5, 0, 0), (3, 7, 0, 0, 0), (4, 10, 10, 3, 2)],
                                               "user_id bigint, used_bytes bigint, counted bigint, "
                                               "pending_bytes bigint, counted_pending bigint"))


def test_gc_plans_exclude_live_and_pinned_blocks(spark):
    from jobs.gc import live_set, plan_mark, plan_sweep
    ddl = "id binary, refcount bigint, gc_marked_at timestamp_ntz, pack_id string, stored_size bigint"
    blocks = spark.createDataFrame([
        (b(1), 1, None, "p", 10),              # referenced
        (b(2), 0, None, "p", 20),              # dead: mark
        (b(3), 0, None, "p", 30),              # refcount 0 but a ref exists (drift): keep
        (b(4), 0, None, "p", 40),              # pinned: keep
        (b(5), 0, T0, "q", 50),                # marked long ago: sweep
        (b(6), 0, T0 + dt.timedelta(hours=2), "q", 60),  # marked after the cutoff: wait
        (b(7), 0, T0, "q", 70),                # marked, pinned since: keep
    ], ddl)
    refs = spark.createDataFrame([(b(1),), (b(3),)], "block_id binary")
    pins = spark.createDataFrame([(b(4),), (b(7),)], "block_id binary")
    live = live_set(refs, pins)
    assertDataFrameEqual(plan_mark(blocks, live), spark.createDataFrame([(b(2), "p", 20)], "id binary, pack_id string, stored_size bigint"))
    assertDataFrameEqual(plan_sweep(blocks, live, T0 + dt.timedelta(hours=1)),
                         spark.createDataFrame([(b(5), "q", 50)], "id binary, pack_id string, stored_size bigint"))


def test_compaction_plan_merges_small_packs_and_rewrites_dead_ones(spark):
    from jobs.compact import pack_usage, plan_compaction
    packs = spark.createDataFrame([
        ("a", "file:///hot/packs/a", "local", "sealed", 1000, T0),   # small, all live
        ("b", "file:///hot/packs/b", "local", "sealed", 1000, T0),   # small, all live
        ("c", "file:///hot/packs/c", "local", "sealed", 10_000, T0),  # big, 90% dead
        ("d", "file:///hot/packs/d", "local", "sealed", 10_000, T0),  # big, all live: leave
        ("e", "file:///hot/packs/e", "local", "sealed", 5000, T0),   # no live block: retire
        ("f", "file:///cold/packs/f", "local", "sealed", 100, T0),   # cold tier: not merged
    ], "id string, url string, tier string, state string, size bigint, created_at timestamp_ntz")
    overhead = 48 + 56
    blocks = spark.createDataFrame([
        (b(1), "a", 24, 1000 - overhead - 48), (b(2), "b", 24, 1000 - overhead - 48),
        (b(3), "c", 24, 1000), (b(4), "d", 24, 10_000 - overhead - 48), (b(5), "f", 24, 10),
    ], "id binary, pack_id string, offset_in_pack bigint, stored_size bigint")
    usage = pack_usage(packs, blocks)
    dead = {r.id: round(r.dead_ratio, 2) for r in usage.collect()}
    assert dead["a"] == 0 and dead["d"] == 0 and dead["c"] > 0.85
    plan = plan_compaction(usage, target=8000, fill=0.5, dead_ratio=0.3, hot_prefix="file:///hot/")
    assertDataFrameEqual(plan, spark.createDataFrame(
        [("e", -1, "retire"), ("a", 0, "copy"), ("b", 0, "copy"), ("c", 0, "copy")],
        "id string, bin int, action string"))


def test_compaction_past_max_copy_bytes_is_deferred_bin_by_bin(spark):
    from jobs.compact import OVERHEAD, pack_usage, plan_compaction, plan_packs, summarize
    from storage.pack import INDEX_ENTRY, RECORD_HEADER
    rows, blocks = [], []
    for i in range(6):  # six small all-live packs of 3,000 live bytes: bins of two at this target
        rows.append((f"p{i}", f"file:///hot/p{i}", "local", "sealed", 3000 + OVERHEAD + INDEX_ENTRY, T0))
        blocks.append((b(i), f"p{i}", 24, 3000 - RECORD_HEADER))
    packs = spark.createDataFrame(rows, "id string, url string, tier string, state string, size bigint, "
                                        "created_at timestamp_ntz")
    usage = pack_usage(packs, spark.createDataFrame(blocks, "id binary, pack_id string, offset_in_pack bigint, "
                                                            "stored_size bigint"))
    args = dict(target=6000 + 2 * INDEX_ENTRY + OVERHEAD, fill=0.9, dead_ratio=0.3, hot_prefix="file:///hot/")
    whole = {r.id: (r.bin, r.action) for r in plan_compaction(usage, **args).collect()}
    assert whole == {f"p{i}": (i // 2, "copy") for i in range(6)}
    # room for two bins (12,000 bytes; a third would pass it): the third bin waits
    capped = {r.id: (r.bin, r.action) for r in plan_compaction(usage, max_copy_bytes=13_000, **args).collect()}
    assert capped == {**{f"p{i}": (i // 2, "copy") for i in range(4)}, "p4": (None, "defer"), "p5": (None, "defer")}
    # a limit under one bin still copies the first bin: every run makes progress
    one = {r.id: r.action for r in plan_compaction(usage, max_copy_bytes=1, **args).collect()}
    assert sorted(k for k, v in one.items() if v == "copy") == ["p0", "p1"]
    stats = summarize(plan_packs(usage, max_copy_bytes=1, **args))
    assert (stats["new_packs"], stats["bytes_to_copy"], stats["packs_deferred"], stats["bytes_deferred"]) == \
        (1, 6000, 4, 12_000)


def test_a_lone_small_live_pack_is_left_alone(spark):
    from jobs.compact import pack_usage, plan_compaction
    packs = spark.createDataFrame([("a", "file:///hot/a", "local", "sealed", 1000, T0)],
                                  "id string, url string, tier string, state string, size bigint, created_at timestamp_ntz")
    blocks = spark.createDataFrame([(b(1), "a", 24, 1000 - 48 - 56 - 48)],
                                   "id binary, pack_id string, offset_in_pack bigint, stored_size bigint")
    assert plan_compaction(pack_usage(packs, blocks), target=8000, fill=0.5, dead_ratio=0.3,
                           hot_prefix="file:///hot/").count() == 0


def test_duplicate_versions_and_copies(spark):
    from jobs.dedup_scan import bytes_freed, duplicate_versions, extra_copies
    sha = b(7)
    versions = spark.createDataFrame([(1, 100, sha), (2, 100, sha), (3, 100, sha), (4, 50, b(8))],
                                     "id bigint, size bigint, sha256 binary")
    refs = spark.createDataFrame([(1, 0, b(1)), (1, 1, b(2)), (2, 0, b(3)), (3, 0, b(1)), (3, 1, b(2)), (4, 0, b(4))],
                                 "version_id bigint, seq bigint, block_id binary")
    dups = duplicate_versions(versions, refs)
    assertDataFrameEqual(dups, spark.createDataFrame([(2, 1)], "version_id bigint, canonical_id bigint"))
    blocks = spark.createDataFrame([(b(1), 2, 10, "p", 24), (b(2), 2, 10, "p", 82), (b(3), 1, 30, "q", 24),
                                    (b(4), 1, 5, "q", 102)],
                                   "id binary, refcount bigint, stored_size bigint, pack_id string, offset_in_pack bigint")
    assertDataFrameEqual(bytes_freed(dups, refs, blocks), spark.createDataFrame([(b(3), 30)], "block_id binary, stored_size bigint"))
    records = spark.createDataFrame([("p", b(1), 24, 10), ("r", b(1), 24, 10), ("q", b(3), 24, 30)],
                                    "pack_id string, block_id binary, offset bigint, stored_size bigint")
    assertDataFrameEqual(extra_copies(records, blocks), spark.createDataFrame([(b(1), "r", 10)],
                                                                              "block_id binary, pack_id string, stored_size bigint"))


def test_choose_copies_and_tier_plan(spark):
    from jobs.rebuild_index import RECORD, choose_copies
    from jobs.tier import plan_tier
    recs = spark.createDataFrame([("p2", "u2", 9, b(1), 1, 5, 4, 24), ("p1", "u1", 9, b(1), 1, 5, 4, 80),
                                  ("p3", "u3", 9, b(2), 0, 5, 5, 24)], RECORD)
    assert sorted((bytes(r.block_id), r.pack_id) for r in choose_copies(recs).collect()) == [(b(1), "p1"), (b(2), "p3")]
    packs = spark.createDataFrame([
        ("old", "file:///hot/packs/old", "sealed", 10, None, T0, T0, None),
        ("read", "file:///hot/packs/read", "sealed", 10, None, T0, T0, T0 + dt.timedelta(days=40)),
        ("cold", "s3://b/packs/cold", "sealed", 10, None, T0, T0, None),
    ], "id string, url string, state string, size bigint, checksum string, created_at timestamp_ntz, "
       "sealed_at timestamp_ntz, last_read_at timestamp_ntz")
    assert [r.id for r in plan_tier(packs, "file:///hot/", T0 + dt.timedelta(days=30)).collect()] == ["old"]


def test_scrub_slices_cover_every_pack_once(spark):
    from jobs.scrub import select_packs
    packs = spark.createDataFrame([(f"p{i}", "u", "sealed", 1) for i in range(40)], "id string, url string, state string, size bigint")
    seen = []
    for run_no in range(4):
        seen += [r.id for r in select_packs(packs, 0.25, run_no).collect()]
    assert sorted(seen) == sorted(f"p{i}" for i in range(40))
    assert select_packs(packs, 1.0, 3).count() == 40


def test_copy_merge_keeps_the_copy_in_the_fuller_pack(spark):
    from jobs.dedup_scan import packs_emptied, plan_copy_merge
    packs = spark.createDataFrame([("p", "u/p", 1000), ("q", "u/q", 5000), ("r", "u/r", 900)],
                                  "id string, url string, size bigint")
    blocks = spark.createDataFrame([
        (b(1), 1, 10, "p", 24),    # also in q (fuller): moves there, and p is left empty
        (b(2), 1, 400, "q", 24),
        (b(3), 1, 20, "q", 500),   # also in r (emptier): stays
        (b(4), 1, 30, "r", 24),    # one copy: nothing to do
        (b(5), 1, 10, "r", 200),   # its row names a copy no footer lists: not ours to move
    ], "id binary, refcount bigint, stored_size bigint, pack_id string, offset_in_pack bigint")
    records = spark.createDataFrame([
        ("p", b(1), 24, 10, 0), ("q", b(1), 900, 12, 1), ("q", b(2), 24, 400, 0), ("q", b(3), 500, 20, 0),
        ("r", b(3), 100, 20, 0), ("r", b(4), 24, 30, 0), ("p", b(5), 300, 10, 0), ("q", b(5), 950, 10, 0),
    ], "pack_id string, block_id binary, offset bigint, stored_size bigint, codec int")
    moves = plan_copy_merge(records, blocks, packs)
    assertDataFrameEqual(moves, spark.createDataFrame(
        [(b(1), "p", 24, "q", 900, 1, 12, "u/q")],
        "block_id binary, from_pack string, from_offset bigint, to_pack string, to_offset bigint, codec int, "
        "stored_size bigint, url string"))
    assertDataFrameEqual(packs_emptied(moves, blocks, packs), spark.createDataFrame([("p", 1000)], "id string, size bigint"))


def _packs_with_dead(spark, specs):
    """Hot sealed packs of (id, live bytes, dead bytes): size = live + dead + the pack's overhead."""
    from jobs.compact import OVERHEAD, pack_usage
    from storage.pack import INDEX_ENTRY, RECORD_HEADER
    packs = spark.createDataFrame(
        [(pid, f"file:///hot/{pid}", "local", "sealed", live + dead + OVERHEAD + INDEX_ENTRY, T0)
         for pid, live, dead in specs],
        "id string, url string, tier string, state string, size bigint, created_at timestamp_ntz")
    blocks = spark.createDataFrame([(b(i), pid, 24, live - RECORD_HEADER) for i, (pid, live, _) in enumerate(specs)],
                                   "id binary, pack_id string, offset_in_pack bigint, stored_size bigint")
    return pack_usage(packs, blocks)


def test_compaction_under_an_amplification_bound_copies_at_most_that_per_byte_freed(spark):
    from jobs.compact import plan_compaction, plan_packs, summarize
    # big packs (not small at fill 0.1), all past the dead ratio 0.3; live:dead of 1, 2 and 2.06
    usage = _packs_with_dead(spark, [("a", 5000, 5000), ("b", 6000, 3000), ("c", 6600, 3200)])
    args = dict(target=100_000, fill=0.1, dead_ratio=0.3, hot_prefix="file:///hot/")
    unbounded = {r.id: r.action for r in plan_compaction(usage, **args).collect()}
    assert unbounded == {"a": "copy", "b": "copy", "c": "copy"}  # 17,600 copied for 11,200 freed
    # at most 1.5 copied per freed: a (1.0), then a+b (11,000 / 8,000 = 1.375); c would make it 1.57
    bounded = {r.id: r.action for r in plan_compaction(usage, max_amplification=1.5, **args).collect()}
    assert bounded == {"a": "copy", "b": "copy", "c": "hold"}
    stats = summarize(plan_packs(usage, max_amplification=1.5, **args))
    assert stats["bytes_to_copy"] == 11_000 and stats["bytes_to_copy"] <= 1.5 * stats["bytes_to_free"]
    assert (stats["packs_held"], stats["dead_bytes_held"]) == (1, 3200)
    # under 1.0 copied per freed only a (exactly 1.0) goes, alone in its bin but dead enough
    assert {r.id: r.action for r in plan_compaction(usage, max_amplification=1.0, **args).collect()} == \
        {"a": "copy", "b": "hold", "c": "hold"}


def test_the_dead_rich_packs_are_taken_first_whatever_their_ids(spark):
    from jobs.compact import plan_compaction
    # z frees 9 bytes per byte copied, a only 1 per 2: first z, then a while the total allows
    usage = _packs_with_dead(spark, [("a", 6000, 3000), ("z", 1000, 9000)])
    plan = {r.id: r.action for r in plan_compaction(usage, target=100_000, fill=0.1, dead_ratio=0.3,
                                                    hot_prefix="file:///hot/", max_amplification=1.0).collect()}
    assert plan == {"a": "copy", "z": "copy"}  # together 7,000 copied for 12,000 freed: within 1
    plan = {r.id: r.action for r in plan_compaction(usage, target=100_000, fill=0.1, dead_ratio=0.3,
                                                    hot_prefix="file:///hot/", max_amplification=0.5).collect()}
    assert plan == {"a": "hold", "z": "copy"}  # a would make it 0.58: past 0.5


def test_small_live_packs_merge_within_merge_bytes_only_under_the_bound(spark):
    from jobs.compact import plan_compaction
    # four small all-live packs of 1,000 live bytes: merging them frees nothing
    usage = _packs_with_dead(spark, [(f"s{i}", 1000, 0) for i in range(4)])
    args = dict(target=100_000, fill=0.5, dead_ratio=0.3, hot_prefix="file:///hot/", max_amplification=4.0)
    assert {r.action for r in plan_compaction(usage, merge_bytes=0, **args).collect()} == {"hold"}
    merged = {r.id: (r.bin, r.action) for r in plan_compaction(usage, merge_bytes=3000, **args).collect()}
    assert merged == {"s0": (0, "copy"), "s1": (0, "copy"), "s2": (0, "copy"), "s3": (None, "hold")}
    # without a bound they all merge, as before
    assert {r.action for r in plan_compaction(usage, **{**args, "max_amplification": 0.0}).collect()} == {"copy"}
