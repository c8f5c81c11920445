"""``tier``: packs not read for ``tier_after_days`` move to the cold tier (S3).

Order: (1) delete hot copies retired a grace period ago; (2) register the cold copy's row
``open``, copy the pack on an executor and verify it by reading it back (CRC32C against
the checksum recorded at seal); (3) switch in one transaction: the blocks point to the cold
copy (same offsets) and the hot copy starts retiring; readers holding the old location keep
reading it for the grace period. Reads of tiered blocks are ranged GETs, unchanged.
Last-read times come from the read path's batched tracker (storage/reads.py).
"""

from __future__ import annotations

import datetime as dt

from pyspark.sql import DataFrame, functions as F

from storage import extracts
from storage import maintenance as m
from storage.states import PackState

from . import humanize
from .executor import store_for
from .hooks import step

PACKS = ("id string, url string, state string, size bigint, checksum string, created_at timestamp_ntz, "
         "sealed_at timestamp_ntz, last_read_at timestamp_ntz")


def extract(ctx):
    return ctx.frame(extracts.packs("id", "url", "state", "size", "checksum", "created_at", "sealed_at", "last_read_at"),
                     PACKS)


def plan_tier(packs: DataFrame, hot_prefix: str, before: dt.datetime) -> DataFrame:
    """Sealed packs on the hot tier last read (or, never read, sealed) before ``before``."""
    last = F.coalesce("last_read_at", "sealed_at", "created_at")
    return packs.where((F.col("state") == PackState.SEALED) & F.col("url").startswith(hot_prefix) & (last < F.lit(before)))


def _copy(cfg, targets):
    def copy(row):
        store = store_for(cfg)
        new_id, key = targets[row.id]
        size, checksum = m.copy_pack(store, row.url, store.cold, key)
        if row.checksum and row.checksum != checksum:
            return (row.id, new_id, size, checksum, f"pack {row.id} does not match its recorded checksum")
        return (row.id, new_id, size, checksum, None)
    return copy


def run(ctx) -> dict:
    cfg, t = ctx.cfg, ctx.started
    store = ctx.drive.blocks
    if store.cold is None:
        ctx.say("no cold tier configured (storage.cold_url): nothing to do")
        return {"skipped": "no cold tier"}
    store.read_tracker.flush()
    hot_prefix = store.hot.url.split("?", 1)[0].rstrip("/") + "/"
    before = t - dt.timedelta(days=cfg["jobs"]["tier_after_days"])
    plan = plan_tier(extract(ctx), hot_prefix, before).cache()
    row = plan.agg(F.count(F.lit(1)).alias("n"), F.coalesce(F.sum("size"), F.lit(0)).alias("b")).first()
    stats = {"packs_to_tier": int(row["n"]), "bytes_to_tier": int(row["b"])}
    ctx.say(f"plan: move {stats['packs_to_tier']} packs ({humanize.size(stats['bytes_to_tier'])}) to the cold tier")
    if ctx.dry_run:
        return stats
    stats.update(m.delete_retired_packs(ctx.sm, store.packs, t - dt.timedelta(seconds=ctx.grace)))
    step("tier:after_delete")
    rows = plan.collect()
    targets = {}
    for r in rows:
        new_id = m.new_pack_id()
        key = store.pack_key(new_id)
        m.register_pack(ctx.sm, new_id, store.cold.url_for(key))
        targets[r.id] = (new_id, key)
    copied = plan.rdd.map(_copy(cfg, targets)).collect() if rows else []
    step("tier:after_copy")
    moved, errors = 0, []
    for old_id, new_id, size, checksum, err in copied:
        if err:
            errors.append(err)  # the open cold copy is reclaimed by GC; scrub looks at the pack
            continue
        moved += m.switch_pack_location(ctx.sm, old_id, new_id, size, checksum, t)
    stats.update(packs_tiered=len(copied) - len(errors), blocks_moved=moved, errors=errors,
                 bytes_copied=sum(c[2] for c in copied))
    ctx.say(f"tiered {stats['packs_tiered']} packs ({humanize.size(stats['bytes_copied'])})")
    step("tier:after_switch")
    plan.unpersist()
    return stats
