"""``report``: what the store holds and what it saves, as one snapshot per run.

Figures (all bytes exact integers; see storage/reports.py for the stored shape):

- ``logical_bytes``: the sum of every file's current-version size, for files not purged
  (files in the trash still count: their bytes are still kept, as the quota counts them);
  ``trash_bytes`` the part of it in the trash; ``logical_bytes_all_versions`` every version.
- ``unique_raw_bytes``: the raw sizes of the distinct blocks some ref uses (the live blocks);
  ``stored_bytes``: the same blocks' stored (compressed) sizes.
- ``dedup_ratio`` = logical / unique raw (``dedup_ratio_all_versions`` with every version);
  ``compression_ratio`` = unique raw / stored.
- ``pack_bytes``/``packs``: sealed pack files, per tier too (``tiers``).
- garbage pending: ``garbage_blocks``/``garbage_block_bytes`` blocks no ref or active upload
  uses (GC sweeps them), ``garbage_unindexed_bytes`` records in sealed packs no block row
  points to any more (compact rewrites them away), ``garbage_retiring_bytes`` packs retired
  and waiting out their grace period; ``garbage_bytes`` is the physical total (a dead
  block's record header and index entry included), and ``garbage_rewrite_ready_bytes`` the
  dead bytes in packs past ``jobs.dead_ratio`` (the next compact's share).
- traffic per day from ``traffic_daily`` and job history from ``job_runs``, over
  ``jobs.report_days``.

Extract (metadata into DataFrames) -> pure transforms (below, tested on small frames) ->
load: the Parquet copy under ``reports/`` on the block backend first, then the snapshot rows
that point to it, in one transaction.
"""

from __future__ import annotations

import datetime as dt
import uuid

from pyspark.sql import DataFrame, functions as F

from storage import extracts, jobruns
from storage import pack as packfmt
from storage import reports as rep
from storage.states import JobStatus, PackState

from . import humanize

USERS = "id bigint, email string, used_bytes bigint, quota_bytes bigint"
FILES = "owner_id bigint, size bigint, trashed bigint"
VERSIONS = "owner_id bigint, size bigint"
BLOCKS = "id binary, size bigint, stored_size bigint, pack_id string"
PACKS = "id string, tier string, state string, size bigint"
RUNS = "id bigint, job string, status string, started_at timestamp_ntz, finished_at timestamp_ntz, stats string"
TRAFFIC = "day string, user_id bigint, uploads bigint, downloads bigint, bytes_in bigint, bytes_out bigint"

# A block's physical cost in its pack beyond its payload: the record header and the footer
# index entry. A pack's fixed cost: header and trailer.
PER_BLOCK = packfmt.RECORD_HEADER + packfmt.INDEX_ENTRY
PER_PACK = packfmt.HEADER_SIZE + packfmt.TRAILER_SIZE

# Where a run's stats hold what it freed, in order of preference: today's one name, then the
# spellings of runs recorded before it (storage.jobruns).
FREED_KEYS = (jobruns.BYTES_FREED, *jobruns.OLD_BYTES_FREED)


# ---- extract ---------------------------------------------------------------------------------

def extract(ctx, since: dt.datetime) -> dict[str, DataFrame]:
    f = ctx.frame
    return {
        "users": f(extracts.users("id", "email", "used_bytes", "quota_bytes"), USERS, table="users", partition_column="id"),
        "files": f(extracts.current_files(), FILES),
        "versions": f(extracts.version_owners("size"), VERSIONS),
        "blocks": f(extracts.blocks("id", "size", "stored_size", "pack_id"), BLOCKS, table="blocks"),
        "refs": f(extracts.referenced_blocks(), "block_id binary", table="version_blocks"),
        "pins": f(extracts.pinned_blocks(distinct=True), "block_id binary"),
        "packs": f(extracts.packs_not_deleted("id", "tier", "state", "size"), PACKS),
        "runs": f(extracts.job_runs_since(since), RUNS),
        "traffic": f(extracts.traffic_since(since.date()), TRAFFIC),
    }


