"""``python -m rehearsal [--quick] [--only PART,...]`` (``make rehearsal``): the scale-out
rehearsal. Runs the whole cluster with every kill (``cluster``), then each tier's own drill,
which adds the figures only a tier alone can give (requests per second through the balancer
with 1, 2 and 3 API servers; each job's time on Spark standalone and on ``local[2]``). Prints a
summary, writes every figure to ``bench/results/rehearsal-<profile>.json`` (``make docs`` copies
it to ``docs/results/`` for docs/scale.md), and exits 1 if any pass condition failed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PARTS = ("cluster", "api", "hdfs", "spark", "schedulers", "mariadb")


def run_part(part: str, folder: Path, quick: bool) -> dict:
    """One part's figures; a part that raised is recorded as failed, with its error."""
    from . import api, cluster, hdfs, mariadb, schedulers, spark
    folder.mkdir(parents=True, exist_ok=True)
    if part == "cluster":
        return cluster.rehearse(folder, quick)
    if part == "mariadb":
        return mariadb.replica_failover(folder, quick)
    # each tier's drill on an empty MariaDB of its own (the primary of a pair, as the cluster runs it)
    with mariadb.MariaDBPair(folder / "db") as pair:
        if part == "api":
            return api.api_failover(folder, pair.primary_url, str(folder / "packs"), quick)
        if part == "hdfs":
            return hdfs.hdfs_failover(folder, pair.primary_url, quick)
        with hdfs.MiniHdfs(folder / "hdfs", datanodes=2, replication=2) as dfs:
            if part == "spark":
                return spark.spark_failover(folder, pair.primary_url, dfs.url, quick)
            return schedulers.scheduler_failover(folder, pair.primary_url, dfs.url, quick)


def passed(part: str, figures: dict) -> bool:
    """Whether a part's pass conditions held (each drill names its own; see their docstrings)."""
    if "error" in figures:
        return False
    if "passed" in figures:
        return bool(figures["passed"])
    zero = ("lost_acknowledged_writes", "different_acknowledged_writes", "errors_after_retry",
            "different_reads", "under_replicated_after")
    true = ("fsck_clean", "killed_server_marked_down", "restarted_server_marked_up", "took_over",
            "next_run_completed", "restarted_follows", "tables_equal")
    return (all(figures.get(k, 0) == 0 for k in zero) and all(figures.get(k, True) is True for k in true)
            and figures.get("most_leaders_at_once", 1) <= 1)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m rehearsal", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short load and outages (minutes, not tens of minutes)")
    ap.add_argument("--only", default=",".join(PARTS), help=f"comma-separated parts of {', '.join(PARTS)}")
    ap.add_argument("--folder", type=Path, default=ROOT / "var" / "rehearsal",
                    help="where the processes keep their data and logs (emptied first)")
    ap.add_argument("--out", type=Path, help="figures JSON (default bench/results/rehearsal-<profile>.json)")
    args = ap.parse_args(argv)
    parts = [p.strip() for p in args.only.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        ap.error(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    profile = "quick" if args.quick else "full"
    out = args.out or ROOT / "bench" / "results" / f"rehearsal-{profile}.json"
    shutil.rmtree(args.folder, ignore_errors=True)
    results: dict = {"profile": profile, "started": time.strftime("%Y-%m-%d %H:%M:%S"), "cores": os.cpu_count(),
                     "parts": {}}
    for part in parts:
        print(f"[rehearsal] {part} ...", flush=True)
        t0 = time.monotonic()
        try:
            figures = run_part(part, args.folder / part, args.quick)
        except Exception as e:  # noqa: BLE001 - one part's failure is recorded; the others still run
            traceback.print_exc()
            figures = {"error": f"{type(e).__name__}: {e}"}
        figures["seconds"] = round(time.monotonic() - t0, 1)
        figures["ok"] = passed(part, figures)
        results["parts"][part] = figures
        print(f"[rehearsal] {part}: {'passed' if figures['ok'] else 'FAILED'} in {figures['seconds']} s", flush=True)
    results["passed"] = all(p["ok"] for p in results["parts"].values())
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print(f"[rehearsal] {'passed' if results['passed'] else 'FAILED'}; figures in {out}")
    return 0 if results["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
