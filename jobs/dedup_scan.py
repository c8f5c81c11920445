"""``dedup_scan``: find identical content stored more than once and keep one live copy.

- Identical whole files stored as different blocks (versions with the same size and
  SHA-256 but different block lists: written under other chunker settings, or before a
  block was known): each is switched to the blocks of the oldest such version, in one
  transaction per version (storage/maintenance.py ``merge_version_refs``); the blocks no
  longer used go to GC.
- The same block stored in several sealed packs or tiers (the loser of a concurrent
  insert, a copy written again while its original was marked): a block row names one copy,
  the others are dead bytes. The merge points each such block at its copy in the pack that
  holds the most live bytes (the pack that stays anyway), so packs whose blocks all have a
  better copy elsewhere are left with nothing live and retire whole, with no byte copied;
  their files go after the grace period (``compact``). Every copy a block is moved to is
  read back on the executors and must decode to its SHA-256 first. Extra copies left in
  packs that still hold live blocks are dead bytes that ``compact`` reclaims by its dead
  ratio rule; the run reports them.

A dry run prints the plan and the bytes it would save; nothing is written.
"""

from __future__ import annotations

import hashlib
import logging

from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql import types as T

from storage import extracts
from storage import maintenance as m
from storage import pack as packfmt

from . import humanize
from .executor import read_records, store_for

log = logging.getLogger(__name__)

RECORD = T.StructType([T.StructField("pack_id", T.StringType()), T.StructField("block_id", T.BinaryType()),
                       T.StructField("offset", T.LongType()), T.StructField("stored_size", T.LongType()),
                       T.StructField("codec", T.IntegerType())])
RH = packfmt.RECORD_HEADER


def extract(ctx):
    versions = ctx.frame(extracts.versions("id", "size", "sha256"), "id bigint, size bigint, sha256 binary",
                         table="file_versions", partition_column="id")
    refs = ctx.frame(extracts.refs("version_id", "seq", "block_id"),
                     "version_id bigint, seq bigint, block_id binary", table="version_blocks",
                     partition_column="version_id")
    blocks = ctx.frame(extracts.blocks("id", "refcount", "stored_size", "pack_id", "offset_in_pack"),
                       "id binary, refcount bigint, stored_size bigint, pack_id string, offset_in_pack bigint",
                       table="blocks")
    # Only sealed packs: a retiring pack's file is going away whatever it holds.
    packs = ctx.frame(extracts.packs("id", "url", "size"), "id string, url string, size bigint")
    return versions, refs, blocks, packs


# ---- transform (pure) ------------------------------------------------------------------------

def duplicate_versions(versions: DataFrame, refs: DataFrame) -> DataFrame:
    """(version_id, canonical_id): versions with the content of an older version (same size
    and SHA-256) but a different block list."""
    sig = (refs.groupBy("version_id")
           .agg(F.sha2(F.concat_ws(",", F.transform(F.sort_array(F.collect_list(F.struct("seq", "block_id"))),
                                                    lambda x: F.hex(x["block_id"]))), 256).alias("sig")))
    v = versions.join(sig, versions.id == sig.version_id, "left").select("id", "size", "sha256",
                                                                         F.coalesce("sig", F.lit("")).alias("sig"))
    w = Window.partitionBy("size", "sha256").orderBy("id")
    first = v.withColumn("canonical_id", F.first("id").over(w)).withColumn("canonical_sig", F.first("sig").over(w))
    return (first.where((F.col("id") != F.col("canonical_id")) & (F.col("sig") != F.col("canonical_sig"))
                        & (F.col("size") > 0))
            .select(F.col("id").alias("version_id"), "canonical_id"))


def bytes_freed(dups: DataFrame, refs: DataFrame, blocks: DataFrame) -> DataFrame:
    """Blocks that no ref would name once the duplicates use their canonical's blocks."""
    dropped = refs.join(dups, "version_id").groupBy("block_id").agg(F.count(F.lit(1)).alias("dropped"))
    gained = refs.join(dups.select(F.col("canonical_id").alias("version_id")).distinct(), "version_id") \
        .select("block_id").distinct()
    j = dropped.join(blocks, dropped.block_id == blocks.id).join(gained, "block_id", "left_anti")
    return j.where(F.col("refcount") <= F.col("dropped")).select("block_id", "stored_size")


