"""``compact``: merge small packs into packs of the target size, rewrite packs whose dead
ratio passed the threshold, and delete the packs they supersede once no reader can hold them.

Write amplification is bounded: a run copies at most ``jobs.compact_max_amplification`` live
bytes per dead byte it frees (the packs that free most per byte copied go first; the rest
wait until more of them is dead), except for merging small packs up to
``jobs.compact_merge_bytes``. Each run reports ``bytes_copied``, ``bytes_freed`` and their
ratio, ``amplification``.

Execute runs in restic's fixed safe order: (1) delete the files of packs that left the
index long enough ago (a superseded pack: the read bound, ``storage.read_location_max_seconds``
plus ``storage.timeout_seconds``, storage/reads.py; a pack given up while open: the grace
period), (2) retire packs no block points to, (3) for each bin in turn: write its new pack
(registered ``open`` first, durable before anything points to it) on an executor, switch
the blocks to it and retire the old packs in one transaction, and delete again what (1)
deletes. So the new pack being written is the only copied data nothing points to yet, and
bins are closed before they pass the target size. A bin's new pack stays extra disk until
the packs it superseded are deleted, the read bound after its switch. With
``jobs.compact_bound_extra_disk``, before each bin the run keeps the new packs still extra
within one target pack (:class:`ExtraDisk`), waiting for the bound up to
``jobs.compact_wait_seconds`` in all and leaving the bins past that to the next run
(``bins_deferred_for_disk``); without it, a run shorter than the read bound keeps all it
copied on disk until the packs it superseded go. A crash between writing and switching leaves one
open pack that GC reclaims.

Throughput: the plan is two Spark actions (figures, the records to move), then one Spark job
per new pack, one task that reads whole runs of source records and copies them
verbatim (CRC checked in the same pass, never decompressed); only metadata comes back to
the driver. ``bench/jobs.py`` compares it with a plain copy of the same packs.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Callable, Iterable

from pyspark.sql import DataFrame, Window, functions as F

from storage import extracts
from storage import maintenance as m
from storage import pack as packfmt
from storage.clock import now
from storage.states import PackState

from . import humanize
from .executor import store_for
from .hooks import step

PACKS = "id string, url string, tier string, state string, size bigint, created_at timestamp_ntz"
BLOCKS = "id binary, pack_id string, offset_in_pack bigint, stored_size bigint"
OVERHEAD = packfmt.HEADER_SIZE + packfmt.TRAILER_SIZE


def extract(ctx):
    packs = ctx.frame(extracts.packs("id", "url", "tier", "state", "size", "created_at"), PACKS)
    blocks = ctx.frame(extracts.blocks("id", "pack_id", "offset_in_pack", "stored_size"), BLOCKS, table="blocks")
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


def plan_packs(usage: DataFrame, *, target: int, fill: float, dead_ratio: float, hot_prefix: str,
               max_copy_bytes: int = 0, max_amplification: float = 0.0, merge_bytes: int = 0) -> DataFrame:
    """``usage`` with the plan's ``bin`` and ``action`` for each pack (null: left alone).

    ``retire`` for sealed packs with no live block (whatever their tier); ``copy`` for hot
    packs whose live records go into new pack number ``bin`` (small ones, and those whose
    dead ratio passed the threshold), binned by :func:`close_bins` so that no new pack passes
    ``target`` bytes (the extra disk a run needs is one new pack). A bin of one pack
    that is merely small (not dead enough) is left alone: rewriting it alone gains nothing.

    With ``max_amplification``, the run copies at most that many live bytes per dead byte it
    frees: the candidates are taken in order of dead bytes per live byte, best first, while
    the running total keeps within the bound (so the dead-rich packs may carry a few that
    free less), and the rest are ``hold``: left until more of them is dead. Small packs with
    few dead bytes (a pure merge, which frees little but makes fewer files) are exempt up to
    ``merge_bytes`` of live bytes per run, taken in pack-id order. Without a bound, bins are
    filled in pack-id order.

    With ``max_copy_bytes``, the bins past that many live bytes (the first bin always goes)
    are ``defer``: left to the next run, so one run's copying, and the block list its driver
    holds, stay bounded however much is due. Apart from the binning, written as windows over
    one ordered partition rather than joins and group-bys: this runs on every compaction."""
    sealed = F.col("state") == PackState.SEALED
    small = F.col("size") < F.lit(int(fill * target))
    dead_enough = F.col("dead_ratio") >= F.lit(dead_ratio)
    cand = sealed & F.col("url").startswith(hot_prefix) & (F.col("live_bytes") > 0) & (small | dead_enough)
    order = [F.col("id")]
    if max_amplification:
        usage, cand, order = _bound_amplification(usage, cand, small & ~dead_enough, max_amplification, merge_bytes)
    binned = close_bins(usage, cand, order, target)
    per_bin = Window.partitionBy("bin")
    useful = (F.count(F.lit(1)).over(per_bin) > 1) | (F.max("dead_ratio").over(per_bin) >= F.lit(dead_ratio))
    action = (F.when(sealed & (F.col("live_bytes") == 0), F.lit("retire"))
              .when(F.col("bin").isNotNull() & useful, F.lit("copy")))
    if max_amplification:
        action = action.when(F.col("held"), F.lit("hold"))
    planned = binned.withColumn("action", action)
    if max_copy_bytes:
        copy = F.col("action") == "copy"
        upto = Window.orderBy("copy_bin").rangeBetween(Window.unboundedPreceding, Window.currentRow)
        first = F.min("copy_bin").over(Window.partitionBy(F.lit(1)))
        planned = (planned.withColumn("copy_bin", F.when(copy, F.col("bin")))
                   .withColumn("action", F.when(copy & (F.col("copy_bin") > first) & (
                       F.sum(F.when(copy, F.col("live_bytes"))).over(upto) > F.lit(max_copy_bytes)), F.lit("defer"))
                       .otherwise(F.col("action")))
                   .drop("copy_bin"))
    planned = planned.drop("held", "merge") if max_amplification else planned
    return planned.withColumn("bin", F.when(F.col("action") == "retire", F.lit(-1))
                              .when(F.col("action") == "copy", F.col("bin")).cast("int"))


def first_fit(sizes: Iterable[int], capacity: int, open_bins: int = 64) -> list[int]:
    """The bin of each item taken in order: the first of the last ``open_bins`` bins opened
    that it fits in without passing ``capacity``, else a new bin (numbered in the order they
    open, so the first items' bins come first). Looking back over a few bins, not only the
    last, keeps small packs that a bigger one separates in the order merging. An item larger
    than ``capacity`` on its own still gets a bin (its own): one pack's records cannot be
    split between new packs."""
    bins: list[int] = []
    fills: list[int] = []  # of every bin opened; the last ``open_bins`` are open
    for size in sizes:
        first = max(len(fills) - open_bins, 0)
        b = next((i for i in range(first, len(fills)) if fills[i] + size <= capacity), len(fills))
        if b == len(fills):
            fills.append(0)
        fills[b] += size
        bins.append(b)
    return bins


def close_bins(usage: DataFrame, cand, order: list, target: int) -> DataFrame:
    """``usage`` with the ``bin`` of each candidate (null for the rest): the candidates in
    ``order``, packed by :func:`first_fit` so that no new pack passes ``target`` bytes. A new
    pack holds each source pack's live records and their index entries, plus one header and
    trailer.

    Where a pack goes depends on every pack before it, which no window sum expresses, so the
    candidates (one small row per pack) are gathered into one partition, ranked, and binned
    there; only (id, bin) comes back."""
    ranked = usage.where(cand).select(
        "id", F.row_number().over(Window.orderBy(*order)).alias("rank"),
        (F.col("live_bytes") + F.col("nblocks") * packfmt.INDEX_ENTRY).alias("bytes"))
    capacity = target - OVERHEAD

    def bin_partition(rows):
        rows = sorted(rows, key=lambda r: r[1])
        return zip((r[0] for r in rows), first_fit((r[2] for r in rows), capacity))

    bins = usage.sparkSession.createDataFrame(ranked.rdd.coalesce(1).mapPartitions(bin_partition),
                                              "id string, bin int")
    return usage.join(bins, "id", "left")


def _bound_amplification(usage: DataFrame, cand, pure_merge, max_amplification: float, merge_bytes: int):
    """``usage`` with ``merge`` (a small pack merged under ``merge_bytes``, outside the bound)
    and ``held`` (a candidate past the bound), the candidates left, and the order to bin them
    in: the exempt merges first, then by dead bytes per live byte, best first.

    Taken best first, the running ratio of live to dead bytes only grows, so the packs within
    the bound are a prefix of that order and one running sum finds them."""
    merge_sum = F.sum(F.when(cand & pure_merge, F.col("live_bytes"))).over(
        Window.orderBy("id").rowsBetween(Window.unboundedPreceding, Window.currentRow))
    usage = usage.withColumn("merge", cand & pure_merge & (merge_sum <= F.lit(merge_bytes)))
    bounded = cand & ~F.col("merge")
    gain = F.when(F.col("live_bytes") > 0, F.col("dead_bytes") / F.col("live_bytes"))  # null for the retired
    best_first = Window.orderBy(F.desc(gain), "id").rowsBetween(Window.unboundedPreceding, Window.currentRow)
    within = (F.sum(F.when(bounded, F.col("live_bytes"))).over(best_first)
              <= F.lit(float(max_amplification)) * F.sum(F.when(bounded, F.col("dead_bytes"))).over(best_first))
    usage = usage.withColumn("held", bounded & ~F.coalesce(within, F.lit(False)))
    return usage, cand & ~F.col("held"), [F.desc("merge"), F.desc(gain), F.col("id")]


def plan_compaction(usage: DataFrame, *, target: int, fill: float, dead_ratio: float, hot_prefix: str,
                    max_copy_bytes: int = 0, max_amplification: float = 0.0, merge_bytes: int = 0) -> DataFrame:
    """(pack id, bin, action) for the packs :func:`plan_packs` acts on, defers or holds."""
    return (plan_packs(usage, target=target, fill=fill, dead_ratio=dead_ratio, hot_prefix=hot_prefix,
                       max_copy_bytes=max_copy_bytes, max_amplification=max_amplification, merge_bytes=merge_bytes)
            .where(F.col("action").isNotNull()).select("id", "bin", "action"))


def plan_moves(plan: DataFrame, packs: DataFrame, blocks: DataFrame) -> DataFrame:
    copy = plan.where(F.col("action") == "copy").join(packs.select("id", "url", F.col("size").alias("pack_size")), "id")
    return (blocks.join(copy.withColumnRenamed("id", "pack_id"), "pack_id")
            .select("bin", F.col("id").alias("block_id"), "pack_id", "url", F.col("offset_in_pack").alias("offset"),
                    "stored_size", "pack_size"))


def summarize(planned: DataFrame) -> dict:
    """The figures of a plan (:func:`plan_packs`) and the packs to retire, in one Spark action."""
    copy, retire, defer, hold = (F.col("action") == a for a in ("copy", "retire", "defer", "hold"))
    r = planned.agg(
        F.sum("size").alias("physical"), F.sum("live_bytes").alias("live"),
        F.count(F.when(copy, 1)).alias("copy_packs"), F.sum(F.when(copy, F.col("live_bytes"))).alias("copy_live"),
        F.sum(F.when(copy | retire, F.col("size"))).alias("planned_bytes"),
        F.count(F.when(defer, 1)).alias("defer_packs"), F.sum(F.when(defer, F.col("live_bytes"))).alias("defer_live"),
        F.count(F.when(hold, 1)).alias("hold_packs"), F.sum(F.when(hold, F.col("dead_bytes"))).alias("hold_dead"),
        F.size(F.collect_set(F.when(copy, F.col("bin")))).alias("bins"),
        F.collect_list(F.when(retire, F.col("id"))).alias("retire")).first()
    copy_live, planned = int(r["copy_live"] or 0), int(r["planned_bytes"] or 0)
    return {"sealed_bytes": int(r["physical"] or 0), "live_bytes": int(r["live"] or 0),
            "packs_to_retire": len(r["retire"]), "packs_to_rewrite": int(r["copy_packs"]),
            "bytes_to_copy": copy_live, "bytes_to_free": planned - copy_live, "bytes_to_retire": planned,
            "new_packs": int(r["bins"]), "packs_deferred": int(r["defer_packs"]),
            "bytes_deferred": int(r["defer_live"] or 0), "packs_held": int(r["hold_packs"]),
            "dead_bytes_held": int(r["hold_dead"] or 0), "retire": sorted(r["retire"])}


def amplification(bytes_copied: int, bytes_freed: int) -> float | None:
    """Bytes copied per byte freed (None when nothing was freed)."""
    return round(bytes_copied / bytes_freed, 3) if bytes_freed > 0 else None


# ---- executors -------------------------------------------------------------------------------

def new_pack_bytes(rows: list[tuple]) -> int:
    """The size of the pack a bin's records (``(block_id, pack_id, url, offset, stored_size)``) make."""
    return OVERHEAD + sum(packfmt.RECORD_HEADER + stored + packfmt.INDEX_ENTRY for *_, stored in rows)


class ExtraDisk:
    """The new packs a run has written that are still extra disk: a bin's new pack stays extra
    until the packs its switch superseded are deleted, which is only once no reader can hold
    them, ``bound`` seconds (the read bound) after the switch. Keeps the total within
    ``limit`` (one target pack) by saying how long to wait before the next bin."""

    def __init__(self, limit: int, bound: float):
        self.limit, self.bound = limit, bound
        self.bins: list[tuple[float, int, list[str]]] = []  # (monotonic time of the switch, new pack bytes, retired)

    def switched(self, size: int, retired: list[str]) -> None:
        self.bins.append((time.monotonic(), size, retired))

    def due(self) -> list[str]:
        """The packs retired more than the read bound ago, by the switch's own monotonic time
        (exact, where ``retired_at`` has whole seconds)."""
        t = time.monotonic()
        return [p for at, _, packs in self.bins if t - at > self.bound for p in packs]

    def wait_for(self, size: int) -> float:
        """Seconds until one more new pack of ``size`` bytes keeps the extra disk within the
        limit (0: now). With no new pack extra, a bin goes whatever its size: a pack whose
        live records alone pass the target is still rewritten, alone."""
        t = time.monotonic()
        extra = sorted((at, n) for at, n, _ in self.bins if t - at <= self.bound)
        total, wait = sum(n for _, n in extra) + size, 0.0
        for at, n in extra:
            if total <= self.limit:
                break
            total, wait = total - n, at + self.bound - t
        return wait


def _write_bin(cfg):
    """One task per new pack: read its source records (whole runs at a time), copy them
    verbatim into the new pack on the hot tier, and return only what the driver needs to
    switch the blocks (no block bytes travel through Spark)."""
    def write(item):
        bin_, pack_id, key, rows = item
        store = store_for(cfg)
        sources = [m.Source(bid, pid, url, off, stored) for bid, pid, url, off, stored in rows]
        timings = {"start": time.time()}
        size, checksum, moves, bad = m.write_pack(store, pack_id, key, sources, timings=timings)
        timings["end"] = time.time()
        return (bin_, pack_id, size, checksum, [(mv.block_id, mv.from_pack, mv.offset) for mv in moves],
                [(s.block_id, s.pack_id, err) for s, err in bad], timings)
    return write


def rewrite(ctx, bins: dict[int, list[tuple]], at, after_write: str | None = None,
            after_bin: Callable[[int, list[str]], None] | None = None,
            before_bin: Callable[[int], bool] | None = None) -> dict:
    """Copy each bin's records (``(block_id, pack_id, url, offset, stored_size)``) into a new
    pack, one bin after the other: ask ``before_bin`` (given the new pack's size) whether it
    may go, register the new pack ``open``, write it on an executor, switch the blocks to it
    and retire the source packs left empty (one transaction), then call ``after_bin`` with the
    new pack's size and the ids of the packs that switch retired (compact deletes there the
    superseded packs no reader can hold any more) before the next bin. So at most one new pack
    that nothing points to yet exists at any time, and a crash leaves at most one open pack
    for GC. Once ``before_bin`` says no, the bins left (``deferred_bins``) wait for the next run.

    One bin at a time costs the parallel writing of several packs; it is what keeps the
    extra disk a run needs to one target pack."""
    store = ctx.drive.blocks.packs
    write = _write_bin(ctx.cfg)
    stats = {"bytes_written": 0, "write_seconds": 0.0, "write_launch_seconds": 0.0, "write_collect_seconds": 0.0,
             "switch_seconds": 0.0}
    task = dict.fromkeys(("read", "check_write", "close"), 0.0)
    moved = retired = written = 0
    bad, deferred = [], []
    for b in sorted(bins):
        if deferred or (before_bin and not before_bin(new_pack_bytes(bins[b]))):
            deferred.append(b)
            continue
        pid = m.new_pack_id()
        key = store.pack_key(pid)
        m.register_pack(ctx.sm, pid, store.hot.url_for(key))  # open before any byte is written
        t0, submitted = time.perf_counter(), time.time()
        # One task per new pack; it returns only metadata.
        _, pack_id, size, checksum, mv, bad_records, timings = (
            ctx.spark.sparkContext.parallelize([(b, pid, key, bins[b])], 1).map(write).collect()[0])
        took = time.perf_counter() - t0
        stats["write_seconds"] += took
        stats["bytes_written"] += size
        for name in task:
            task[name] += timings.get(name, 0.0)
        # Spark's share of the copy: before the task started and after it ended
        stats["write_launch_seconds"] += timings["start"] - submitted
        stats["write_collect_seconds"] += submitted + took - timings["end"]
        written += 1
        if after_write:
            step(after_write)
        t0 = time.perf_counter()
        out = m.switch_blocks(ctx.sm, pack_id, size, checksum, [m.Move(*x) for x in mv], at)
        stats["switch_seconds"] += time.perf_counter() - t0
        moved += out["moved"]
        retired += out["retired"]
        bad += [{"block": blk.hex(), "pack": p, "error": e} for blk, p, e in bad_records]
        if after_bin:
            after_bin(size, out["retired_ids"])
    if not written:
        for name in ("write_launch_seconds", "write_collect_seconds"):
            del stats[name]
    stats = {k: round(v, 3) if isinstance(v, float) else v for k, v in stats.items()}
    stats.update({f"write_{name}_task_seconds": round(v, 3) for name, v in task.items()})
    stats.update(blocks_moved=moved, packs_retired=retired, bad_records=bad[:100], deferred_bins=deferred)
    ctx.say(f"wrote {written} packs ({humanize.size(stats['bytes_written'])}), switched {moved} blocks, "
            f"retired {retired} packs" + (f"; {len(deferred)} bins left to the next run, to keep the extra disk"
                                          " within one target pack" if deferred else ""))
    return stats


def run(ctx) -> dict:
    cfg, t = ctx.cfg, ctx.started
    j = cfg["jobs"]
    store = ctx.drive.blocks.packs
    t0 = time.perf_counter()
    packs, blocks = extract(ctx)
    planned = plan_packs(pack_usage(packs, blocks), target=j["target_pack_bytes"], fill=j["fill_threshold"],
                         dead_ratio=j["dead_ratio"],
                         hot_prefix=store.hot.url.split("?", 1)[0].rstrip("/") + "/",
                         max_copy_bytes=j["compact_max_bytes"], max_amplification=j["compact_max_amplification"],
                         merge_bytes=j["compact_merge_bytes"]).cache()
    stats = summarize(planned)
    retire = stats.pop("retire")
    stats["amplification_planned"] = amplification(stats["bytes_to_copy"], stats["bytes_to_free"])
    ctx.say(f"plan: retire {stats['packs_to_retire']} packs, rewrite {stats['packs_to_rewrite']} into "
            f"{stats['new_packs']} ({humanize.size(stats['bytes_to_copy'])} to copy, {humanize.size(stats['bytes_to_free'])} to free)"
            + (f"; {stats['packs_deferred']} packs ({humanize.size(stats['bytes_deferred'])} live) left to the next run,"
               " past compact_max_bytes" if stats["packs_deferred"] else "")
            + (f"; {stats['packs_held']} packs ({humanize.size(stats['dead_bytes_held'])} dead) held,"
               " not worth copying yet" if stats["packs_held"] else ""))
    try:
        if ctx.dry_run:
            return stats
        bins: dict[int, list[tuple]] = {}
        sources: dict[int, dict[str, int]] = {}  # each bin's source packs and their sizes
        if stats["new_packs"]:
            plan = planned.where(F.col("action") == "copy").select("id", "bin", "action")
            for r in plan_moves(plan, packs, blocks).collect():
                bins.setdefault(r.bin, []).append((bytes(r.block_id), r.pack_id, r.url, r.offset, r.stored_size))
                sources.setdefault(r.bin, {})[r.pack_id] = r.pack_size
        stats["plan_seconds"] = round(time.perf_counter() - t0, 3)
    finally:
        planned.unpersist()

    deleted = {"packs_deleted": 0, "bytes_deleted": 0}
    st = cfg["storage"]
    extra = ExtraDisk(j["target_pack_bytes"], st["read_location_max_seconds"] + st["timeout_seconds"])
    wait_left = float(j["compact_wait_seconds"])

    def delete_superseded() -> None:
        """Delete what is past the read bound: by ``retired_at``, and the packs this run's bins
        retired by their switch's time (:meth:`ExtraDisk.due`)."""
        out = m.delete_retired_packs(ctx.sm, store, t - dt.timedelta(seconds=ctx.grace), superseded_before=(
            m.superseded_cutoff(now(), st["read_location_max_seconds"], st["timeout_seconds"])),
            superseded_ids=extra.due())
        for k in deleted:
            deleted[k] += out[k]

    def before_bin(size: int) -> bool:
        """Whether the next bin may be written now, waiting (up to ``compact_wait_seconds`` in
        all) for readers to let go of the packs earlier bins superseded when its new pack
        would take the extra disk past one target pack. Deleting them sooner is never an
        option: a download may still read them."""
        nonlocal wait_left
        wait = extra.wait_for(size)
        if wait <= 0:
            return True
        if wait > wait_left:
            return False
        ctx.say(f"waiting {wait:.0f}s for the read bound of the packs earlier bins superseded")
        time.sleep(wait + 0.05)  # past the bound, not on it: due() counts strictly after it
        wait_left -= wait
        delete_superseded()
        return True

    def after_bin(size: int, retired: list[str]) -> None:
        extra.switched(size, retired)
        delete_superseded()

    delete_superseded()
    step("compact:after_delete")
    stats["retired_empty"] = m.retire_packs(ctx.sm, retire, t)
    if bins:
        stats.update(rewrite(ctx, bins, t, after_write="compact:after_write", after_bin=after_bin,
                             before_bin=before_bin if j["compact_bound_extra_disk"] else None))
    else:
        stats.update(bytes_written=0, write_seconds=0.0, blocks_moved=0, packs_retired=0, bad_records=[],
                     deferred_bins=[])
        step("compact:after_write")
    left = stats.pop("deferred_bins")
    stats["bins_deferred_for_disk"] = len(left)
    stats["bytes_deferred_for_disk"] = sum(packfmt.RECORD_HEADER + row[-1] for b in left for row in bins[b])
    stats["bytes_to_retire"] -= sum(size for b in left for size in sources[b].values())
    step("compact:after_switch")
    stats.update(deleted)
    # Freed: what the packs this run retired hold beyond the new packs written; their files go
    # once no reader can hold them (delete_superseded, after a later bin or in a later run).
    stats["bytes_copied"] = stats["bytes_written"]
    stats["bytes_freed"] = max(stats.pop("bytes_to_retire") - stats["bytes_written"], 0)
    stats["amplification"] = amplification(stats["bytes_copied"], stats["bytes_freed"])
    ctx.say(f"copied {humanize.size(stats['bytes_copied'])} to free {humanize.size(stats['bytes_freed'])}"
            + (f" (amplification {stats['amplification']})" if stats["amplification"] is not None else ""))
    return stats