# ---- transform (pure) ------------------------------------------------------------------------

def user_usage(users: DataFrame, files: DataFrame, versions: DataFrame) -> DataFrame:
    """One row per user: files, logical bytes (current versions), of which in the trash, all
    versions' bytes, and the quota figures."""
    cur = files.groupBy("owner_id").agg(
        F.count(F.lit(1)).alias("files"), F.sum("size").alias("logical_bytes"),
        F.sum(F.when(F.col("trashed") == 1, F.col("size")).otherwise(F.lit(0))).alias("trash_bytes"))
    allv = versions.groupBy(F.col("owner_id").alias("v_owner")).agg(F.sum("size").alias("all_versions_bytes"))
    j = users.join(cur, users.id == cur.owner_id, "left").join(allv, users.id == allv.v_owner, "left")
    zero = F.lit(0).cast("bigint")
    return j.select(F.col("id").alias("user_id"), "email",
                    F.coalesce("files", zero).alias("files"), F.coalesce("logical_bytes", zero).alias("logical_bytes"),
                    F.coalesce("trash_bytes", zero).alias("trash_bytes"),
                    F.coalesce("all_versions_bytes", zero).alias("all_versions_bytes"), "used_bytes", "quota_bytes")


def block_states(blocks: DataFrame, refs: DataFrame, pins: DataFrame) -> DataFrame:
    """Each block with its state: ``live`` (a ref uses it), ``pinned`` (only an unfinished
    upload holds it) or ``dead`` (garbage for GC)."""
    r = refs.select(F.col("block_id").alias("r_id")).distinct().withColumn("has_ref", F.lit(True))
    p = pins.select(F.col("block_id").alias("p_id")).distinct().withColumn("has_pin", F.lit(True))
    j = blocks.join(r, blocks.id == r.r_id, "left").join(p, blocks.id == p.p_id, "left")
    state = (F.when(F.col("has_ref").isNotNull(), F.lit("live"))
             .when(F.col("has_pin").isNotNull(), F.lit("pinned")).otherwise(F.lit("dead")))
    return j.select("id", "size", "stored_size", "pack_id", state.alias("state"))


def block_totals(states: DataFrame) -> DataFrame:
    """(state, blocks, raw_bytes, stored_bytes) per block state."""
    return states.groupBy("state").agg(F.count(F.lit(1)).alias("blocks"), F.sum("size").alias("raw_bytes"),
                                       F.sum("stored_size").alias("stored_bytes"))


def pack_usage(packs: DataFrame, states: DataFrame) -> DataFrame:
    """Each pack (not deleted) with the stored bytes of its live blocks, the physical bytes of
    its dead blocks' records, and (sealed packs) the bytes of records no block row points to."""
    per = states.groupBy(F.col("pack_id").alias("b_pack")).agg(
        F.sum(F.when(F.col("state") != "dead", F.col("stored_size")).otherwise(F.lit(0))).alias("live_stored"),
        F.sum(F.when(F.col("state") == "dead", F.col("stored_size") + PER_BLOCK).otherwise(F.lit(0))).alias("dead_records"),
        F.sum(F.col("stored_size") + PER_BLOCK).alias("indexed"))
    j = packs.join(per, packs.id == per.b_pack, "left").fillna(0, ["live_stored", "dead_records", "indexed"])
    unindexed = F.when(F.col("state") == PackState.SEALED,
                       F.greatest(F.col("size") - F.lit(PER_PACK) - F.col("indexed"), F.lit(0))).otherwise(F.lit(0))
    return j.select("id", "tier", "state", "size", "live_stored", "dead_records", unindexed.alias("unindexed"))