def extra_copies(records: DataFrame, blocks: DataFrame) -> DataFrame:
    """Pack records of a block other than the one its row points to: (block_id, pack_id, stored_size)."""
    live = blocks.select(F.col("id").alias("block_id"), F.col("pack_id").alias("live_pack"),
                         F.col("offset_in_pack").alias("live_offset"))
    j = records.join(live, "block_id")
    return j.where((F.col("pack_id") != F.col("live_pack")) | (F.col("offset") != F.col("live_offset"))) \
        .select("block_id", "pack_id", "stored_size")


def plan_copy_merge(records: DataFrame, blocks: DataFrame, packs: DataFrame) -> DataFrame:
    """For every block with more than one copy in sealed packs, the copy to keep: the one in
    the pack with the most live bytes (then the copy its row names, then the lowest pack id
    and offset, so the plan is deterministic). Returns the blocks whose row must move:
    (block_id, from_pack, from_offset, to_pack, to_offset, codec, stored_size, url)."""
    live = blocks.groupBy("pack_id").agg(F.sum(F.col("stored_size") + RH).alias("live"))
    cur = blocks.select(F.col("id").alias("block_id"), F.col("pack_id").alias("from_pack"),
                        F.col("offset_in_pack").alias("from_offset"))
    copies = (records.join(packs.select(F.col("id").alias("pack_id"), "url"), "pack_id")
              .join(live, "pack_id", "left").fillna(0, ["live"])
              .join(cur, "block_id")
              .withColumn("n", F.count(F.lit(1)).over(Window.partitionBy("block_id")))
              .where(F.col("n") > 1))
    # Only blocks whose row names one of these copies (a row elsewhere is not ours to move).
    named = F.max(((F.col("pack_id") == F.col("from_pack")) & (F.col("offset") == F.col("from_offset")))
                  .cast("int")).over(Window.partitionBy("block_id"))
    order = Window.partitionBy("block_id").orderBy(
        F.col("live").desc(), ((F.col("pack_id") == F.col("from_pack")) & (F.col("offset") == F.col("from_offset"))).desc(),
        "pack_id", "offset")
    best = copies.withColumn("named", named).where(F.col("named") == 1).withColumn("r", F.row_number().over(order)) \
        .where(F.col("r") == 1)
    return (best.where((F.col("pack_id") != F.col("from_pack")) | (F.col("offset") != F.col("from_offset")))
            .select("block_id", "from_pack", "from_offset", F.col("pack_id").alias("to_pack"),
                    F.col("offset").alias("to_offset"), "codec", "stored_size", "url"))


def packs_emptied(repoints: DataFrame, blocks: DataFrame, packs: DataFrame) -> DataFrame:
    """Packs every block of which moves to another copy: they retire whole. (id, size)"""
    held = blocks.groupBy(F.col("pack_id").alias("id")).agg(F.count(F.lit(1)).alias("held"))
    leaving = repoints.groupBy(F.col("from_pack").alias("id")).agg(F.count(F.lit(1)).alias("leaving"))
    return held.join(leaving, "id").where(F.col("held") == F.col("leaving")).join(packs, "id").select("id", "size")


# ---- executors -------------------------------------------------------------------------------

def _footers(cfg):
    def read(row):
        try:
            recs, _, _ = read_records(store_for(cfg), row.url)
        except Exception as exc:  # noqa: BLE001 - scrub reports unreadable packs
            log.warning("pack %s unreadable, its blocks not scanned: %s", row.url, exc)
            return []
        return [(row.id, r["block_id"], r["offset"], r["stored_size"], r["codec"]) for r in recs]
    return read


