"""``compact``: merge small packs into packs of the target size, rewrite packs whose dead
ratio passed the threshold, and delete packs retired more than a grace period ago.

Execute runs in restic's fixed safe order: (1) delete the files of packs that left the
index a grace period ago, (2) retire packs no block points to, (3) write the new packs
(registered ``open`` first, durable before anything points to them) on the executors,
(4) switch the blocks to them and retire the old packs, one transaction per new pack.
A crash between (3) and (4) leaves open packs that GC reclaims; old packs keep serving
readers for the grace period after (4).
"""

from __future__ import annotations

import datetime as dt
import time

from pyspark.sql import DataFrame, Window, functions as F

from storage import maintenance as m
from storage import pack as packfmt

from .executor import store_for
from .hooks import step

PACKS = "id string, url string, tier string, state string, size bigint, created_at timestamp_ntz"
BLOCKS = "id binary, pack_id string, offset_in_pack bigint, stored_size bigint"
OVERHEAD = packfmt.HEADER_SIZE + packfmt.TRAILER_SIZE


def extract(ctx):
    packs = ctx.frame("SELECT id, url, tier, state, size, created_at FROM packs WHERE state = 'sealed'", PACKS)
    blocks = ctx.frame("SELECT id, pack_id, offset_in_pack, stored_size FROM blocks", BLOCKS, table="blocks")
    return packs, blocks


# ---- transform (pure) ------------------------------------------------------------------------

def pack_usage(packs: DataFrame, blocks: DataFrame) -> DataFrame:
    """Each pack with its live bytes (records a block row points to) and dead ratio."""
    live = blocks.groupBy("pack_id").agg(
        F.sum(F.col("stored_size") + packfmt.RECORD_HEADER).alias("live_bytes"), F.count(F.lit(1)).alias("nblocks"))
    j = packs.join(live, packs.id == live.pack_id, "left").drop("pack_id").fillna(0, ["live_bytes", "nblocks"])
    overhead = F.lit(OVERHEAD) + F.col("nblocks") * packfmt.INDEX_ENTRY
    dead = F.greatest(F.col("size") - F.col("live_bytes") - overhead, F.lit(0))
    return j.withColumn("dead_bytes", dead).withColumn(
        "dead_ratio", F.when(F.col("size") > 0, dead / F.col("size")).otherwise(F.lit(0.0)))


def plan_compaction(usage: DataFrame, *, target: int, fill: float, dead_ratio: float, hot_prefix: str) -> DataFrame:
    """(pack id, bin, action): ``retire`` for sealed packs with no live block, ``copy`` for
    packs whose live records go into new pack number ``bin``. A bin of one pack that is
    merely small (not dead enough) is left alone: rewriting it alone gains nothing."""
    hot = usage.where((F.col("state") == "sealed") & F.col("url").startswith(hot_prefix))
    # A pack with no live block retires whatever its tier.
    empty = usage.where((F.col("state") == "sealed") & (F.col("live_bytes") == 0)).select("id", F.lit(-1).alias("bin"), F.lit("retire").alias("action"))
    cand = hot.where((F.col("live_bytes") > 0) & ((F.col("size") < F.lit(int(fill * target)))
                                                  | (F.col("dead_ratio") >= F.lit(dead_ratio))))
    w = Window.orderBy("id").rowsBetween(Window.unboundedPreceding, -1)
    binned = cand.withColumn("before", F.coalesce(F.sum("live_bytes").over(w), F.lit(0))) \
                 .withColumn("bin", F.floor(F.col("before") / F.lit(target)).cast("int"))
    per_bin = binned.groupBy("bin").agg(F.count(F.lit(1)).alias("packs"), F.max("dead_ratio").alias("worst"))
    useful = per_bin.where((F.col("packs") > 1) | (F.col("worst") >= F.lit(dead_ratio))).select("bin")
    copy = binned.join(useful, "bin").select("id", "bin", F.lit("copy").alias("action"))
    return empty.unionByName(copy)


def plan_moves(plan: DataFrame, packs: DataFrame, blocks: DataFrame) -> DataFrame:
    copy = plan.where(F.col("action") == "copy").join(packs.select("id", "url"), "id")
    return (blocks.join(copy.withColumnRenamed("id", "pack_id"), "pack_id")
            .select("bin", F.col("id").alias("block_id"), "pack_id", "url", F.col("offset_in_pack").alias("offset"),
                    "stored_size"))