def tier_usage(usage: DataFrame) -> DataFrame:
    """(tier, packs, pack_bytes, stored_bytes, retiring_packs, retiring_bytes): sealed packs and
    the live stored bytes in them; retiring packs apart. Open packs (uploads in flight) are left out."""
    sealed, retiring = F.col("state") == PackState.SEALED, F.col("state") == PackState.RETIRING
    zero = F.lit(0).cast("bigint")
    return (usage.where(sealed | retiring).groupBy("tier").agg(
        F.sum(F.when(sealed, 1).otherwise(0)).cast("bigint").alias("packs"),
        F.sum(F.when(sealed, F.col("size")).otherwise(zero)).alias("pack_bytes"),
        F.sum(F.when(sealed, F.col("live_stored")).otherwise(zero)).alias("stored_bytes"),
        F.sum(F.when(retiring, 1).otherwise(0)).cast("bigint").alias("retiring_packs"),
        F.sum(F.when(retiring, F.col("size")).otherwise(zero)).alias("retiring_bytes"))
        .orderBy("tier"))


def garbage(usage: DataFrame, *, dead_ratio: float, small_below: int) -> DataFrame:
    """One row: dead records and unindexed bytes in sealed packs, retiring bytes, the dead
    bytes of packs past ``dead_ratio``, and how many sealed packs are under ``small_below``."""
    sealed = usage.where(F.col("state") == PackState.SEALED)
    dead = F.col("dead_records") + F.col("unindexed")
    ready = F.when((F.col("size") > 0) & (dead >= F.col("size") * F.lit(dead_ratio)), dead).otherwise(F.lit(0))
    g = sealed.agg(F.coalesce(F.sum("dead_records"), F.lit(0)).cast("bigint").alias("dead_records"),
                   F.coalesce(F.sum("unindexed"), F.lit(0)).cast("bigint").alias("unindexed"),
                   F.coalesce(F.sum(ready), F.lit(0)).cast("bigint").alias("rewrite_ready"),
                   F.coalesce(F.sum(F.when(F.col("size") < small_below, 1).otherwise(0)), F.lit(0))
                   .cast("bigint").alias("small_packs"))
    r = usage.where(F.col("state") == PackState.RETIRING).agg(
        F.coalesce(F.sum("size"), F.lit(0)).cast("bigint").alias("retiring"))
    return g.crossJoin(r)


def traffic_by_day(traffic: DataFrame) -> DataFrame:
    return (traffic.groupBy("day").agg(*(F.sum(c).alias(c) for c in ("uploads", "downloads", "bytes_in", "bytes_out")))
            .orderBy("day"))


def _first_key(keys) -> F.Column:
    return F.coalesce(*(F.get_json_object("stats", f"$.{k}").cast("bigint") for k in keys))


def job_history(runs: DataFrame) -> DataFrame:
    """One row per run: seconds (from the runner's stats, else the timestamps), rows handled,
    bytes freed (the first of the keys the jobs report it under), dry run or not."""
    by_clock = (F.unix_timestamp(F.col("finished_at").cast("timestamp"))
                - F.unix_timestamp(F.col("started_at").cast("timestamp"))).cast("double")
    return runs.select(
        "id", "job", "status", "started_at", "finished_at",
        F.coalesce(F.get_json_object("stats", "$.seconds").cast("double"), by_clock).alias("seconds"),
        _first_key(jobruns.ROWS_KEYS).alias("rows"), _first_key(FREED_KEYS).alias("bytes_freed"),
        F.coalesce(F.get_json_object("stats", "$.dry_run").cast("boolean"), F.lit(False)).alias("dry_run"))


def job_summary(history: DataFrame) -> DataFrame:
    return (history.groupBy("job").agg(
        F.count(F.lit(1)).alias("runs"), F.sum(F.when(F.col("status") == JobStatus.OK, 1).otherwise(0)).alias("ok"),
        F.sum(F.when(F.col("status") != JobStatus.OK, 1).otherwise(0)).alias("not_ok"),
        F.avg("seconds").alias("avg_seconds"), F.max("started_at").alias("last_started_at"),
        F.coalesce(F.sum(F.when(~F.col("dry_run"), F.col("bytes_freed"))), F.lit(0)).cast("bigint").alias("bytes_freed"))
        .orderBy("job"))


