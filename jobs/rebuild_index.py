"""``rebuild_index``: disaster recovery of the block index. Every pack file on the hot and cold
backends is read (footer first; a pack cut short is scanned record by record) on the
executors; one copy of each block is chosen; a fresh database (``--into URL``) receives the
file metadata (users, nodes, versions, refs, ...) copied from the current database and the
``packs`` and ``blocks`` rebuilt from the footers, with refcounts counted from the refs.
It then proves the result: fsck on the new database, and every current file read back and
checked against its SHA-256.
"""

from __future__ import annotations

import hashlib

import sqlalchemy as sa
from pyspark.sql import DataFrame, Window, functions as F
from pyspark.sql import types as T

from storage.blockstore import tier_of
from storage.clock import now
from storage.models import Base

from .executor import read_records, store_for

SKIP = {"blocks", "packs", "locks", "job_runs"}
RECORD = T.StructType([T.StructField("pack_id", T.StringType()), T.StructField("url", T.StringType()),
                       T.StructField("pack_size", T.LongType()), T.StructField("block_id", T.BinaryType()),
                       T.StructField("codec", T.IntegerType()), T.StructField("raw_size", T.LongType()),
                       T.StructField("stored_size", T.LongType()), T.StructField("offset", T.LongType())])


def list_packs(store) -> list[tuple[str, str, int]]:
    out = []
    for backend in (b for b in (store.hot, store.cold) if b is not None):
        for key, size in backend.list("packs"):
            if key.endswith(".pack"):
                out.append((key.rsplit("/", 1)[-1][:-5], backend.url_for(key), size))
    return out


def _footers(cfg):
    def read(item):
        pack_id, url, size = item
        try:
            recs, _err, _ = read_records(store_for(cfg), url)
        except Exception:  # noqa: BLE001 - an unreadable pack contributes nothing; fsck says what is missing
            return []
        return [(pack_id, url, size, r["block_id"], r["codec"], r["raw_size"], r["stored_size"], r["offset"])
                for r in recs]
    return read


def choose_copies(records: DataFrame) -> DataFrame:
    """One record per block id: the one in the pack with the smallest id (any copy is valid
    bytes; choosing deterministically makes two rebuilds equal)."""
    w = Window.partitionBy("block_id").orderBy("pack_id", "offset")
    return records.withColumn("n", F.row_number().over(w)).where(F.col("n") == 1).drop("n")


def run(ctx) -> dict:
    from storage.db import make_engine, make_sessionmaker, migrate
    store = ctx.drive.blocks
    packs = list_packs(store)
    records = ctx.spark.createDataFrame(
        ctx.spark.sparkContext.parallelize(packs, max(1, min(len(packs), 64))).flatMap(_footers(ctx.cfg)), RECORD)
    chosen = choose_copies(records).cache()
    stats = {"pack_files": len(packs), "records": records.count(), "blocks": chosen.count()}
    ctx.say(f"read {stats['pack_files']} pack footers: {stats['records']} records, {stats['blocks']} distinct blocks")
    into = ctx.options.get("into")
    if ctx.dry_run or not into:
        if not into:
            stats["note"] = "no --into database given: nothing written"
        return stats
    target = make_engine(into)
    migrate(target)
    _copy_tables(ctx.engine, target)
    with ctx.engine.connect() as conn:
        refcounts = dict(conn.execute(sa.text("SELECT block_id, COUNT(*) FROM version_blocks GROUP BY block_id")).all())
    t = now()
    sm = make_sessionmaker(target)
    with sm() as s, s.begin():
        s.execute(sa.insert(Base.metadata.tables["packs"]),
                  [dict(id=pid, url=url, tier=tier_of(url), state="sealed", size=size, live_bytes=0,
                        created_at=t, sealed_at=t) for pid, url, size in packs] or [])
    rows, n = [], 0
    for r in chosen.toLocalIterator():
        bid = bytes(r.block_id)
        rows.append(dict(id=bid, size=r.raw_size, stored_size=r.stored_size, codec=r.codec, pack_id=r.pack_id,
                         offset_in_pack=r.offset, refcount=int(refcounts.get(bid, 0)), created_at=t))
        if len(rows) >= 5000:
            n += _insert(sm, rows)
            rows = []
    n += _insert(sm, rows)
    stats["blocks_written"] = n
    stats.update(_verify(ctx.cfg, target))
    ctx.say(f"rebuilt index: {n} blocks; fsck {'clean' if stats['fsck_ok'] else 'FOUND PROBLEMS'}; "
            f"{stats['files_ok']} files read back intact, {stats['files_bad']} not")
    return stats


def _insert(sm, rows) -> int:
    if rows:
        with sm() as s, s.begin():
            s.execute(sa.insert(Base.metadata.tables["blocks"]), rows)
    return len(rows)


def _copy_tables(source, target) -> None:
    with source.connect() as src, target.begin() as dst:
        for table in Base.metadata.sorted_tables:
            if table.name in SKIP:
                continue
            dst.execute(table.delete())
            result = src.execute(table.select())
            while True:
                batch = result.fetchmany(5000)
                if not batch:
                    break
                dst.execute(table.insert(), [dict(r._mapping) for r in batch])


def _verify(cfg, target) -> dict:
    """fsck the rebuilt database and read every current file back against its SHA-256."""
    from storage.drive import Drive
    from storage.fsck import fsck
    from storage.models import FileVersion, Node
    d = Drive(cfg, engine=target)
    rep = fsck(d, deep=False)
    ok = bad = 0
    with d.sm() as s:
        files = s.execute(sa.select(FileVersion.id, FileVersion.size, FileVersion.sha256)
                          .join(Node, Node.current_version_id == FileVersion.id)).all()
    for vid, size, sha in files:
        h = hashlib.sha256()
        try:
            for chunk in d.stream_version(vid, 0, size):
                h.update(chunk)
            ok += h.digest() == sha
            bad += h.digest() != sha
        except Exception:  # noqa: BLE001 - counted as a file that does not read back
            bad += 1
    return {"fsck_ok": rep.ok, "fsck_problems": [str(p) for p in rep.problems[:20]], "files_ok": ok, "files_bad": bad}
