"""Does the time of an upload tell whether someone else stores its content? Against the real
server (gunicorn, 2 workers, SQLite + local packs): user A stores N blocks (or N one-block
files); user B then uploads, interleaved in random order, the N A has and N fresh ones, one
request at a time, and the latency of each is taken. ``--route`` picks how: ``block`` (PUT
/blocks/{hash}), ``put`` (a plain PUT of a small file) or ``tus`` (a tus creation-with-upload
of a small file). Prints medians, p90s, their ratio, and how well the best single threshold on
one request's latency tells the two kinds apart (50% = no better than a coin). Writes
``bench/results/dedup_timing.json`` (``dedup_timing_put.json``, ...); asserts nothing.

    .venv/bin/python bench/dedup_timing.py --n 300 --size 4096
    .venv/bin/python bench/dedup_timing.py --route put
    PYTHONPATH=/path/to/other/checkout .venv/bin/python bench/dedup_timing.py   # that server's code
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import itertools
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import machine, save, table  # noqa: E402
from harness.server import start_server, stop_server  # noqa: E402


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def best_threshold(known: list[float], fresh: list[float]) -> tuple[float, float]:
    """(accuracy, threshold) of the best rule "faster than t means known" (or its reverse) on
    one request's latency, over every threshold the data offers."""
    labelled = sorted([(t, 1) for t in known] + [(t, 0) for t in fresh])
    n, k = len(labelled), len(known)
    best = (0.5, 0.0)
    below_known = below_fresh = 0
    for t, is_known in labelled:
        below_known += is_known
        below_fresh += 1 - is_known
        right = below_known + (n - k - below_fresh)  # known below t, fresh above
        acc = max(right, n - right) / n
        if acc > best[0]:
            best = (acc, t)
    return best


def _b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


def sender(route: str, client):
    """A function that uploads one block's worth of bytes by ``route`` as ``client``."""
    names = itertools.count()

    def block(x: bytes):
        return client.put(f"/api/v1/blocks/{hashlib.sha256(x).hexdigest()}", data=x)

    def put(x: bytes):
        return client.upload(client.root, f"f{next(names)}.bin", x)

    def tus(x: bytes):
        return client.post("/api/v1/uploads", data=x, headers={
            "Tus-Resumable": "1.0.0", "Upload-Length": str(len(x)), "Content-Type": "application/offset+octet-stream",
            "Upload-Metadata": f"filename {_b64(f't{next(names)}.bin')},parent_id {_b64(str(client.root))}"})
    return {"block": block, "put": put, "tus": tus}[route]


def run(n: int, size: int, workers: int, route: str = "block") -> dict:
    with tempfile.TemporaryDirectory(prefix="bd-bench-") as tmp:
        proc, srv = start_server(Path(tmp), None, workers=workers)
        try:
            a, b = srv.user(), srv.user()
            send_a, send_b = sender(route, a), sender(route, b)
            known = [os.urandom(size) for _ in range(n)]
            fresh = [os.urandom(size) for _ in range(n)]
            for x in known:
                r = send_a(x)
                assert r.status_code in (200, 201), r.text
            for _ in range(20):  # warm B's connection and the workers
                send_b(os.urandom(size))
            order = [("known", x) for x in known] + [("fresh", x) for x in fresh]
            random.Random(1).shuffle(order)
            times: dict[str, list[float]] = {"known": [], "fresh": []}
            for kind, x in order:
                t = time.perf_counter()
                r = send_b(x)
                times[kind].append((time.perf_counter() - t) * 1000)
                assert r.status_code in (200, 201), r.text
            puts = 3 * n + 20
            pack_files = sum(1 for _ in (srv.home / "packs").rglob("*.pack"))
        finally:
            stop_server(proc)
    acc, thr = best_threshold(times["known"], times["fresh"])
    return {
        "route": route, "n": n, "block_bytes": size, "workers": workers, "machine": machine(),
        "known_median_ms": statistics.median(times["known"]), "fresh_median_ms": statistics.median(times["fresh"]),
        "known_p90_ms": pct(times["known"], 0.9), "fresh_p90_ms": pct(times["fresh"], 0.9),
        "median_ratio": statistics.median(times["fresh"]) / statistics.median(times["known"]),
        "classifier_accuracy": acc, "classifier_threshold_ms": thr,
        "uploads": puts, "pack_files": pack_files,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=300, help="blocks of each kind")
    ap.add_argument("--size", type=int, default=4096, help="bytes per block")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--route", choices=("block", "put", "tus"), default="block",
                    help="block PUT, plain PUT of a one-block file, or tus upload of one")
    args = ap.parse_args()
    res = run(args.n, args.size, args.workers, args.route)
    what = {"block": "block PUT", "put": "plain file PUT", "tus": "tus upload"}[args.route]
    print(f"{what} latency, {args.n} of {args.size} bytes of each kind, interleaved; {res['machine']}")
    print(table([
        ("another user stores it", f"{res['known_median_ms']:.2f}", f"{res['known_p90_ms']:.2f}"),
        ("fresh content", f"{res['fresh_median_ms']:.2f}", f"{res['fresh_p90_ms']:.2f}"),
    ], ("content", "median ms", "p90 ms")))
    print(f"median ratio fresh/known: {res['median_ratio']:.3f}")
    print(f"best single-request threshold ({res['classifier_threshold_ms']:.2f} ms) tells them apart "
          f"{res['classifier_accuracy'] * 100:.1f}% of the time (50% = a coin toss)")
    print(f"{res['uploads']} uploads left {res['pack_files']} pack file(s)")
    name = "dedup_timing" if args.route == "block" else f"dedup_timing_{args.route}"
    print(f"written to {save(name, res)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
