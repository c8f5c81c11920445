"""One stream's ingest in process against FastCDC + SHA-256 on one core, with a profile.

    python -m bench.stream [--size-mib 1024] [--repeat 3] [--profile]

Puts one random file through the domain ``put`` (chunk, hash, dedup lookup, compress probe,
pack write and fsync, metadata commit), with the blocks hashed in the reading thread and by
a pool of two, and times FastCDC + SHA-256 of the same bytes on one core (pyfastcdc +
hashlib, no I/O), interleaved so all see the same machine load; prints the rates, the cores
kept busy (process CPU time / wall time) and each put's ratio to the one-core rate (goal:
>= 80%). With ``--profile`` it
also prints where the put's own thread spends its time (cProfile; worker threads are not
profiled, so their work shows as waits on their futures).
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
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
    "put, blocks hashed by 2 threads (ingest_hash_threads = 2, the default)": 2,
}


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
        chunk_hash(src)  # warm the page cache: both contenders read it from memory
        wall: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        cpu: dict[str, list[float]] = {name: [] for name in CONTENDERS}
        for i in range(args.repeat):
            for name, threads in CONTENDERS.items():
                # a fresh drive each time: every block is new, none is deduplicated
                drive, user = fresh_drive(work / f"home{i}-{threads}", ingest_hash_threads=threads or 0)
                t, c = time.perf_counter(), time.process_time()
                if threads is None:
                    chunk_hash(src)
                else:
                    put_file(drive, user, src, "random.bin")
                wall[name].append(time.perf_counter() - t)
                cpu[name].append(time.process_time() - c)
                drive.close()
        if args.profile:
            drive, user = fresh_drive(work / "home-profile")
            prof = cProfile.Profile()
            prof.runcall(put_file, drive, user, src, "random.bin")
            drive.close()
    mb = size / 1e6
    ref = statistics.median(wall[REFERENCE])
    rows = []
    for name in CONTENDERS:
        w, c = statistics.median(wall[name]), statistics.median(cpu[name])
        rows.append((name, f"{mb / w:.0f}", f"{c / w:.2f}",
                     "" if name == REFERENCE else f"{ref / w:.0%} of the first (goal >= 80%)"))
    print(f"\none {args.size_mib} MiB stream on {machine()}  (median of {args.repeat}, interleaved)\n")
    print(table(rows, ("measurement", "MB/s", "cores busy", "ratio")))
    if args.profile:
        print("\nput, calling thread, by internal time:")
        pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(15)
    save("stream", {"size_mib": args.size_mib, "machine": machine(), "repeat": args.repeat,
                    "mb_s": {r[0]: float(r[1]) for r in rows}, "cores_busy": {r[0]: float(r[2]) for r in rows}})
    return 0


if __name__ == "__main__":
    sys.exit(main())
