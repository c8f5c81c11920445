"""HTTP benchmarks of the real server (gunicorn, 2 workers, SQLite + local packs). Prints a
table of figures and ratios and writes ``bench/results/http.json``; asserts nothing.

    .venv/bin/python bench/http_put.py --mib 1024

- upload: one file through HTTP PUT vs the in-process ``Drive.put`` of the same bytes
  (each into a store of its own, so both store every block);
- download: HTTP GET of that file vs reading the same bytes from a local file, cold (page
  cache dropped before each, when run as root) and warm;
- metadata: small GET /api/v1/nodes/{id} requests per second from 8 client threads;
- RSS: the server's resident memory (gunicorn master + workers) while 4 clients upload at once.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from bench.datasets import random_file  # noqa: E402
from bench.common import MiB, drop_caches, machine, save, table  # noqa: E402
from harness.server import start_server, stop_server  # noqa: E402


def _rss(pid: int, field: str = "VmRSS:") -> int:
    """Resident bytes of ``pid`` and its children (the gunicorn workers). ``Pss:`` counts a
    page shared by the forked workers once in all, where the RSS sum counts it in each."""
    total = 0
    try:
        children = [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        children = []
    for p in [pid] + children:
        try:
            src = "status" if field == "VmRSS:" else "smaps_rollup"
            for line in Path(f"/proc/{p}/{src}").read_text().splitlines():
                if line.startswith(field):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def _can_drop_caches() -> bool:
    return os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)


def _read_file(path: Path, cold: bool) -> float:
    if cold:
        drop_caches()
    t = time.perf_counter()
    with open(path, "rb", buffering=0) as fh:
        while fh.read(MiB):
            pass
    return path.stat().st_size / (time.perf_counter() - t)


def _get(client, node: int, cold: bool) -> float:
    if cold:
        drop_caches()
    t = time.perf_counter()
    n = 0
    with client.get(f"/api/v1/nodes/{node}/content", stream=True) as r:
        r.raise_for_status()
        for chunk in r.iter_content(MiB):
            n += len(chunk)
    return n / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rss-mib", type=int, default=None, help="per-client size of the RSS test (default --mib)")
    ap.add_argument("--metadata-requests", type=int, default=3000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bd-bench-"))
    src = random_file(tmp / "src.bin", args.mib * MiB, seed=1)
    size = src.stat().st_size
    cold_ok = _can_drop_caches()
    env = {"BLOCKDRIVE_STORAGE_CHUNK_MIN": str(256 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(1024 * 1024),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(4 * 1024 * 1024)}
    proc, srv = start_server(tmp, None, workers=2, extra_env=env)
    res: dict = {"size_mib": args.mib, "machine": machine(), "workers": 2, "cold_cache": cold_ok}
    try:
        a = srv.user(premium=True)
        # in-process put (a separate home, same settings)
        from storage.config import load_config
        from storage.db import make_engine, migrate
        from storage.drive import Drive
        cfg = load_config(env={}, overrides={"storage": {"home": str(tmp / "inproc")}, "security": {"scrypt_n": 1024}})
        eng = make_engine(cfg.database_url)
        migrate(eng)
        d = Drive(cfg, engine=eng)
        u, _ = d.create_user("bench@example.com", "password123", premium=True)
        t = time.perf_counter()
        with open(src, "rb") as fh:
            d.put(u.id, u.root_id, "src.bin", fh)
        inproc = size / (time.perf_counter() - t)
        d.close()
        t = time.perf_counter()
        with open(src, "rb") as fh:
            r = a.put(f"/api/v1/nodes/{a.root}/children/src.bin", data=fh)
        http_up = size / (time.perf_counter() - t)
        assert r.status_code == 201, r.text
        node = r.json()["id"]
        res["upload_mib_s"] = {"http_put": http_up / MiB, "in_process_put": inproc / MiB}

        down = {}
        for mode in (["cold"] if cold_ok else []) + ["warm"]:
            cold = mode == "cold"
            if not cold:  # warm both: the file and the packs
                _read_file(src, False)
                _get(a, node, False)
            disk = _read_file(src, cold)
            http = _get(a, node, cold)
            down[mode] = {"http_get": http / MiB, "disk_read": disk / MiB}
        res["download_mib_s"] = down

        sessions = threading.local()

        def one(_):
            s = getattr(sessions, "s", None)
            if s is None:
                s = sessions.s = requests.Session()
                s.headers["Authorization"] = f"Bearer {a.token}"
            return s.get(f"{srv.url}/api/v1/nodes/{node}").status_code
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(200)))
            t = time.perf_counter()
            codes = list(ex.map(one, range(args.metadata_requests)))
            rps = len(codes) / (time.perf_counter() - t)
        res["metadata_rps"] = rps
        res["metadata_all_200"] = set(codes) == {200}

        per = args.rss_mib or args.mib
        srcs = [random_file(tmp / f"c{i}.bin", per * MiB, seed=10 + i) for i in range(4)]
        peak, peak_pss, stop = 0, 0, threading.Event()

        def sample():
            nonlocal peak, peak_pss
            while not stop.is_set():
                peak = max(peak, _rss(proc.pid))
                peak_pss = max(peak_pss, _rss(proc.pid, "Pss:"))
                time.sleep(0.05)
        base = _rss(proc.pid)
        sampler = threading.Thread(target=sample)
        sampler.start()

        def up(i):
            with open(srcs[i], "rb") as fh:
                return a.put(f"/api/v1/nodes/{a.root}/children/c{i}.bin", data=fh).status_code
        t = time.perf_counter()
        with ThreadPoolExecutor(4) as ex:
            codes = list(ex.map(up, range(4)))
        concurrent = 4 * per * MiB / (time.perf_counter() - t)
        stop.set()
        sampler.join()
        res["rss"] = {"idle_mb": base / 1e6, "peak_mb": peak / 1e6, "peak_pss_mb": peak_pss / 1e6, "per_client_mib": per, "statuses": codes,
                      "aggregate_upload_mib_s": concurrent / MiB}
    finally:
        stop_server(proc)

    up_ratio = res["upload_mib_s"]["http_put"] / res["upload_mib_s"]["in_process_put"]
    rows = [("upload: HTTP PUT / in-process put", f"{res['upload_mib_s']['http_put']:.0f} / "
             f"{res['upload_mib_s']['in_process_put']:.0f} MiB/s", f"{100 * up_ratio:.0f}%", ">= 60%",
             "ok" if up_ratio >= 0.6 else "MISSED")]
    res["ratios"] = {"upload": up_ratio}
    for mode, v in res["download_mib_s"].items():
        ratio = v["http_get"] / v["disk_read"]
        res["ratios"][f"download_{mode}"] = ratio
        goal = mode == "cold" or not cold_ok
        rows.append((f"download ({mode}): HTTP GET / disk read", f"{v['http_get']:.0f} / {v['disk_read']:.0f} MiB/s",
                     f"{100 * ratio:.0f}%", ">= 70%" if goal else "(info)",
                     ("ok" if ratio >= 0.7 else "MISSED") if goal else ""))
    rows.append(("metadata GET /nodes/{id}, 2 workers", f"{res['metadata_rps']:.0f} req/s", "", ">= 500",
                 "ok" if res["metadata_rps"] >= 500 and res["metadata_all_200"] else "MISSED"))
    rss = res["rss"]
    rows.append((f"server RSS, 4 x {per} MiB uploads at once", f"{rss['peak_mb']:.0f} MB peak "
                 f"({rss['idle_mb']:.0f} idle)", "", "<= 300 MB",
                 "ok" if rss["peak_mb"] <= 300 and set(rss["statuses"]) == {201} else "MISSED"))
    rows.append(("  the same as PSS (shared pages counted once)", f"{rss['peak_pss_mb']:.0f} MB peak",
                 "", "(info)", ""))
    print(f"\nblockdrive HTTP bench, {args.mib} MiB, {res['machine']}")
    if not cold_ok:
        print("(not root: the page cache could not be dropped; download figures are warm only)")
    print(table(rows, ("what", "figures", "ratio", "goal", "")))
    print(f"written to {save('http', res)}")


if __name__ == "__main__":
    main()
