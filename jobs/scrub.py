"""``scrub``: verify the CRC32C of every record of every pack (or a rotating fraction of the
packs per run), report what fails, and repair where another good copy of a block exists
(the hot copy of a pack being tiered, a pack being compacted away, a race loser's copy).

A repair writes a new pack with the damaged pack's live blocks, each read from a good copy,
and switches the blocks to it like compaction does; the damaged pack then retires.
"""

from __future__ import annotations

import logging

from pyspark.sql import DataFrame, functions as F
from pyspark.sql import types as T

from storage import extracts
from storage import maintenance as m
from storage.states import JobStatus, PackState

from .executor import read_records, store_for

log = logging.getLogger(__name__)

PACKS = "id string, url string, state string, size bigint"
BLOCKS = "id binary, pack_id string, offset_in_pack bigint, stored_size bigint"
RECORD = T.StructType([T.StructField("pack_id", T.StringType()), T.StructField("url", T.StringType()),
                       T.StructField("block_id", T.BinaryType()), T.StructField("offset", T.LongType()),
                       T.StructField("stored_size", T.LongType()), T.StructField("ok", T.BooleanType()),
                       T.StructField("error", T.StringType())])


def extract(ctx):
    packs = ctx.frame(extracts.packs("id", "url", "state", "size", states=(PackState.SEALED, PackState.RETIRING)), PACKS)
    blocks = ctx.frame(extracts.blocks("id", "pack_id", "offset_in_pack", "stored_size"), BLOCKS, table="blocks")
    return packs, blocks


def select_packs(packs: DataFrame, fraction: float, run_no: int) -> DataFrame:
    """All packs, or the ``run_no``-th of ``round(1 / fraction)`` stable slices of them."""
    if fraction >= 1:
        return packs
    slices = max(1, round(1 / fraction))
    return packs.where(F.pmod(F.hash("id"), F.lit(slices)) == F.lit(run_no % slices))


def live_damage(records: DataFrame, blocks: DataFrame) -> DataFrame:
    """Bad records a block row points to: (block_id, pack_id, error)."""
    bad = records.where(~F.col("ok"))
    return (bad.join(blocks, (bad.block_id == blocks.id) & (bad.pack_id == blocks.pack_id)
                     & (bad["offset"] == blocks["offset_in_pack"]))
            .select(bad.block_id, bad.pack_id, bad.error))


def _verify(cfg):
    def verify(row):
        store = store_for(cfg)
        try:
            recs, footer_error, _size = read_records(store, row.url, verify=True)
        except Exception as exc:  # noqa: BLE001 - a missing or unreadable pack is a finding
            return [(row.id, row.url, None, -1, 0, False, f"pack unreadable: {exc}")]
        out = [(row.id, row.url, r["block_id"], r["offset"], r["stored_size"], r["ok"], r["error"]) for r in recs]
        if footer_error:
            out.append((row.id, row.url, None, -1, 0, False, footer_error))
        return out
    return verify


def run(ctx) -> dict:
    j = ctx.cfg["jobs"]
    spark, store = ctx.spark, ctx.drive.blocks.packs
    from storage.jobruns import history
    run_no = sum(1 for r in history(ctx.sm, 10_000, "scrub") if r["status"] == JobStatus.OK)
    packs, blocks = extract(ctx)
    chosen = select_packs(packs, j["scrub_fraction"], run_no).cache()
    records = spark.createDataFrame(chosen.rdd.flatMap(_verify(cfg=ctx.cfg)), RECORD).cache()
    totals = records.agg(F.count(F.lit(1)).alias("n"), F.sum(F.col("stored_size") + 48).alias("b"),
                         F.sum(F.when(F.col("ok"), 0).otherwise(1)).alias("bad")).first()
    stats = {"packs_checked": chosen.count(), "records_checked": int(totals["n"] or 0),
             "bytes_checked": int(totals["b"] or 0), "bad_records": int(totals["bad"] or 0)}
    problems = [{"pack": r.pack_id, "block": bytes(r.block_id).hex() if r.block_id else None, "error": r.error}
                for r in records.where(~F.col("ok")).limit(100).collect()]
    stats["problems"] = problems
    for p in problems:
        ctx.say(f"BAD {p['pack']} {p['block'] or ''}: {p['error']}")
    damage = live_damage(records, blocks).collect()
    stats["live_blocks_damaged"] = len(damage)
    if ctx.dry_run or not damage:
        return stats
    stats.update(_repair(ctx, store, damage, packs, blocks))
    return stats


def _repair(ctx, store, damage, packs, blocks) -> dict:
    """Rewrite each damaged pack from good copies of its blocks found in other packs."""
    bad_ids = {bytes(d.block_id) for d in damage}
    damaged_packs = {d.pack_id for d in damage}
    others = [r for r in packs.collect() if r.id not in damaged_packs]
    copies: dict[bytes, m.Source] = {}
    for p in others:  # footers only: a few KiB per pack
        try:
            recs, _, _ = read_records(store, p.url)
        except Exception as exc:  # noqa: BLE001 - an unreadable other copy is simply not a source
            log.warning("pack %s unreadable, not a source for repair: %s", p.url, exc)
            continue
        for r in recs:
            if r["block_id"] in bad_ids and r["block_id"] not in copies:
                src = m.Source(r["block_id"], p.id, p.url, r["offset"], r["stored_size"])
                backend, key = store.backend_for(p.url)
                try:
                    from storage import pack as packfmt
                    packfmt.decode_block(backend.read_range(key, src.offset, 48 + src.stored_size),
                                         src.block_id, key)
                except Exception as exc:  # noqa: BLE001 - that copy is bad too
                    log.warning("copy of block %s in pack %s is bad too: %s", src.block_id.hex(), p.id, exc)
                    continue
                copies[r["block_id"]] = src
    pack_urls = {r.id: r.url for r in packs.collect()}
    repaired, unrepairable = 0, []
    for pack_id in sorted(damaged_packs):
        rows = blocks.where(F.col("pack_id") == pack_id).collect()
        sources = []
        missing = [bytes(r.id) for r in rows if bytes(r.id) in bad_ids and bytes(r.id) not in copies]
        if missing:
            unrepairable += [b.hex() for b in missing]
            continue
        for r in rows:
            bid = bytes(r.id)
            if bid in bad_ids:
                c = copies[bid]
                sources.append(m.Source(bid, c.pack_id, c.url, c.offset, c.stored_size, row_pack=pack_id))
            else:
                sources.append(m.Source(bid, pack_id, pack_urls[pack_id], r.offset_in_pack, r.stored_size))
        new_id = m.new_pack_id()
        key = store.pack_key(new_id)
        m.register_pack(ctx.sm, new_id, store.hot.url_for(key))
        size, checksum, moves, bad = m.write_pack(store, new_id, key, sources)
        out = m.switch_blocks(ctx.sm, new_id, size, checksum, moves)
        repaired += sum(1 for mv in moves if mv.block_id in bad_ids)
        ctx.say(f"repaired pack {pack_id}: {out['moved']} blocks moved to {new_id}")
    return {"blocks_repaired": repaired, "unrepairable": unrepairable}
