"""Compaction's write amplification and extra disk: delete 10 % of the data in random files,
run compact, print the bytes it copied, the bytes it freed and the peak extra disk it took.
Asserts nothing.

    .venv/bin/python bench/compact_amp.py --mb 1024

Uploads ``--mb`` MiB as files of random sizes (64 KiB to 4 MiB) into a scratch drive on local
disk, merges them into packs of ``--target-mb`` (one unbounded compact, then the old files
deleted: the state a drive settles in), deletes and purges random files until ``--delete``
of the bytes are gone, lets gc sweep their blocks, then runs compact with the configuration's
bound (``jobs.compact_max_amplification``). The bench has no readers, so it runs with a read
bound (``storage.read_location_max_seconds`` + ``storage.timeout_seconds``) of
``--read-bound`` seconds, 0 by default: each bin's superseded packs may go as soon as the
clock (whole seconds) has passed their switch. With a read bound, a bin whose new pack
would take the extra disk past one target pack waits for it, up to ``--wait`` seconds in all
(``jobs.compact_wait_seconds``), and the bins past that are left to the next run. A thread samples the pack files' total every
10 ms while compact runs; the peak extra disk is the largest sample minus the total before
the run. For contrast it prints what a plan without the bound would copy with a dead ratio
low enough to touch every pack, and last runs that plan: many bins, to show the extra disk
stays about one target pack however much a run copies.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")


def pack_bytes(home: Path) -> tuple[int, int]:
    """(number, total bytes) of the pack files under ``home``."""
    sizes = [p.stat().st_size for p in home.rglob("*.pack")]
    return len(sizes), sum(sizes)


class PeakSampler:
    """The largest total of the pack files under ``home`` seen while the block runs."""

    def __init__(self, home: Path, every: float = 0.01):
        self.home, self.every, self.peak = home, every, 0
        self._stop = threading.Event()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, pack_bytes(self.home)[1])
            except FileNotFoundError:  # a file deleted while listed
                continue
            self._stop.wait(self.every)

    def __enter__(self):
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, pack_bytes(self.home)[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=int, default=1024, help="MiB uploaded")
    ap.add_argument("--delete", type=float, default=0.10, help="fraction of the bytes deleted")
    ap.add_argument("--target-mb", type=int, default=64, help="target pack size, MiB")
    ap.add_argument("--seed", type=int, default=20)
    ap.add_argument("--read-bound", type=float, default=0.0,
                    help="storage.read_location_max_seconds (storage.timeout_seconds is set to 0)")
    ap.add_argument("--wait", type=float, default=0.0,
                    help="jobs.compact_wait_seconds: how long a run may wait in all for the read bound")
    args = ap.parse_args()
    from jobs.runner import run_job
    from jobs.spark import build_spark
    from storage.config import load_config
    from storage.db import make_engine, migrate
    from storage.drive import Drive

    rng = random.Random(args.seed)
    scratch = Path(tempfile.mkdtemp(prefix="bd-compact-amp-"))
    home = scratch / "drive"
    jobs = {"target_pack_bytes": args.target_mb * 2**20, "driver_memory": "2g", "shuffle_partitions": 4,
            "compact_bound_extra_disk": True, "compact_wait_seconds": args.wait}
    storage = {"home": str(home), "read_location_max_seconds": args.read_bound, "timeout_seconds": 0}
    cfg = load_config(env={}, overrides={"storage": storage, "security": {"scrypt_n": 1024},
                                         "gc": {"grace_seconds": 0}, "jobs": jobs})
    spark = build_spark(cfg, "blockdrive-bench-compact")
    try:
        engine = make_engine(cfg.database_url)
        migrate(engine)
        drive = Drive(cfg, engine=engine)
        user, _ = drive.create_user("bench@example.com", "password123")
        files, total = [], 0
        t0 = time.perf_counter()
        while total < args.mb * 2**20:
            n = rng.randint(64 * 1024, 4 * 2**20)
            node = drive.put(user.id, user.root_id, f"f{len(files)}.bin", io.BytesIO(rng.randbytes(n))).node
            files.append((node.id, n))
            total += n
        print(f"uploaded {len(files)} files, {total / 2**20:.0f} MiB in {time.perf_counter() - t0:.1f}s; "
              f"pack files {pack_bytes(home)[0]}")
        unbounded = type(cfg)({**cfg, "jobs": {**cfg["jobs"], "compact_max_amplification": 0.0}})
        run_job("compact", drive, spark, unbounded)
        time.sleep(1.1)  # the superseded files are deleted by the next run, past the (zero) grace
        run_job("compact", drive, spark, unbounded)
        n, before = pack_bytes(home)
        print(f"settled: {n} pack files, {before / 2**20:.1f} MiB")

        rng.shuffle(files)
        gone = 0
        for node_id, size in files:
            if gone >= args.delete * total:
                break
            drive.delete(user.id, node_id)
            drive.purge(user.id, node_id)
            gone += size
        for _ in range(2):  # mark, then sweep past the (zero) grace
            run_job("gc", drive, spark, cfg)
            time.sleep(1.1)
        print(f"deleted {gone / 2**20:.1f} MiB ({gone / total:.1%}) in random files; gc swept their blocks")

        loose = type(cfg)({**unbounded, "jobs": {**unbounded["jobs"], "dead_ratio": 0.01}})
        plan = run_job("compact", drive, spark, loose, dry_run=True).stats
        print(f"without the bound (dead_ratio 0.01): would copy {plan['bytes_to_copy'] / 2**20:.1f} MiB "
              f"to free {plan['bytes_to_free'] / 2**20:.1f} MiB (amplification {plan['amplification_planned']})")
        for name, c in (("with the default dead_ratio", cfg),
                        ("with dead_ratio 0.01", type(cfg)({**cfg, "jobs": {**cfg["jobs"], "dead_ratio": 0.01}})),
                        ("every pack rewritten (no bound, dead_ratio 0.01)", loose)):
            n, before = pack_bytes(home)
            with PeakSampler(home) as peak:
                st = run_job("compact", drive, spark, c).stats
            n2, after = pack_bytes(home)
            print(f"compact, bound {c['jobs']['compact_max_amplification']}, {name}: copied "
                  f"{st['bytes_copied'] / 2**20:.1f} MiB into {st['new_packs']} packs, freed "
                  f"{st['bytes_freed'] / 2**20:.1f} MiB, amplification {st['amplification']}, "
                  f"packs held {st['packs_held']}, bins left for disk {st['bins_deferred_for_disk']}; peak extra disk {(peak.peak - before) / 2**20:.1f} MiB "
                  f"= {(peak.peak - before) / (args.target_mb * 2**20):.2f} target packs of {args.target_mb} MiB; "
                  f"pack files {n} -> {n2}, {before / 2**20:.1f} -> {after / 2**20:.1f} MiB "
                  f"({st['packs_deleted']} deleted during the run)")
            time.sleep(1.1)
        drive.close()
    finally:
        spark.stop()
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
