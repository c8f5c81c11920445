"""The client (``blockdrive push`` / ``sync``) against the real server (gunicorn, 2 workers,
SQLite + local packs, the server's default chunking: 256 KiB / 1 MiB / 4 MiB). Prints a table
and writes ``bench/results/client.json``; asserts nothing.

    .venv/bin/python bench/client.py                    # 256 MiB edit, 1 GiB re-push, 10,000 files
    .venv/bin/python bench/client.py --big-mib 256 --files 2000   # quicker

- one-byte edit: push a 256 MiB file, flip one byte in the middle, push again; the block
  bytes and blocks the *server* received (its ``blockdrive_batch_block_*`` counters) and the
  bytes on the wire (a counting proxy in front of it);
- unchanged re-push of a 1 GiB file: time vs the first push, with the local index (stat
  unchanged -> no rehash) and with ``--checksum`` (the whole file hashed again);
- sync of a tree of 10,000 small files (1-64 KiB, 100 folders) vs ``restic backup`` of the
  same tree into a fresh local repository (files/s; needs ``apt-get install -y restic``).

Every command runs as a user would run it (a ``blockdrive`` subprocess, Python start-up included).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from bench.datasets import random_file, small_files  # noqa: E402
from bench.common import MiB, machine, save, table  # noqa: E402
from harness.proxy import CountingProxy  # noqa: E402
from harness.server import BIN, start_server, stop_server  # noqa: E402

DEFAULT_CHUNKING = {"BLOCKDRIVE_STORAGE_CHUNK_MIN": str(256 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(MiB),
                    "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(4 * MiB)}


def counters(url: str) -> tuple[int, int]:
    text = requests.get(url + "/metrics", timeout=10).text
    vals = {}
    for line in text.splitlines():
        for name in ("blockdrive_batch_block_bytes_received_total", "blockdrive_batch_blocks_received_total"):
            if line.startswith(name + " "):
                vals[name] = int(float(line.split()[1]))
    return vals.get("blockdrive_batch_block_bytes_received_total", 0), vals.get("blockdrive_batch_blocks_received_total", 0)


def run(env, *args) -> tuple[float, dict]:
    t = time.perf_counter()
    out = subprocess.run([str(BIN), *args, "--json", "-q"], env=env, capture_output=True, text=True)
    dt = time.perf_counter() - t
    if out.returncode != 0:
        raise SystemExit(f"blockdrive {' '.join(args)} failed ({out.returncode}):\n{out.stderr}")
    return dt, json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--edit-mib", type=int, default=256)
    ap.add_argument("--big-mib", type=int, default=1024)
    ap.add_argument("--files", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=3, help="sync and restic runs on the small-file tree")
    ap.add_argument("--tmp", default=None, help="scratch folder (default: a temporary one)")
    ap.add_argument("--only", choices=("edit", "unchanged", "small"), action="append",
                    help="run only this part (repeatable; default: all three)")
    args = ap.parse_args()
    parts = set(args.only or ("edit", "unchanged", "small"))
    tmp = Path(tempfile.mkdtemp(prefix="bench-client-", dir=args.tmp))
    proc, srv = start_server(tmp / "srv", None, extra_env=DEFAULT_CHUNKING)
    proxy = CountingProxy(srv.url)
    rows, results = [], {"machine": machine()}
    try:
        token = srv.cli("user", "create", "bench@example.com", "--password", "password123",
                        "--premium").strip().splitlines()[-1]
        direct = {**os.environ, "BLOCKDRIVE_URL": srv.url, "BLOCKDRIVE_TOKEN": token,
                  "XDG_CACHE_HOME": str(tmp / "cache"), "XDG_CONFIG_HOME": str(tmp / "cfg")}
        # through the counting proxy only where bytes on the wire are measured: its copying
        # costs CPU the timed runs should not pay
        env = {**direct, "BLOCKDRIVE_URL": proxy.url}

        # 1. one byte edited in the middle of a big file
        if "edit" in parts:
            edit(args, tmp, env, srv, proxy, rows, results)
        # 2. an unchanged big file pushed again
        if "unchanged" in parts:
            unchanged(args, tmp, direct, srv, rows, results)
        # 3. many small files: sync vs restic backup
        if "small" in parts:
            small(args, tmp, direct, srv, rows, results)
    finally:
        proxy.close()
        stop_server(proc)
    print(f"blockdrive client benchmark on {machine()}\n")
    print(table(rows, ("measure", "figure", "target")))
    print(f"\nresults: {save('client', results)}")
    shutil.rmtree(tmp, ignore_errors=True)


def edit(args, tmp, env, srv, proxy, rows, results) -> None:
    f = random_file(tmp / "edit.bin", args.edit_mib * MiB, seed=11)
    t_first, _ = run(env, "push", str(f), "/bench/edit.bin")
    with open(f, "r+b") as fh:
        fh.seek(args.edit_mib * MiB // 2)
        b = fh.read(1)
        fh.seek(-1, 1)
        fh.write(bytes([b[0] ^ 0xFF]))
    b0, n0 = counters(srv.url)
    proxy.reset()
    t_edit, st = run(env, "push", str(f), "/bench/edit.bin")
    b1, n1 = counters(srv.url)
    results["edit"] = {"file_mib": args.edit_mib, "server_block_bytes": b1 - b0, "server_blocks": n1 - n0,
                       "wire_bytes_up": proxy.up, "first_push_s": t_first, "edit_push_s": t_edit,
                       "client_bytes_skipped": st["bytes_skipped"]}
    rows.append((f"{args.edit_mib} MiB, 1 byte edited: blocks received by the server", n1 - n0, "<= 2"))
    rows.append(("  block bytes received by the server", f"{(b1 - b0) / MiB:.2f} MiB", "<= 8 MiB"))
    rows.append(("  bytes on the wire, client -> server", f"{proxy.up / MiB:.2f} MiB", ""))
    rows.append(("  push time (first / after the edit)", f"{t_first:.1f} s / {t_edit:.1f} s", ""))
    f.unlink()


def unchanged(args, tmp, direct, srv, rows, results) -> None:
    g = random_file(tmp / "big.bin", args.big_mib * MiB, seed=12)
    t1, _ = run(direct, "push", str(g), "/bench/big.bin")
    b0, _ = counters(srv.url)
    t2, st2 = run(direct, "push", str(g), "/bench/big.bin")
    t3, st3 = run(direct, "push", str(g), "/bench/big.bin", "--checksum")
    b1, _ = counters(srv.url)
    results["unchanged"] = {"file_mib": args.big_mib, "first_push_s": t1, "repush_s": t2,
                            "repush_checksum_s": t3, "server_block_bytes": b1 - b0,
                            "status": [st2["status"], st3["status"]]}
    rows.append((f"{args.big_mib} MiB unchanged, pushed again: block bytes received", b1 - b0, "0"))
    rows.append(("  first push", f"{t1:.2f} s ({args.big_mib / t1:.0f} MiB/s)", ""))
    rows.append(("  re-push (index: stat unchanged)", f"{t2:.2f} s = {100 * t2 / t1:.1f}% of the first",
                 "<= 10%"))
    rows.append(("  re-push --checksum (whole file rehashed)", f"{t3:.2f} s = {100 * t3 / t1:.1f}% of the first",
                 ""))
    g.unlink()


def small(args, tmp, direct, srv, rows, results) -> None:
    """Sync vs restic backup, alternating, each into a fresh target (a new remote folder, user
    and empty local index; a new restic repository)."""
    tree = tmp / "tree"
    total = small_files(tree, args.files, seed=7)
    subprocess.run(["sync"])
    restic = shutil.which("restic")
    syncs, restics, st, t_resync = [], [], None, None
    for k in range(args.rounds):
        # a new user too: the server would otherwise (rightly) skip blocks the user already stores
        tok = srv.cli("user", "create", f"bench{k}@example.com", "--password", "password123",
                      "--premium").strip().splitlines()[-1]
        fresh = {**direct, "XDG_CACHE_HOME": str(tmp / f"cache-{k}"), "BLOCKDRIVE_TOKEN": tok}
        b0, _ = counters(srv.url)
        t, st = run(fresh, "sync", str(tree), f"/bench/tree-{k}")
        syncs.append(t)
        b1, _ = counters(srv.url)
        if st["bytes_sent"] != total:  # the workload must send every block, skip none
            raise SystemExit(f"sync sent {st['bytes_sent']} of {total} bytes: not a fair comparison")
        if k == 0:
            t_resync, _ = run(fresh, "sync", str(tree), f"/bench/tree-{k}")
        if restic:
            renv = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(tmp / f"restic-{k}"),
                    "RESTIC_CACHE_DIR": str(tmp / f"restic-cache-{k}")}
            subprocess.run([restic, "init"], env=renv, check=True, capture_output=True)
            t0 = time.perf_counter()
            subprocess.run([restic, "backup", "--quiet", str(tree)], env=renv, check=True, capture_output=True)
            restics.append(time.perf_counter() - t0)
    t_sync = statistics.median(syncs)
    sync_fps = args.files / t_sync
    t_start, _ = run(direct, "remote", "ls", "/")
    results["small"] = {"files": args.files, "bytes": total, "sync_s": syncs, "sync_files_per_s": sync_fps,
                        "server_block_bytes": b1 - b0, "uploaded": len(st["uploaded"]), "resync_s": t_resync,
                        "requests": st["requests"], "cli_startup_and_one_request_s": t_start}
    rows.append((f"sync of {args.files} small files ({total / MiB:.0f} MiB), median of {args.rounds}",
                 f"{t_sync:.2f} s = {sync_fps:.0f} files/s", ""))
    rows.append(("  runs", " ".join(f"{x:.2f}" for x in syncs) + " s", ""))
    rows.append(("  sync again, nothing changed", f"{t_resync:.2f} s", ""))
    rows.append(("  (CLI start-up + one request)", f"{t_start:.2f} s", ""))
    if restic:
        t_restic = statistics.median(restics)
        version = subprocess.run([restic, "version"], capture_output=True, text=True).stdout.strip()
        restic_fps = args.files / t_restic
        results["small"].update(restic_s=restics, restic_files_per_s=restic_fps, restic=version,
                                ratio=sync_fps / restic_fps)
        rows.append((f"restic backup of the same tree ({version.split(' compiled')[0]}), median",
                     f"{t_restic:.2f} s = {restic_fps:.0f} files/s", ""))
        rows.append(("  runs", " ".join(f"{x:.2f}" for x in restics) + " s", ""))
        rows.append(("  sync / restic (files/s)", f"{sync_fps / restic_fps:.2f}", ">= 0.5"))
    else:
        rows.append(("restic backup", "not installed (apt-get install -y restic)", ""))


if __name__ == "__main__":
    main()
