"""``dedup_scan``: find identical content stored more than once and keep one live copy.

- Identical whole files stored as different blocks (versions with the same size and
  SHA-256 but different block lists: written under other chunker settings, or before a
  block was known): each is switched to the blocks of the oldest such version, in one
  transaction per version (storage/maintenance.py ``merge_version_refs``); the blocks no
  longer used go to GC.
- The same block stored in several packs or tiers (the loser of a concurrent insert, a copy
  re-written while its original was marked, a pack being tiered): only the copy the block
  row points to is live; the others are dead bytes that ``compact`` reclaims. Reported.
"""

from __future__ import annotations

from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql import types as T

from storage import maintenance as m

from .executor import read_records, store_for

RECORD = T.StructType([T.StructField("pack_id", T.StringType()), T.StructField("block_id", T.BinaryType()),
                       T.StructField("offset", T.LongType()), T.StructField("stored_size", T.LongType())])


def extract(ctx):
    versions = ctx.frame("SELECT id, size, sha256 FROM file_versions", "id bigint, size bigint, sha256 binary",
                         table="file_versions", partition_column="id")
    refs = ctx.frame("SELECT version_id, seq, block_id FROM version_blocks",
                     "version_id bigint, seq bigint, block_id binary", table="version_blocks",
                     partition_column="version_id")
    blocks = ctx.frame("SELECT id, refcount, stored_size, pack_id, offset_in_pack FROM blocks",
                       "id binary, refcount bigint, stored_size bigint, pack_id string, offset_in_pack bigint",
                       table="blocks")
    packs = ctx.frame("SELECT id, url FROM packs WHERE state IN ('sealed', 'retiring')", "id string, url string")
    return versions, refs, blocks, packs


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


def _footers(cfg):
    def read(row):
        try:
            recs, _, _ = read_records(store_for(cfg), row.url)
        except Exception:  # noqa: BLE001 - scrub reports unreadable packs
            return []
        return [(row.id, r["block_id"], r["offset"], r["stored_size"]) for r in recs]
    return read


def run(ctx) -> dict:
    versions, refs, blocks, packs = extract(ctx)
    dups = duplicate_versions(versions, refs).cache()
    freed = bytes_freed(dups, refs, blocks).agg(F.count(F.lit(1)).alias("n"),
                                                F.coalesce(F.sum(F.col("stored_size") + 48), F.lit(0)).alias("b")).first()
    records = ctx.spark.createDataFrame(packs.rdd.flatMap(_footers(ctx.cfg)), RECORD)
    extra = extra_copies(records, blocks).agg(F.count(F.lit(1)).alias("n"),
                                              F.coalesce(F.sum(F.col("stored_size") + 48), F.lit(0)).alias("b")).first()
    stats = {"duplicate_versions": dups.count(), "blocks_freed_by_merge": int(freed["n"]),
             "bytes_saved_by_merge": int(freed["b"]), "extra_block_copies": int(extra["n"]),
             "extra_copy_bytes": int(extra["b"])}
    ctx.say(f"plan: merge {stats['duplicate_versions']} duplicate files (saves {stats['bytes_saved_by_merge']} bytes "
            f"after gc); {stats['extra_block_copies']} extra block copies ({stats['extra_copy_bytes']} bytes) "
            "are dead and left to compact")
    if ctx.dry_run:
        return stats
    merged = 0
    for r in dups.toLocalIterator():
        merged += 1 if m.merge_version_refs(ctx.sm, r.version_id, r.canonical_id) else 0
    stats["versions_merged"] = merged
    dups.unpersist()
    return stats
