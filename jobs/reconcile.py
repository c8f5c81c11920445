"""``reconcile``: recompute every block's refcount from ``version_blocks`` (the truth) and every
user's ``used_bytes`` (the charge of every version their files keep, current, old and trashed:
:func:`storage.quota.version_charge`), ``pending_bytes`` (what their active upload sessions
hold) and ``node_count`` (the nodes they own); repair and report each drift.

The Spark plan finds candidates on one snapshot; each repair is recounted under the row's
lock before it is written (storage/maintenance.py), so a snapshot raced by uploads never
writes a wrong count. Increases apply at once; a decrease to zero leaves the block to GC's
mark and sweep with its grace period. A second run right after the first finds nothing.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, functions as F

from storage import extracts
from storage import maintenance as m
from storage.quota import BLOCK_FLOOR


def extract(ctx):
    blocks = ctx.frame(extracts.blocks("id", "refcount"), "id binary, refcount bigint", table="blocks")
    refs = ctx.frame(extracts.refs("version_id", "block_id"), "version_id bigint, block_id binary",
                     table="version_blocks", partition_column="version_id")
    users = ctx.frame(extracts.users("id", "used_bytes", "pending_bytes"),
                      "id bigint, used_bytes bigint, pending_bytes bigint", table="users", partition_column="id")
    versions = ctx.frame(extracts.version_owners("size", "nblocks"),
                         "owner_id bigint, size bigint, nblocks bigint")
    sessions = ctx.frame(extracts.active_reservations(),
                         "user_id bigint, reserved_bytes bigint")
    return blocks, refs, users, versions, sessions


def refcount_drift(blocks: DataFrame, refs: DataFrame) -> DataFrame:
    """Blocks whose refcount differs from their number of refs: (id, refcount, counted)."""
    counted = refs.groupBy("block_id").agg(F.count(F.lit(1)).alias("counted"))
    j = blocks.join(counted, blocks.id == counted.block_id, "left")
    return (j.select("id", "refcount", F.coalesce("counted", F.lit(0)).alias("counted"))
            .where(F.col("refcount") != F.col("counted")))


def missing_blocks(blocks: DataFrame, refs: DataFrame) -> DataFrame:
    """Refs to blocks that have no row (fsck territory: reported, never "repaired")."""
    return refs.join(blocks, refs.block_id == blocks.id, "left_anti").select("version_id", "block_id")


def usage_drift(users: DataFrame, versions: DataFrame, sessions: DataFrame, floor: int = BLOCK_FLOOR) -> DataFrame:
    """Users whose used or pending bytes differ from the truth: (user_id, used_bytes, counted,
    pending_bytes, counted_pending). A version costs max(size, (nblocks - 1) * floor)."""
    charge = F.greatest(F.col("size"), (F.coalesce(F.col("nblocks"), F.lit(1)) - 1) * F.lit(floor))
    used = versions.groupBy("owner_id").agg(F.sum(charge).alias("counted"))
    held = sessions.groupBy(F.col("user_id").alias("holder")).agg(F.sum("reserved_bytes").alias("held"))
    j = users.join(used, users.id == used.owner_id, "left").join(held, users.id == held.holder, "left")
    return (j.select(F.col("id").alias("user_id"), "used_bytes", F.coalesce("counted", F.lit(0)).alias("counted"),
                     "pending_bytes", F.coalesce("held", F.lit(0)).alias("counted_pending"))
            .where((F.col("used_bytes") != F.col("counted")) | (F.col("pending_bytes") != F.col("counted_pending"))))


def run(ctx) -> dict:
    blocks, refs, users, versions, sessions = extract(ctx)
    floor = ctx.cfg["quota"]["block_floor_bytes"]
    drift = refcount_drift(blocks, refs).cache()
    udrift = usage_drift(users, versions, sessions, floor).cache()
    missing = missing_blocks(blocks, refs).count()
    stats = {"refcount_drift": drift.count(), "usage_drift": udrift.count(), "refs_to_missing_blocks": missing,
             "increases": drift.where(F.col("counted") > F.col("refcount")).count()}
    stats["decreases"] = stats["refcount_drift"] - stats["increases"]
    # a plain grouped count: one row per user, no need for Spark
    ndrift = m.node_count_drift(ctx.sm)
    stats["node_count_drift"] = len(ndrift)
    ctx.say(f"plan: {stats['refcount_drift']} refcounts and {stats['usage_drift']} usage totals drifted")
    if ctx.dry_run:
        stats["would_repair"] = [{"block": bytes(r.id).hex(), "refcount": r.refcount, "counted": r.counted}
                                 for r in drift.limit(100).collect()]
        return stats
    repairs = m.repair_refcounts(ctx.sm, [bytes(r.id) for r in drift.select("id").toLocalIterator()])
    repairs += m.repair_usage(ctx.sm, [r.user_id for r in udrift.select("user_id").collect()], floor)
    repairs += m.repair_node_counts(ctx.sm, ndrift)
    drift.unpersist()
    udrift.unpersist()
    for r in repairs[:1000]:
        ctx.say(f"repaired {r.kind} {r.key}: {r.old} -> {r.new}")
    stats["repaired"] = len(repairs)
    stats["repairs"] = [r.__dict__ for r in repairs[:100]]
    return stats