def _ratio(a: int, b: int) -> float | None:
    return a / b if b else None


def headline(users: dict, blocks: dict[str, dict], tiers: list[dict], garbage_row: dict,
             traffic: list[dict], runs: list[dict]) -> dict:
    """The headline figures from the collected aggregates (pure Python: exact integer sums,
    ratios divided once)."""
    live = blocks.get("live", {})
    dead = blocks.get("dead", {})
    pinned = blocks.get("pinned", {})
    unique_raw, stored = int(live.get("raw_bytes") or 0), int(live.get("stored_bytes") or 0)
    logical, all_versions = users["logical_bytes"], users["all_versions_bytes"]
    dead_blocks = int(dead.get("blocks") or 0)
    garbage_records = int(garbage_row["dead_records"])
    out = {
        "users": users["users"], "files": users["files"],
        "logical_bytes": logical, "trash_bytes": users["trash_bytes"],
        "logical_bytes_all_versions": all_versions, "used_bytes": users["used_bytes"],
        "unique_blocks": int(live.get("blocks") or 0), "unique_raw_bytes": unique_raw, "stored_bytes": stored,
        "dedup_ratio": _ratio(logical, unique_raw),
        "dedup_ratio_all_versions": _ratio(all_versions, unique_raw),
        "compression_ratio": _ratio(unique_raw, stored),
        "packs": sum(t["packs"] for t in tiers), "pack_bytes": sum(t["pack_bytes"] for t in tiers),
        "pinned_blocks": int(pinned.get("blocks") or 0), "pinned_bytes": int(pinned.get("stored_bytes") or 0),
        "garbage_blocks": dead_blocks, "garbage_block_bytes": int(dead.get("stored_bytes") or 0),
        "garbage_unindexed_bytes": int(garbage_row["unindexed"]),
        "garbage_retiring_bytes": int(garbage_row["retiring"]),
        "garbage_rewrite_ready_bytes": int(garbage_row["rewrite_ready"]),
        "small_packs": int(garbage_row["small_packs"]),
        "uploads": sum(d["uploads"] for d in traffic), "downloads": sum(d["downloads"] for d in traffic),
        "bytes_in": sum(d["bytes_in"] for d in traffic), "bytes_out": sum(d["bytes_out"] for d in traffic),
        "job_runs": len(runs), "job_runs_failed": sum(1 for r in runs if r["status"] not in ("ok", "running")),
    }
    # Dead blocks' records sit in sealed (or retiring) packs; count them once.
    out["garbage_bytes"] = garbage_records + out["garbage_unindexed_bytes"] + out["garbage_retiring_bytes"]
    return out


# ---- load ------------------------------------------------------------------------------------

def _rows(df: DataFrame) -> list[dict]:
    return [r.asDict() for r in df.collect()]


def _jsonable(rows: list[dict]) -> list[dict]:
    return [{k: (v.isoformat() + "Z" if isinstance(v, dt.datetime) else v) for k, v in r.items()} for r in rows]


class _Sink:
    """A backend's write stream as the file object pyarrow wants (it asks where it is)."""

    def __init__(self, stream):
        self.stream, self.pos, self.closed = stream, 0, False

    def write(self, b) -> int:
        self.stream.write(b)
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        pass

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.stream.close()


