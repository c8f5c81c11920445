"""The report's pure transforms on small hand-made frames."""

from __future__ import annotations

import datetime as dt

from pyspark.testing import assertDataFrameEqual

from jobs import report as R

B = R.PER_BLOCK


def df(spark, rows, ddl):
    return spark.createDataFrame(rows, ddl)


def test_user_usage_counts_current_trash_and_all_versions(spark):
    users = df(spark, [(1, "a@x", 150, 1000), (2, "b@x", 0, 1000)], R.USERS)
    files = df(spark, [(1, 100, 0), (1, 50, 1)], R.FILES)
    versions = df(spark, [(1, 100), (1, 50), (1, 70)], R.VERSIONS)
    out = R.user_usage(users, files, versions)
    assertDataFrameEqual(out, [(1, "a@x", 2, 150, 50, 220, 150, 1000), (2, "b@x", 0, 0, 0, 0, 0, 1000)],
                         checkRowOrder=False)
    assert out.columns == ["user_id", "email", "files", "logical_bytes", "trash_bytes", "all_versions_bytes",
                           "used_bytes", "quota_bytes"]


def test_block_states_and_pack_usage(spark):
    blocks = df(spark, [(b"a", 100, 60, "p1"), (b"b", 200, 200, "p1"), (b"c", 300, 300, "p2"), (b"d", 10, 10, "p2")],
                R.BLOCKS)
    refs = df(spark, [(b"a",), (b"a",)], "block_id binary")
    pins = df(spark, [(b"b",), (b"a",)], "block_id binary")
    states = R.block_states(blocks, refs, pins)
    assertDataFrameEqual(states.select("id", "state"), [(b"a", "live"), (b"b", "pinned"), (b"c", "dead"),
                                                        (b"d", "dead")], checkRowOrder=False)
    assertDataFrameEqual(R.block_totals(states), [("live", 1, 100, 60), ("pinned", 1, 200, 200), ("dead", 2, 310, 310)],
                         checkRowOrder=False)
    # p1 holds a and b plus 100 bytes of records nothing points to; p2 only dead blocks.
    p1 = R.PER_PACK + 2 * B + 60 + 200 + 100
    p2 = R.PER_PACK + 2 * B + 310
    packs = df(spark, [("p1", "hdfs", "sealed", p1), ("p2", "s3", "sealed", p2), ("p3", "hdfs", "retiring", 5000),
                       ("p4", "hdfs", "open", 0)], R.PACKS)
    usage = R.pack_usage(packs, states)
    assertDataFrameEqual(usage, [("p1", "hdfs", "sealed", p1, 260, 0, 100),
                                 ("p2", "s3", "sealed", p2, 0, 2 * B + 310, 0),
                                 ("p3", "hdfs", "retiring", 5000, 0, 0, 0),
                                 ("p4", "hdfs", "open", 0, 0, 0, 0)], checkRowOrder=False)
    assertDataFrameEqual(R.tier_usage(usage), [("hdfs", 1, p1, 260, 1, 5000), ("s3", 1, p2, 0, 0, 0)])
    # p2 is all dead (past 0.3), p1's 100 dead bytes are under 0.3 of its 616.
    g = R.garbage(usage, dead_ratio=0.3, small_below=p1).first().asDict()
    assert g == {"dead_records": 2 * B + 310, "unindexed": 100, "rewrite_ready": 2 * B + 310, "small_packs": 1,
                 "retiring": 5000}


def test_traffic_by_day_sums_users(spark):
    t = df(spark, [("2026-01-02", 1, 1, 0, 10, 0), ("2026-01-02", 2, 2, 3, 20, 30), ("2026-01-01", 1, 0, 1, 0, 5)],
           R.TRAFFIC)
    assertDataFrameEqual(R.traffic_by_day(t), [("2026-01-01", 0, 1, 0, 5), ("2026-01-02", 3, 3, 30, 30)])


def test_job_history_reads_duration_rows_and_bytes_freed(spark):
    t0 = dt.datetime(2026, 1, 1, 2, 0, 0)
    runs = df(spark, [
        (1, "gc", "ok", t0, t0 + dt.timedelta(seconds=9), '{"seconds": 8.5, "blocks": 40, "swept_bytes": 4096, "dry_run": false}'),
        (2, "compact", "failed", t0, t0 + dt.timedelta(seconds=3), '{"error": "boom"}'),
        (3, "gc", "ok", t0, t0 + dt.timedelta(seconds=1), '{"seconds": 1.0, "swept_bytes": 99, "dry_run": true}'),
    ], R.RUNS)
    h = R.job_history(runs)
    assertDataFrameEqual(h.select("id", "seconds", "rows", "bytes_freed", "dry_run"),
                         [(1, 8.5, 40, 4096, False), (2, 3.0, None, None, False), (3, 1.0, None, 99, True)],
                         checkRowOrder=False)
    s = {r["job"]: r.asDict() for r in R.job_summary(h).collect()}
    assert (s["gc"]["runs"], s["gc"]["ok"], s["gc"]["bytes_freed"]) == (2, 2, 4096)  # the dry run freed nothing
    assert (s["compact"]["not_ok"], s["compact"]["bytes_freed"]) == (1, 0)


def test_headline_ratios_and_empty_store():
    users = {"users": 0, "files": 0, "logical_bytes": 0, "trash_bytes": 0, "all_versions_bytes": 0, "used_bytes": 0}
    g = {"dead_records": 0, "unindexed": 0, "rewrite_ready": 0, "small_packs": 0, "retiring": 0}
    h = R.headline(users, {}, [], g, [], [])
    assert h["dedup_ratio"] is None and h["compression_ratio"] is None and h["garbage_bytes"] == 0
    users.update(logical_bytes=300, all_versions_bytes=400)
    h = R.headline(users, {"live": {"blocks": 2, "raw_bytes": 100, "stored_bytes": 40}}, [], {**g, "unindexed": 7,
                   "dead_records": 5, "retiring": 11}, [], [{"status": "ok"}, {"status": "failed"}])
    assert (h["dedup_ratio"], h["dedup_ratio_all_versions"], h["compression_ratio"]) == (3.0, 4.0, 2.5)
    assert h["garbage_bytes"] == 23 and (h["job_runs"], h["job_runs_failed"]) == (2, 1)