def _verify_copies(cfg):
    """Read each copy a block is to move to and check it decodes to its SHA-256."""
    def verify(item):
        url, rows = item
        store = store_for(cfg)
        backend, key = store.backend_for(url)
        ok, bad = [], []
        for r in rows:
            bid, off, stored = r[0], r[4], r[6]
            try:
                raw = packfmt.decode_block(backend.read_range(key, off, RH + stored), bid, f"{url} offset {off}")
                if hashlib.sha256(raw).digest() != bid:
                    raise ValueError(f"{url} offset {off}: bytes do not hash to {bid.hex()}")
                ok.append(r)
            except Exception as exc:  # noqa: BLE001 - that copy is not used; reported
                bad.append((bid, url, str(exc)))
        return ok, bad
    return verify


def run(ctx) -> dict:
    versions, refs, blocks, packs = extract(ctx)
    dups = duplicate_versions(versions, refs).cache()
    freed = bytes_freed(dups, refs, blocks).agg(F.count(F.lit(1)).alias("n"),
                                                F.coalesce(F.sum(F.col("stored_size") + RH), F.lit(0)).alias("b")).first()
    records = ctx.spark.createDataFrame(packs.rdd.flatMap(_footers(ctx.cfg)), RECORD).cache()
    extra = extra_copies(records, blocks).agg(F.count(F.lit(1)).alias("n"),
                                              F.coalesce(F.sum(F.col("stored_size") + RH), F.lit(0)).alias("b")).first()
    repoints = plan_copy_merge(records, blocks, packs).cache()
    emptied = packs_emptied(repoints, blocks, packs).agg(F.count(F.lit(1)).alias("n"),
                                                        F.coalesce(F.sum("size"), F.lit(0)).alias("b")).first()
    stats = {"duplicate_versions": dups.count(), "blocks_freed_by_merge": int(freed["n"]),
             "bytes_saved_by_merge": int(freed["b"]), "extra_block_copies": int(extra["n"]),
             "extra_copy_bytes": int(extra["b"]), "blocks_to_repoint": repoints.count(),
             "packs_emptied_by_repoint": int(emptied["n"]), "bytes_saved_by_repoint": int(emptied["b"])}
    stats["bytes_saved"] = stats["bytes_saved_by_merge"] + stats["bytes_saved_by_repoint"]
    ctx.say(f"plan: merge {stats['duplicate_versions']} duplicate files (saves {humanize.size(stats['bytes_saved_by_merge'])} "
            f"after gc); {stats['extra_block_copies']} extra block copies ({humanize.size(stats['extra_copy_bytes'])}): "
            f"point {stats['blocks_to_repoint']} blocks at their copy in a fuller pack, which empties "
            f"{stats['packs_emptied_by_repoint']} packs ({humanize.size(stats['bytes_saved_by_repoint'])}, freed after the "
            "grace period); the rest are dead bytes left to compact")
    try:
        if ctx.dry_run:
            return stats
        merged = 0
        for r in dups.toLocalIterator():
            merged += 1 if m.merge_version_refs(ctx.sm, r.version_id, r.canonical_id) else 0
        stats["versions_merged"] = merged
        by_url: dict[str, list] = {}
        for r in repoints.toLocalIterator():
            by_url.setdefault(r.url, []).append((bytes(r.block_id), r.from_pack, r.from_offset, r.to_pack,
                                                 r.to_offset, r.codec, r.stored_size))
        checked = (ctx.spark.sparkContext.parallelize(list(by_url.items()), max(1, min(len(by_url), 64)))
                   .map(_verify_copies(ctx.cfg)).collect()) if by_url else []
        good = [m.Repoint(*r) for ok, _ in checked for r in ok]
        bad = [{"block": b.hex(), "copy": u, "error": e} for _, nok in checked for b, u, e in nok]
        out = m.repoint_blocks(ctx.sm, good, ctx.started)
        stats.update(blocks_repointed=out["moved"], packs_retired=out["retired"], bad_copies=bad[:100])
        ctx.say(f"merged {merged} files; pointed {out['moved']} blocks at another copy, {out['retired']} packs "
                f"retired; {len(bad)} copies failed their check and were not used")
        return stats
    finally:
        for df in (dups, records, repoints):
            df.unpersist()