def write_parquet(backend, key: str, batches, schema) -> None:
    """Stream record batches into one Parquet object; its close makes it durable."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    sink = _Sink(backend.create(key))
    try:
        with pq.ParquetWriter(pa.PythonFile(sink, mode="w"), schema) as w:
            for b in batches:
                w.write_table(b)
    finally:
        sink.close()


def _df_batches(df: DataFrame, n: int = 50_000):
    """A DataFrame as Arrow tables of at most ``n`` rows, fetched a partition at a time."""
    import pyarrow as pa
    buf = []
    for r in df.toLocalIterator():
        buf.append(r.asDict())
        if len(buf) >= n:
            yield pa.Table.from_pylist(buf)
            buf = []
    if buf:
        yield pa.Table.from_pylist(buf)


def save_parquet(backend, prefix: str, frames: dict[str, DataFrame], head: dict) -> str:
    import pyarrow as pa
    for name, df in frames.items():
        schema = df.limit(0).toArrow().schema
        write_parquet(backend, f"{prefix}/{name}.parquet",
                      (t.cast(schema) for t in _df_batches(df)), schema)
    table = pa.Table.from_pylist([head])
    write_parquet(backend, f"{prefix}/headline.parquet", [table], table.schema)
    from storage.config import mask_url
    return mask_url(backend.url_for(prefix))  # stored and shown: never with credentials


# ---- run -------------------------------------------------------------------------------------

def run(ctx) -> dict:
    j = ctx.cfg["jobs"]
    t = ctx.started
    since = t - dt.timedelta(days=j["report_days"])
    x = extract(ctx, since)
    users = user_usage(x["users"], x["files"], x["versions"]).cache()
    states = block_states(x["blocks"], x["refs"], x["pins"]).cache()
    usage = pack_usage(x["packs"], states).cache()
    tiers = tier_usage(usage)
    hist = job_history(x["runs"])

    u = users.agg(F.count(F.lit(1)).alias("users"),
                  *(F.coalesce(F.sum(c), F.lit(0)).cast("bigint").alias(c)
                    for c in ("files", "logical_bytes", "trash_bytes", "all_versions_bytes", "used_bytes"))).first()
    blocks = {r["state"]: r for r in _rows(block_totals(states))}
    tier_rows = _rows(tiers)
    g = garbage(usage, dead_ratio=j["dead_ratio"], small_below=int(j["fill_threshold"] * j["target_pack_bytes"])).first()
    traffic = _rows(traffic_by_day(x["traffic"]))
    runs = _jsonable(_rows(hist.orderBy(F.col("id").desc()).limit(200)))
    summary = _jsonable(_rows(job_summary(hist)))
    head = headline(u.asDict(), blocks, tier_rows, g.asDict(), traffic, runs)
    head["taken_at"] = t.isoformat() + "Z"
    top = _rows(users.orderBy(F.col("logical_bytes").desc(), F.col("user_id")).limit(j["report_top_users"]))
    ctx.say(f"logical {humanize.size(head['logical_bytes'])}, unique {humanize.size(head['unique_raw_bytes'])}, stored {humanize.size(head['stored_bytes'])}, "
            f"dedup {humanize.figure('ratio', head['dedup_ratio'])}, compression {humanize.figure('ratio', head['compression_ratio'])}, garbage {humanize.size(head['garbage_bytes'])}")

    stats = {k: head[k] for k in ("logical_bytes", "unique_raw_bytes", "stored_bytes", "garbage_bytes", "users")}
    if ctx.dry_run:
        stats["headline"] = head
    else:
        # The Parquet copy first, then the rows that point to it.
        prefix = f"reports/{t.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:8]}"
        url = save_parquet(ctx.drive.blocks.hot, prefix, {"users": users, "tiers": tiers, "traffic": traffic_by_day(x["traffic"]),
                                                          "jobs": hist}, head)
        stats["snapshot_id"] = rep.save_snapshot(ctx.sm, head, top, tier_rows,
                                                 {"traffic": traffic, "jobs": runs, "job_summary": summary},
                                                 taken_at=t, parquet_url=url)
        stats["parquet_url"] = url
    users.unpersist()
    states.unpersist()
    usage.unpersist()
    return stats
