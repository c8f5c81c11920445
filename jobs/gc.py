"""``gc``: purge trash past retention, prune the change feed past ``changes.retention_days``,
thin old versions by the retention policy (current versions are never thinned; the owner's
quota is credited in the same transaction), expire upload sessions (releasing their pins,
block lists and tus tails), mark blocks nothing uses, sweep marked blocks past the grace period,
give up on uploads that never committed, and leave the freed space to ``compact``.

The live set (every block a ref or an active pin names) is built in Spark from one
snapshot; any error while building it aborts the run before anything is marked or swept
(fail closed). The plan is only a pre-filter: every mark and every sweep re-checks
``refcount = 0``, "no ref", "no active pin" (and for the sweep ``gc_marked_at < cutoff``)
in the statement that changes the row (storage/maintenance.py).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, functions as F

from storage import extracts
from storage.changes import ChangeFeed
from storage import maintenance as m
from storage.quota import Retention
from storage.useradmin import UserAdmin

from . import humanize
from .hooks import step

BLOCKS = "id binary, refcount bigint, gc_marked_at timestamp_ntz, pack_id string, stored_size bigint"


class LiveSetError(RuntimeError):
    """The live set could not be built with confidence: GC does nothing this run."""


# ---- extract ---------------------------------------------------------------------------------

def extract(ctx):
    blocks = ctx.frame(extracts.blocks("id", "refcount", "gc_marked_at", "pack_id", "stored_size"), BLOCKS,
                       table="blocks")
    refs = ctx.frame(extracts.refs("block_id"), "block_id binary", table="version_blocks")
    pins = ctx.frame(extracts.pinned_blocks(), "block_id binary")
    return blocks, refs, pins


# ---- transform (pure) ------------------------------------------------------------------------

def live_set(refs: DataFrame, pins: DataFrame) -> DataFrame:
    """Every block id a ref or an active pin names (with repeats: the plans anti-join
    against it, so a distinct would only cost a shuffle)."""
    return refs.select("block_id").unionByName(pins.select("block_id"))


def plan_mark(blocks: DataFrame, live: DataFrame) -> DataFrame:
    """Blocks to mark: no refcount, not yet marked, and in no ref or pin."""
    dead = blocks.where((F.col("refcount") == 0) & F.col("gc_marked_at").isNull())
    return dead.join(live, dead.id == live.block_id, "left_anti").select("id", "pack_id", "stored_size")


def plan_sweep(blocks: DataFrame, live: DataFrame, cutoff: dt.datetime) -> DataFrame:
    """Blocks to sweep: marked before ``cutoff``, still with no refcount, in no ref or pin."""
    marked = blocks.where((F.col("refcount") == 0) & (F.col("gc_marked_at") < F.lit(cutoff)))
    return marked.join(live, marked.id == live.block_id, "left_anti").select("id", "pack_id", "stored_size")


def summarize(plan: DataFrame) -> dict:
    row = plan.agg(F.count(F.lit(1)).alias("n"),
                   F.coalesce(F.sum(F.col("stored_size") + 48), F.lit(0)).alias("bytes")).first()
    return {"blocks": int(row["n"]), "bytes": int(row["bytes"])}


def _ids(df: DataFrame) -> list[bytes]:
    return [bytes(r[0]) for r in df.select("id").toLocalIterator()]


# ---- run -------------------------------------------------------------------------------------

def run(ctx) -> dict:
    cfg, t = ctx.cfg, ctx.started
    retention = dt.timedelta(days=cfg["trash"]["retention_days"])
    open_grace = cfg["jobs"]["open_pack_grace_seconds"]
    stats: dict = {}

    policy = Retention.from_config(cfg)
    if ctx.dry_run:
        ctx.say("planning (dry run): nothing will be changed")
        stats["deleted_users_waiting"] = UserAdmin(ctx.drive).count_deleted()
        stats.update(m.apply_retention(ctx.sm, policy, t, cfg["quota"]["block_floor_bytes"],
                                       cfg["retention"]["batch_nodes"], dry_run=True))
    else:
        purged = 0
        while True:
            n = ctx.drive.purge_expired_trash(t - retention)
            purged += n
            if n == 0:
                break
        stats["trash_purged"] = purged
        ctx.say(f"purged {purged} trash entries older than {cfg['trash']['retention_days']} days")
        # Deleted accounts go once their trash is purged; their blocks are swept below, as any.
        stats.update(UserAdmin(ctx.drive).remove_deleted())
        step("gc:after_purge")
        stats.update(m.apply_retention(ctx.sm, policy, t, cfg["quota"]["block_floor_bytes"],
                                       cfg["retention"]["batch_nodes"]))
        ctx.say(f"thinned {stats['versions_thinned']} old versions of {stats['retention_files_checked']} files "
                f"({humanize.size(stats['version_bytes_freed'])} of quota freed)")
        stats["changes_pruned"] = ChangeFeed(ctx.sm).prune(t - dt.timedelta(days=cfg["changes"]["retention_days"]))
        ctx.say(f"pruned {stats['changes_pruned']} change-feed entries older than "
                f"{cfg['changes']['retention_days']:g} days")
        stats.update(m.expire_upload_sessions(ctx.sm, t))
        stats["tails_removed"] = m.remove_stale_tails(ctx.sm, ctx.drive.blocks.packs)
        step("gc:after_expire")

    try:
        blocks, refs, pins = extract(ctx)
        if not ctx.safety.honour_pins:  # negative control only
            pins = pins.limit(0)
        blocks = blocks.cache()
        live = live_set(refs, pins).cache()
        n_live, n_blocks = live.limit(1).count(), blocks.count()
        with_refs = blocks.where(F.col("refcount") > 0).count()
        if n_live == 0 and with_refs > 0:
            raise LiveSetError(f"no refs found, but {with_refs} blocks have a refcount")
    except Exception as exc:
        raise LiveSetError(f"building the live set failed; nothing marked or swept: {exc}") from exc
    stats.update(blocks=n_blocks)

    to_mark = plan_mark(blocks, live)
    cutoff = m.sweep_cutoff(ctx.sm, t, ctx.grace, open_grace, ctx.safety)
    to_sweep = plan_sweep(blocks, live, cutoff)
    stats["plan_mark"], stats["plan_sweep"] = summarize(to_mark), summarize(to_sweep)
    stats["sweep_cutoff"] = cutoff.isoformat()
    ctx.say(f"plan: mark {stats['plan_mark']['blocks']} blocks ({humanize.size(stats['plan_mark']['bytes'])}), "
            f"sweep {stats['plan_sweep']['blocks']} blocks ({humanize.size(stats['plan_sweep']['bytes'])})")
    if ctx.dry_run:
        blocks.unpersist()
        live.unpersist()
        return stats

    stats["marked"] = m.mark_blocks(ctx.sm, _ids(to_mark), t, ctx.safety)
    step("gc:after_mark")
    swept = m.sweep_blocks(ctx.sm, _ids(to_sweep), cutoff, ctx.safety)
    stats.update(swept=swept.blocks, bytes_freed=swept.bytes, packs_with_freed_space=len(swept.packs))
    ctx.say(f"marked {stats['marked']}, swept {swept.blocks} blocks ({humanize.size(swept.bytes)}) in {len(swept.packs)} packs")
    step("gc:after_sweep")
    if ctx.safety.honour_inflight:
        abandoned = m.abandon_open_packs(ctx.sm, ctx.drive.blocks.packs, t - dt.timedelta(seconds=open_grace))
    else:  # negative control: treat every open pack as abandoned
        abandoned = m.abandon_open_packs(ctx.sm, ctx.drive.blocks.packs, t + dt.timedelta(seconds=1))
    stats["open_packs_abandoned"] = len(abandoned)
    step("gc:after_abandon")
    blocks.unpersist()
    live.unpersist()
    # The freed space is reclaimed by compact: its plan rewrites packs whose dead ratio passed
    # the threshold and retires packs left with no block.
    m.retire_packs(ctx.sm, swept.packs, t)
    return stats
