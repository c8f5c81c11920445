"""The server's resident memory while four clients each upload one large file at once, on its
own (the same test as the memory part of ``bench/smallfiles.py``, without the rest), so a
change to the ingest or to what the workers import can be measured in a minute:

    python -m bench.upload_rss --mib 1024

``blockdrive serve`` (2 workers, SQLite, the server's default chunk sizes) on a fresh home.
Prints the workers' RSS summed (the goal: under 300 MB), the same with the master, and the
workers' PSS summed (a page the forked processes share counted once), each idle and at its
peak (sampled every 50 ms from /proc), and the aggregate upload rate. Asserts nothing.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import MiB
from bench.datasets import random_file
from harness.server import start_server, stop_server

CLIENTS = 4
GOAL_MB = 300


def _field_kib(pid: int, source: str, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{source}").read_text().splitlines():
            if line.startswith(field):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def sample(master: int) -> dict[str, int]:
    """KiB now: the workers' RSS and PSS summed, and the RSS of master and workers."""
    try:
        workers = [int(p) for p in Path(f"/proc/{master}/task/{master}/children").read_text().split()]
    except OSError:
        workers = []
    rss = sum(_field_kib(p, "status", "VmRSS:") for p in workers)
    return {"workers_rss": rss, "workers_pss": sum(_field_kib(p, "smaps_rollup", "Pss:") for p in workers),
            "all_rss": rss + _field_kib(master, "status", "VmRSS:")}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.upload_rss", description=__doc__.splitlines()[0])
    ap.add_argument("--mib", type=int, default=1024, help="MiB each client uploads (default 1024)")
    ap.add_argument("--tmp", help="scratch folder (default: the system's temp dir)")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="bd-bench-rss-", dir=args.tmp))
    env = {"BLOCKDRIVE_STORAGE_CHUNK_MIN": str(256 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(MiB),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(4 * MiB)}
    srcs = [random_file(tmp / f"c{i}.bin", args.mib * MiB, seed=20 + i) for i in range(CLIENTS)]
    proc, srv = start_server(tmp, None, workers=2, extra_env=env)
    try:
        clients = [srv.user(premium=True) for _ in srcs]
        time.sleep(1)
        idle = sample(proc.pid)
        peak = dict(idle)
        stop = threading.Event()

        def sampler():
            while not stop.is_set():
                for k, v in sample(proc.pid).items():
                    peak[k] = max(peak[k], v)
                time.sleep(0.05)

        def upload(i: int) -> int:
            c = clients[i]
            with open(srcs[i], "rb") as fh:
                return c.put(f"/api/v1/nodes/{c.root}/children/c{i}.bin", data=fh).status_code

        t = threading.Thread(target=sampler)
        t.start()
        began = time.perf_counter()
        try:
            with ThreadPoolExecutor(CLIENTS) as ex:
                codes = list(ex.map(upload, range(CLIENTS)))
        finally:
            stop.set()
            t.join()
        rate = CLIENTS * args.mib / (time.perf_counter() - began)
    finally:
        stop_server(proc)
        shutil.rmtree(tmp, ignore_errors=True)
    mb = {k: (idle[k] * 1024 / 1e6, peak[k] * 1024 / 1e6) for k in idle}
    print(f"{CLIENTS} concurrent {args.mib:,} MiB uploads, statuses {codes}, {rate:.0f} MiB/s in all")
    print(f"{'':24} {'idle':>8} {'peak':>8}")
    for key, label in (("workers_rss", "workers' RSS, summed"), ("all_rss", "  with the master"),
                       ("workers_pss", "workers' PSS, summed")):
        print(f"{label:24} {mb[key][0]:>6.0f}MB {mb[key][1]:>6.0f}MB")
    verdict = "met" if mb["workers_rss"][1] <= GOAL_MB else "missed"
    print(f"goal: workers' RSS summed <= {GOAL_MB} MB at the peak: {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
