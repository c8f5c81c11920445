"""Small HTTP PUTs under two or more server settings, in turns: which setting lets
``blockdrive serve`` take small files faster, on a machine whose speed drifts from minute to
minute. Prints every run and each setting's medians; asserts nothing.

    .venv/bin/python -m bench.put_turns --runs 5 --files 2000 \\
        BLOCKDRIVE_STORAGE_GROUP_COMMIT=on BLOCKDRIVE_STORAGE_GROUP_COMMIT=off

Each setting is ``NAME=VALUE[,NAME=VALUE...]`` of the server's environment (``default``: none).
A run starts the real server (:class:`bench.suite.Http`: gunicorn, 2 workers, SQLite + local
packs) with one setting, puts 50 files to warm it, then times ``--files`` PUTs of 4 KiB by
:mod:`bench.smallfiles`' 16 clients into one folder, reading ``/proc/stat`` before and after:
files/s, the share of the machine busy, the machine's CPU per PUT (both cores: the server's
and the clients' own, about 1 ms), and the uploads each metadata transaction committed (from
``/metrics``; 1 without group commit). The settings take turns run by run, so a drift of the
machine's speed falls on each alike. Results in ``bench/results/put_turns.json``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import tempfile
from pathlib import Path

import requests

from bench.common import machine, save, table
from bench.smallfiles import put_concurrently, small_payloads
from bench.suite import Http

WARM = 50


def parse_setting(text: str) -> dict[str, str]:
    """``NAME=VALUE,NAME=VALUE`` as a dict; ``default`` (or nothing) as none."""
    if text.strip() in ("", "default"):
        return {}
    out = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not name.strip():
            raise SystemExit(f"not NAME=VALUE: {part!r}")
        out[name.strip()] = value.strip()
    return out


def _grouped(url: str) -> tuple[float, float]:
    """Uploads committed and the transactions that committed them, so far, by the server's
    ``/metrics`` (the group-commit histogram: nothing without group commit)."""
    text = requests.get(f"{url}/metrics", timeout=30).text

    def value(name: str) -> float:
        return sum(float(v) for v in re.findall(rf"^{name} ([0-9.e+]+)$", text, re.M))
    return value("blockdrive_commit_group_size_sum"), value("blockdrive_commit_group_size_count")


def _cpu() -> tuple[int, int]:
    """The machine's jiffies so far: all of them, and the idle ones (idle + iowait)."""
    with open("/proc/stat") as fh:
        v = [int(x) for x in fh.readline().split()[1:]]
    return sum(v), v[3] + v[4]


def one_run(env: dict[str, str], files: int) -> dict:
    """Start the server with ``env`` added to its environment, then time ``files`` PUTs."""
    with tempfile.TemporaryDirectory(prefix="bd-put-turns-") as tmp:
        http = Http(Path(tmp), env)
        try:
            c = http.user()
            folder = c.mkdir(c.root, "small")["id"]
            headers = {"Authorization": f"Bearer {c.token}"}
            base = f"{http.url}/api/v1/nodes/{folder}/children"
            payloads = small_payloads(WARM + files, 61)
            put_concurrently([f"{base}/w{i}" for i in range(WARM)], payloads[:WARM], headers)
            up0, tx0 = _grouped(http.url)
            total0, idle0 = _cpu()
            rate = put_concurrently([f"{base}/f{i:05d}.bin" for i in range(files)], payloads[WARM:], headers)
            total1, idle1 = _cpu()
            up1, tx1 = _grouped(http.url)
        finally:
            http.close()
    busy = 1 - (idle1 - idle0) / max(total1 - total0, 1)
    busy_seconds = (total1 - total0) * busy / os.sysconf("SC_CLK_TCK")
    # without group commit every upload is a transaction of its own
    grouped = (up1 - up0) / (tx1 - tx0) if tx1 > tx0 else 1.0
    return {"files_per_s": rate, "busy": busy, "cpu_ms_per_put": busy_seconds / files * 1000,
            "uploads_per_commit": grouped}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("settings", nargs="+", help="NAME=VALUE[,NAME=VALUE...] of the server's environment, or default")
    ap.add_argument("--runs", type=int, default=3, help="runs of each setting")
    ap.add_argument("--files", type=int, default=2000)
    args = ap.parse_args(argv)
    envs = [parse_setting(s) for s in args.settings]
    runs: dict[str, list[dict]] = {s: [] for s in args.settings}
    print(machine())
    for turn in range(args.runs):
        for name, env in zip(args.settings, envs):
            r = one_run(env, args.files)
            runs[name].append(r)
            print(f"turn {turn + 1}: {name}: {r['files_per_s']:.1f} files/s, machine {r['busy'] * 100:.0f}% busy, "
                  f"{r['cpu_ms_per_put']:.2f} CPU ms per PUT, {r['uploads_per_commit']:.2f} uploads per commit",
                  flush=True)
    med = {name: {k: statistics.median(r[k] for r in rs)
                  for k in ("files_per_s", "busy", "cpu_ms_per_put", "uploads_per_commit")}
           for name, rs in runs.items()}
    print(f"\n{args.files} PUTs of 4 KiB, 16 clients, 2 workers; medians of {args.runs} runs each")
    print(table([(name, f"{m['files_per_s']:.1f}", f"{m['busy'] * 100:.0f}%", f"{m['cpu_ms_per_put']:.2f}",
                  f"{m['uploads_per_commit']:.2f}", " ".join(f"{r['files_per_s']:.0f}" for r in runs[name]))
                 for name, m in med.items()],
                ("setting", "files/s", "machine busy", "CPU ms/PUT", "uploads/commit", "every run (files/s)")))
    save("put_turns", {"machine": machine(), "files": args.files, "runs": runs, "medians": med})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