def summarize(usage: DataFrame, plan: DataFrame, moves: DataFrame) -> dict:
    u = usage.agg(F.sum("size").alias("physical"), F.sum("live_bytes").alias("live")).first()
    p = plan.join(usage.select("id", "size", "live_bytes"), "id").groupBy("action").agg(
        F.count(F.lit(1)).alias("packs"), F.sum("size").alias("bytes"), F.sum("live_bytes").alias("live")).collect()
    by = {r["action"]: r for r in p}
    return {"sealed_bytes": int(u["physical"] or 0), "live_bytes": int(u["live"] or 0),
            "packs_to_retire": int(by["retire"]["packs"]) if "retire" in by else 0,
            "packs_to_rewrite": int(by["copy"]["packs"]) if "copy" in by else 0,
            "bytes_to_copy": int(by["copy"]["live"]) if "copy" in by else 0,
            "bytes_to_free": int(sum(int(r["bytes"]) for r in p) - (int(by["copy"]["live"]) if "copy" in by else 0)),
            "new_packs": moves.select("bin").distinct().count()}


# ---- executors -------------------------------------------------------------------------------

def _write_bins(cfg, targets):
    def write(item):
        bin_, rows = item
        store = store_for(cfg)
        pack_id, key = targets[bin_]
        sources = [m.Source(bytes(r.block_id), r.pack_id, r.url, r.offset, r.stored_size) for r in rows]
        size, checksum, moves, bad = m.write_pack(store, pack_id, key, sources)
        return (bin_, pack_id, size, checksum, [(mv.block_id, mv.from_pack, mv.offset) for mv in moves],
                [(s.block_id, s.pack_id, err) for s, err in bad])
    return write


def run(ctx) -> dict:
    cfg, t = ctx.cfg, ctx.started
    j = cfg["jobs"]
    store = ctx.drive.blocks
    packs, blocks = extract(ctx)
    usage = pack_usage(packs, blocks).cache()
    plan = plan_compaction(usage, target=j["target_pack_bytes"], fill=j["fill_threshold"],
                           dead_ratio=j["dead_ratio"],
                           hot_prefix=store.hot.url.split("?", 1)[0].rstrip("/") + "/").cache()
    moves = plan_moves(plan, packs, blocks).cache()
    stats = summarize(usage, plan, moves)
    ctx.say(f"plan: retire {stats['packs_to_retire']} packs, rewrite {stats['packs_to_rewrite']} into "
            f"{stats['new_packs']} ({stats['bytes_to_copy']} bytes to copy, {stats['bytes_to_free']} to free)")
    if ctx.dry_run:
        return stats

    stats.update(m.delete_retired_packs(ctx.sm, store, t - dt.timedelta(seconds=ctx.grace)))
    step("compact:after_delete")
    stats["retired_empty"] = m.retire_packs(ctx.sm, [r.id for r in plan.where(F.col("action") == "retire")
                                                     .select("id").collect()], t)
    bins = sorted(r.bin for r in moves.select("bin").distinct().collect())
    targets = {}
    for b in bins:
        pid = m.new_pack_id()
        key = store.pack_key(pid)
        m.register_pack(ctx.sm, pid, store.hot.url_for(key))
        targets[b] = (pid, key)
    t_write = time.perf_counter()
    results = (moves.rdd.map(lambda r: (r.bin, r)).groupByKey(max(1, min(len(bins), j["shuffle_partitions"])))
               .map(_write_bins(cfg, targets)).collect()) if bins else []
    stats["bytes_written"] = sum(r[2] for r in results)
    stats["write_seconds"] = round(time.perf_counter() - t_write, 3)
    ctx.say(f"wrote {len(results)} packs ({stats['bytes_written']} bytes)")
    step("compact:after_write")
    moved = retired = 0
    bad = []
    for bin_, pack_id, size, checksum, mv, bad_records in results:
        out = m.switch_blocks(ctx.sm, pack_id, size, checksum, [m.Move(*x) for x in mv], t)
        moved += out["moved"]
        retired += out["retired"]
        bad += [{"block": b.hex(), "pack": p, "error": e} for b, p, e in bad_records]
    stats.update(blocks_moved=moved, packs_retired=retired, bad_records=bad[:100])
    ctx.say(f"switched {moved} blocks, retired {retired} packs")
    step("compact:after_switch")
    for df in (usage, plan, moves):
        df.unpersist()
    return stats
