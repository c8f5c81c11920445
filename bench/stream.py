"""One stream's ingest in process against FastCDC + SHA-256 on one core, and where its CPU goes.

    python -m bench.stream [--size-mib 1024] [--repeat 3] [--profile]

Puts one random file through the domain ``put`` (cut, hash, dedup lookup, compress probe,
pack write and fsync, metadata commit), once with the blocks hashed in the reading thread
(``storage.ingest_hash_threads = 0``) and once by the default pool of two, and times
FastCDC + SHA-256 of the same bytes on one core (pyfastcdc + hashlib, no I/O); the three are
interleaved so all see the same machine load. For each it prints MB/s, the CPU seconds per
GiB (all threads) and the cores kept busy (CPU time / wall time), and each put's rate as a
share of the one-core rate (goal: >= 80%).

On a shared machine the wall-clock rates say little (a put can use two cores only if two are
free), so it also prints the CPU each stage costs alone, single-threaded, over the same
bytes: the floor of a put's CPU time, which the pool spreads over the cores. ``--profile``
adds cProfile of the put's own thread (worker threads are not profiled: their work shows as
waits on their futures).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import pstats
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.common import MiB, machine, save, table
from bench.datasets import random_file
from bench.ingest import chunk_hash, fresh_drive, put_file

REFERENCE = "FastCDC + SHA-256, one core (no I/O)"
# name -> storage.ingest_hash_threads of the put (None: the reference, no put)
CONTENDERS = {
    REFERENCE: None,
    "put, blocks hashed in the reading thread (ingest_hash_threads = 0)": 0,
    "put, blocks hashed and compressed by 2 threads (the default)": 2,
}


def measured(fn) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process) of ``fn()``."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def stage_costs(src: Path, work: Path) -> list[tuple[str, float]]:
    """CPU seconds of each stage of a put over the bytes of ``src``, run one after the other
    on each block in one thread (each block is dropped after its last stage, as in a put)."""
    from storage.blockwriter import encode
    from storage.chunking import FastCDCChunker
    names = ("read + FastCDC cut + copy of each block", "SHA-256 of each block", "whole-file SHA-256",
             "compress probe (zstd, 64 KiB per block)", "write + fsync")
    spent = dict.fromkeys(names, 0.0)
    whole = hashlib.sha256()
    with open(src, "rb", buffering=0) as fh, open(work / "stage.out", "wb", buffering=0) as out:
        views = iter(FastCDCChunker().chunks(fh))
        while True:
            c = time.thread_time()
            raw = bytes(next(views, b""))
            if not raw:
                break
            spent[names[0]] += time.thread_time() - c
            for name, step in zip(names[1:], (lambda: hashlib.sha256(raw).digest(), lambda: whole.update(raw),
                                              lambda: encode(raw, 3, 0.05), lambda: out.write(raw))):
                c = time.thread_time()
                step()
                spent[name] += time.thread_time() - c
        c = time.thread_time()
        os.fsync(out.fileno())
        spent[names[-1]] += time.thread_time() - c
    os.unlink(work / "stage.out")
    return list(spent.items())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="also profile one put and print the top entries")
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir under ./var)")
    args = ap.parse_args(argv)
    Path("var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir or "var", prefix="bench-stream-") as tmp:
        work = Path(tmp)
        size = args.size_mib * MiB
        src = random_file(work / "random.bin", size, seed=1)
        chunk_hash(src)  # warm the page cache: every contender reads it from memory
        wall: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for i in range(args.repeat):
            for name, threads in CONTENDERS.items():
                # a fresh drive each time: every block is new, none is deduplicated
                home = work / f"home{i}-{threads}"
                drive, user = fresh_drive(home, ingest_hash_threads=threads or 0)
                w, c = measured(lambda: chunk_hash(src) if threads is None
                                else put_file(drive, user, src, "random.bin"))
                wall[name].append(w)
                cpu[name].append(c)
                drive.close()
                # Its packs go at once. Kept, they would grow the page cache by a GiB a run into
                # memory the machine has not touched yet, which on a VM can cost the next writes
                # more kernel time than the put itself (2.5 CPU s/GiB against 0.3 on ours).
                shutil.rmtree(home, ignore_errors=True)
        stages = stage_costs(src, work)
        if args.profile:
            drive, user = fresh_drive(work / "home-profile")
            prof = cProfile.Profile()
            prof.runcall(put_file, drive, user, src, "random.bin")
            drive.close()
    mb, gib = size / 1e6, size / (1024 * MiB)
    ref = statistics.median(wall[REFERENCE])
    rows = []
    for name in CONTENDERS:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rows.append((name, f"{mb / w:.0f}", f"{c / gib:.2f}", f"{c / w:.2f}",
                     "" if name == REFERENCE else f"{ref / w:.0%} of the first (goal >= 80%)"))
    print(f"\none {args.size_mib} MiB stream on {machine()}  (median of {args.repeat}, interleaved)\n")
    print(table(rows, ("measurement", "MB/s", "CPU s/GiB", "cores busy", "ratio")))
    total = sum(c for _, c in stages)
    print("\neach stage of a put, one thread:\n")
    print(table([(n, f"{c / gib:.2f}", f"{c / total:.0%}") for n, c in stages] + [("sum", f"{total / gib:.2f}", "")],
                ("stage", "CPU s/GiB", "share")))
    if args.profile:
        print("\nput, calling thread, by internal time:")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    save("stream", {"size_mib": args.size_mib, "machine": machine(), "repeat": args.repeat,
                    "mb_s": {r[0]: float(r[1]) for r in rows},
                    "cpu_s_per_gib": {r[0]: float(r[2]) for r in rows},
                    "cores_busy": {r[0]: float(r[3]) for r in rows},
                    "stage_cpu_s_per_gib": {n: c / gib for n, c in stages}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
