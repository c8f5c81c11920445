"""HTTP benchmarks of the real server (gunicorn, 2 workers). Prints figures; asserts nothing.

    .venv/bin/python bench/http.py --mib 256

- upload: one file through HTTP PUT vs the in-process ``Drive.put`` of the same bytes
- download: HTTP GET of that file vs reading the same bytes from a local file
- metadata: small GET /api/v1/nodes/{id} requests per second from 8 client threads
- RSS: the server's resident memory (all gunicorn processes) while 4 clients upload at once
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

# This file is named http.py: keep its folder off the path, or it shadows the standard library's http.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from tests.e2e.conftest import start_server, stop_server  # noqa: E402


def _file(path: Path, mib: int) -> None:
    with open(path, "wb") as fh:
        for _ in range(mib):
            fh.write(os.urandom(1024 * 1024))


def _rss(pid: int) -> int:
    """Resident bytes of ``pid`` and its children (the gunicorn workers)."""
    total = 0
    for p in [pid] + [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        except FileNotFoundError:
            pass
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mib", type=int, default=256)
    ap.add_argument("--rss-mib", type=int, default=None, help="per-client size of the RSS test (default --mib)")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bd-bench-"))
    src = tmp / "src.bin"
    _file(src, args.mib)
    size = src.stat().st_size
    env = {"BLOCKDRIVE_STORAGE_CHUNK_MIN": str(256 * 1024), "BLOCKDRIVE_STORAGE_CHUNK_AVG": str(1024 * 1024),
           "BLOCKDRIVE_STORAGE_CHUNK_MAX": str(4 * 1024 * 1024)}
    proc, srv = start_server(tmp, None, workers=2, extra_env=env)
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
        t = time.perf_counter()
        with open(src, "rb") as fh:
            r = a.put(f"/api/v1/nodes/{a.root}/children/src.bin", data=fh)
        http_up = size / (time.perf_counter() - t)
        assert r.status_code == 201, r.text
        node = r.json()["id"]
        print(f"upload   {args.mib} MiB: HTTP PUT {http_up / 2**20:7.1f} MiB/s, in-process put {inproc / 2**20:7.1f} MiB/s"
              f" -> {100 * http_up / inproc:.0f}% (target >= 60%)")
        os.system(f"cat {src} > /dev/null")  # warm the page cache for a fair disk figure
        t = time.perf_counter()
        with open(src, "rb") as fh:
            while fh.read(1024 * 1024):
                pass
        disk = size / (time.perf_counter() - t)
        t = time.perf_counter()
        n = 0
        with a.get(f"/api/v1/nodes/{node}/content", stream=True) as r:
            for chunk in r.iter_content(1024 * 1024):
                n += len(chunk)
        http_down = n / (time.perf_counter() - t)
        print(f"download {args.mib} MiB: HTTP GET {http_down / 2**20:7.1f} MiB/s, disk read {disk / 2**20:7.1f} MiB/s"
              f" -> {100 * http_down / disk:.0f}% (target >= 70%)")
        # metadata requests/s
        sessions = threading.local()

        def one(_):
            s = getattr(sessions, "s", None)
            if s is None:
                s = sessions.s = requests.Session()
                s.headers["Authorization"] = f"Bearer {a.token}"
            return s.get(f"{srv.url}/api/v1/nodes/{node}").status_code
        with ThreadPoolExecutor(8) as ex:
            list(ex.map(one, range(100)))
            t = time.perf_counter()
            codes = list(ex.map(one, range(2000)))
            rps = len(codes) / (time.perf_counter() - t)
        print(f"metadata: {rps:.0f} requests/s with 2 workers (target >= 500); all 200: {set(codes) == {200}}")
        # RSS with 4 concurrent uploads
        peak, stop = 0, threading.Event()

        def sample():
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, _rss(proc.pid))
                time.sleep(0.05)
        sampler = threading.Thread(target=sample)
        sampler.start()
        base = _rss(proc.pid)
        per = args.rss_mib or args.mib
        srcs = []
        for i in range(4):
            p = tmp / f"c{i}.bin"
            _file(p, per)
            srcs.append(p)

        def up(i):
            with open(srcs[i], "rb") as fh:
                return a.put(f"/api/v1/nodes/{a.root}/children/c{i}.bin", data=fh).status_code
        with ThreadPoolExecutor(4) as ex:
            codes = list(ex.map(up, range(4)))
        stop.set()
        sampler.join()
        print(f"RSS: {base / 2**20:.0f} MiB idle, peak {peak / 2**20:.0f} MiB while 4 clients each uploaded {per} MiB"
              f" (target <= 300 MB); statuses {codes}")
    finally:
        stop_server(proc)


if __name__ == "__main__":
    main()
