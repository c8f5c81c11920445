"""Benchmarks of the maintenance jobs. Prints figures; asserts nothing.

    .venv/bin/python bench/jobs.py --rows 1000000            # reconcile + gc plan at 1 M blocks / 2 M refs
    .venv/bin/python bench/jobs.py --rows 1000000,10000000   # ... and how it grows to 10 M / 20 M
    .venv/bin/python bench/jobs.py --skip-plans --compact-mb 256,1024 --repeats 3   # compact vs a plain copy

Part 1 builds a synthetic metadata set in Spark (N blocks, 2N refs; 10 % of the blocks dead,
5 % marked long ago, a little refcount drift), materialises it as Parquet (the extracted
state), then times what the jobs do with it: reconcile's drift plan and gc's mark + sweep
plans, each forced to completion. ``--extract`` also times the embedded default's extract
path (SQLite -> SQLAlchemy -> Arrow -> Spark) on a real SQLite table of N blocks (about
130 bytes of disk per row: mind the free space at 10 M).

Part 2 uploads ``--compact-mb`` MiB as 2 MiB files (one small pack each) into a scratch drive
on local disk, then, ``--repeats`` times from that same state (database copied, packs
hard-linked): times two plain copies of the same pack bytes through the same backend, then
the compact job merging them into 64 MiB packs, back to back, and prints the medians. A
"plain copy" reads each source pack whole and writes it through the backend, fsync included
(LocalBackend: pread, write, fsync of the file and its directory): (1) pack by pack, one new
object per source pack, like ``shutil.copyfile`` + fsync of each; (2) concatenated into as
many 64 MiB objects as compaction writes, the stricter floor. Compaction's copy phase (the
executors' write, from task launch to the last fsync) and the whole job (plan, write,
switch, job bookkeeping) are compared with both. All source packs were just written, so
both read them from the page cache.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def synthetic(spark, n: int, out: Path):
    from pyspark.sql import functions as F
    t0 = time.perf_counter()
    ids = spark.range(n).select(F.col("id").alias("n"))
    bid = F.unhex(F.sha2(F.col("n").cast("string"), 256))
    long_ago = F.lit(dt.datetime(2026, 1, 1))
    blocks = ids.select(
        bid.alias("id"),
        # 10 % dead (refcount 0), 0.1 % drifted (refcount 3 instead of 2), the rest 2 refs each
        F.when(F.col("n") % 10 == 0, 0).when(F.col("n") % 1000 == 1, 3).otherwise(2).cast("long").alias("refcount"),
        F.when(F.col("n") % 20 == 0, long_ago).cast("timestamp_ntz").alias("gc_marked_at"),
        (F.col("n") % 4096).cast("string").alias("pack_id"),
        F.lit(700_000).cast("long").alias("stored_size"))
    blocks.write.mode("overwrite").parquet(str(out / "blocks"))
    # 2N refs: each live block twice; the refs of dead blocks go to other blocks so the
    # total stays 2N (some blocks end up with drift, which reconcile must find).
    refs = spark.range(2 * n).select(
        (F.col("id") / 50).cast("long").alias("version_id"),
        F.unhex(F.sha2(F.when(((F.col("id") / 2).cast("long")) % 10 == 0, (F.col("id") / 2).cast("long") + 1)
                       .otherwise((F.col("id") / 2).cast("long")).cast("string"), 256)).alias("block_id"))
    refs.write.mode("overwrite").parquet(str(out / "refs"))
    return time.perf_counter() - t0


def bench_plans(spark, n: int, scratch: Path) -> dict:
    from jobs.gc import live_set, plan_mark, plan_sweep
    from jobs.reconcile import refcount_drift
    gen = synthetic(spark, n, scratch)
    blocks = spark.read.parquet(str(scratch / "blocks"))
    refs = spark.read.parquet(str(scratch / "refs"))
    pins = spark.createDataFrame([], "block_id binary")
    out = {"rows": n, "refs": 2 * n, "generate_s": gen}
    t0 = time.perf_counter()
    drift = refcount_drift(blocks, refs).count()
    out["reconcile_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    live = live_set(refs.select("block_id"), pins)
    mark = plan_mark(blocks, live).count()
    sweep = plan_sweep(blocks, live, dt.datetime(2026, 6, 1)).count()
    out["gc_plan_s"] = time.perf_counter() - t0
    out.update(drift=drift, mark=mark, sweep=sweep)
    out["total_s"] = out["reconcile_s"] + out["gc_plan_s"]
    out["rows_per_s"] = (3 * n) / out["total_s"]  # N block rows + 2N ref rows
    return out


def bench_extract(spark, n: int, scratch: Path) -> dict:
    """SQLite -> SQLAlchemy -> Arrow -> Spark for N block rows (the embedded default's path)."""
    import hashlib
    import sqlite3
    from storage.config import load_config
    from jobs.context import Context
    from storage import extracts
    from storage.db import make_engine, migrate
    db = scratch / "meta.db"
    engine = make_engine(f"sqlite:///{db}")
    migrate(engine)
    con = sqlite3.connect(db)
    con.execute("INSERT INTO packs (id, url, tier, state, size, live_bytes, created_at) VALUES "
                "('p', 'file:///x', 'local', 'sealed', 0, 0, '2026-01-01 00:00:00')")
    now = "2026-01-01 00:00:00"
    batch = 200_000
    for start in range(0, n, batch):
        con.executemany("INSERT INTO blocks (id, size, stored_size, codec, pack_id, offset_in_pack, refcount, created_at) "
                        "VALUES (?, 1000, 700, 1, 'p', 0, 1, ?)",
                        ((hashlib.sha256(str(i).encode()).digest(), now) for i in range(start, min(n, start + batch))))
    con.commit()
    con.close()

    class _D:  # what Context.frame needs
        pass
    d = _D()
    d.engine = engine
    ctx = Context(drive=d, spark=spark, cfg=load_config(env={}))
    t0 = time.perf_counter()
    df = ctx.frame(extracts.blocks("id", "refcount", "gc_marked_at", "pack_id", "stored_size"),
                   "id binary, refcount bigint, gc_marked_at timestamp_ntz, pack_id string, stored_size bigint")
    rows = df.count()
    s = time.perf_counter() - t0
    engine.dispose()
    return {"rows": rows, "extract_s": s, "rows_per_s": rows / s}


def _restore(template: Path, home: Path) -> None:
    """A fresh copy of the uploaded state: the database copied, the pack files hard-linked
    (packs are immutable and compact only adds files, so every repeat starts alike)."""
    shutil.rmtree(home, ignore_errors=True)
    shutil.copytree(template, home, copy_function=lambda a, b: os.link(a, b) if a.endswith(".pack")
                    else shutil.copy2(a, b))


def _plain_copies(drive, rows, target: int) -> tuple[float, float]:
    """Seconds for the two plain copies of the source packs' bytes, through the same backend
    (on local disk: read, write, fsync of the file and of its directory):
    (1) pack by pack: each source pack read whole and written as a new object;
    (2) concatenated: the same bytes appended into new objects of the target pack size, one
        close (fsync) per object, as many objects as compaction writes."""
    backend = drive.blocks.hot
    keys = [backend.key_for(url) for url, _ in rows]
    t0 = time.perf_counter()
    for k in keys:
        backend.put(k + ".copy", backend.read(k))
    per_pack = time.perf_counter() - t0
    for k in keys:
        backend.delete(k + ".copy")
    t0 = time.perf_counter()
    made, out, filled = [], None, 0
    for k in keys:
        if out is None:
            made.append(f"packs/bench-concat-{len(made)}")
            out, filled = backend.create(made[-1]), 0
        data = backend.read(k)
        out.write(data)
        filled += len(data)
        if filled >= target:
            out.close()
            out = None
    if out is not None:
        out.close()
    concat = time.perf_counter() - t0
    for k in made:
        backend.delete(k)
    return per_pack, concat


def bench_compact(spark, mb: int, scratch: Path, repeats: int, warm_up: bool) -> dict:
    """Compact ``mb`` MiB of 2 MiB packs into 64 MiB packs ``repeats`` times, each time from
    the same uploaded state, with both plain copies of the same bytes timed right before it
    (so load from other work affects both alike); medians are reported."""
    import statistics
    import sqlalchemy as sa
    from jobs.runner import run_job
    from storage.config import load_config
    from storage.drive import Drive
    from storage.db import make_engine, migrate
    from storage.models import Pack
    home, template = scratch / f"drive{mb}", scratch / f"template{mb}"
    target = 64 * 1024 * 1024
    cfg = load_config(env={}, overrides={
        "storage": {"home": str(home)}, "security": {"scrypt_n": 1024},
        "jobs": {"target_pack_bytes": target, "fill_threshold": 0.5}})
    engine = make_engine(cfg.database_url)
    migrate(engine)
    drive = Drive(cfg, engine=engine)
    user, _ = drive.create_user("bench@example.com", "password123")
    size = 2 * 1024 * 1024  # 2 MiB files: one small pack each
    for i in range(mb * 1024 * 1024 // size):
        drive.put(user.id, user.root_id, f"f{i}.bin", io.BytesIO(os.urandom(size)))
    drive.close()
    shutil.copytree(home, template)
    runs = []
    for i in range(repeats + warm_up):
        _restore(template, home)
        drive = Drive(cfg, engine=make_engine(cfg.database_url))
        with drive.sm() as s:
            rows = s.execute(sa.select(Pack.url, Pack.size).where(Pack.state == "sealed")).all()
        total = sum(r.size for r in rows)
        per_pack_s, concat_s = _plain_copies(drive, rows, target)
        t0 = time.perf_counter()
        st = run_job("compact", drive, spark, cfg).stats
        job_s = time.perf_counter() - t0
        drive.close()
        if warm_up and i == 0:
            continue  # the first job in a fresh session also pays for JIT and Python workers
        w = st["bytes_written"]
        runs.append({"packs": len(rows), "bytes": total, "written": w, "new_packs": st["new_packs"],
                     "blocks": st["blocks_moved"], "copy_Bps": total / per_pack_s, "concat_Bps": total / concat_s,
                     "write_Bps": w / st["write_seconds"], "job_Bps": w / job_s, "job_s": job_s,
                     "plan_s": st["plan_seconds"], "write_s": st["write_seconds"], "switch_s": st["switch_seconds"],
                     "task_read_s": st["write_read_task_seconds"], "task_check_write_s": st["write_check_write_task_seconds"],
                     "task_close_s": st["write_close_task_seconds"]})
    shutil.rmtree(home, ignore_errors=True)
    shutil.rmtree(template, ignore_errors=True)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    for base in ("copy", "concat"):
        for what in ("write", "job"):
            med[f"{what}_vs_{base}"] = statistics.median(r[f"{what}_Bps"] / r[f"{base}_Bps"] for r in runs)
    med["repeats"] = len(runs)
    return med


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="1000000", help="comma-separated block counts (refs = 2x)")
    ap.add_argument("--extract", action="store_true", help="also time SQLite -> Arrow -> Spark extraction")
    ap.add_argument("--compact-mb", default="128",
                    help="comma-separated MiB of small packs for the compact bench (0 = skip)")
    ap.add_argument("--repeats", type=int, default=3, help="compact runs per size (medians are printed)")
    ap.add_argument("--skip-plans", action="store_true")
    ap.add_argument("--driver-memory", default="3g")
    args = ap.parse_args()
    from storage.config import load_config
    from jobs.spark import build_spark
    cfg = load_config(env={}, overrides={"jobs": {"driver_memory": args.driver_memory, "shuffle_partitions": 8}})
    t0 = time.perf_counter()
    spark = build_spark(cfg, "blockdrive-bench")
    print(f"spark {spark.version} master={spark.sparkContext.master} cores={os.cpu_count()} "
          f"session start {time.perf_counter() - t0:.1f}s")
    scratch = Path(tempfile.mkdtemp(prefix="bd-jobs-bench-"))
    try:
        if not args.skip_plans:
            prev = None
            for n in [int(x) for x in args.rows.split(",")]:
                r = bench_plans(spark, n, scratch / f"plans{n}")
                grow = f"  x{r['total_s'] / prev['total_s']:.2f} time for x{n / prev['rows']:.0f} rows" if prev else ""
                print(f"reconcile+gc plan: {n:>11,} blocks {2 * n:>11,} refs  reconcile {r['reconcile_s']:7.1f}s  "
                      f"gc plan {r['gc_plan_s']:7.1f}s  total {r['total_s']:7.1f}s  {r['rows_per_s']:>12,.0f} rows/s"
                      f"  (drift {r['drift']:,}, mark {r['mark']:,}, sweep {r['sweep']:,}; generate {r['generate_s']:.1f}s){grow}")
                prev = r
                shutil.rmtree(scratch / f"plans{n}", ignore_errors=True)
                if args.extract:
                    e = bench_extract(spark, n, scratch)
                    print(f"extract (SQLite -> Arrow -> Spark): {e['rows']:,} block rows in {e['extract_s']:.1f}s "
                          f"= {e['rows_per_s']:,.0f} rows/s")
                    (scratch / "meta.db").unlink(missing_ok=True)
        sizes = [int(x) for x in args.compact_mb.split(",") if int(x)]
        for n, mb in enumerate(sizes):
            load = os.getloadavg()[0]
            c = bench_compact(spark, mb, scratch, args.repeats, warm_up=n == 0 and args.skip_plans)
            print(f"compact {mb} MiB: {c['packs']:.0f} packs of 2 MiB -> {c['new_packs']:.0f} packs of 64 MiB, "
                  f"{c['blocks']:.0f} blocks; median of {c['repeats']} (load {load:.1f} -> {os.getloadavg()[0]:.1f})")
            print(f"  plain copy, pack by pack:        {c['copy_Bps'] / 2**20:7.1f} MiB/s")
            print(f"  plain copy, into 64 MiB files:   {c['concat_Bps'] / 2**20:7.1f} MiB/s")
            print(f"  compact copy phase:              {c['write_Bps'] / 2**20:7.1f} MiB/s  {c['blocks'] / c['write_s']:9,.0f} blocks/s"
                  f"  = {c['write_vs_copy'] * 100:.0f}% / {c['write_vs_concat'] * 100:.0f}% of the plain copies"
                  f"  ({c['write_s']:.2f}s; in tasks: read {c['task_read_s']:.2f}s, check+write {c['task_check_write_s']:.2f}s, "
                  f"fsync {c['task_close_s']:.2f}s)")
            print(f"  compact job (plan+write+switch): {c['job_Bps'] / 2**20:7.1f} MiB/s  {c['blocks'] / c['job_s']:9,.0f} blocks/s"
                  f"  = {c['job_vs_copy'] * 100:.0f}% / {c['job_vs_concat'] * 100:.0f}% of the plain copies"
                  f"  ({c['job_s']:.2f}s: plan {c['plan_s']:.2f}s, write {c['write_s']:.2f}s, switch {c['switch_s']:.2f}s)")
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
