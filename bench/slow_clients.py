"""Slow clients against the real server, one worker model after another: while N connections
send their headers or bodies a byte a second, how many ``/healthz`` requests are answered and
how fast, and how many slow connections the server has closed by the end. Prints a table;
asserts nothing.

    .venv/bin/python bench/slow_clients.py [--hold 15] [--clients 10 24 64]

Models (each a gunicorn with 2 workers on a fresh embedded home):
- ``gthread-4``: the former setup, gthread with 4 threads and no read deadline;
- ``gthread-32``: 32 threads, still no deadline;
- ``gevent``: gunicorn's gevent worker (1000 connections per worker), no deadline;
- ``deadline-32``/``deadline-64``: ``blockdrive serve`` (gthread with 32 or 64 threads per
  worker, header and body deadlines at their defaults: 10 s, 30 s + 1 s per 500 bytes).
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import urlparse

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import requests  # noqa: E402

from harness.server import BIN, free_port, start_server  # noqa: E402

GUNICORN = Path(sys.executable).parent / "gunicorn"
MODELS = {
    "gthread-4": ["-k", "gthread", "--threads", "4"],
    "gthread-32": ["-k", "gthread", "--threads", "32"],
    "gevent": ["-k", "gevent", "--worker-connections", "1000"],
    "deadline-32": {"BLOCKDRIVE_SERVER_THREADS": "32"},  # blockdrive serve, its [server] threads
    "deadline-64": {"BLOCKDRIVE_SERVER_THREADS": "64"},
}


def _gunicorn(tmp: Path, args: list[str]):
    """A plain gunicorn CLI server over the same app and home (``blockdrive init`` first)."""
    env = {**os.environ, "BLOCKDRIVE_HOME": str(tmp / "home")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    subprocess.run([str(BIN), "init"], env=env, check=True, capture_output=True)
    port = free_port()
    proc = subprocess.Popen([str(GUNICORN), "-w", "2", *args, "-b", f"127.0.0.1:{port}", "webapi:create_app()"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
                            cwd=str(Path(__file__).resolve().parents[1]))
    url = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if requests.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except requests.RequestException:
            pass
        time.sleep(0.2)
    proc.kill()
    raise RuntimeError("gunicorn did not start")


def _open_slow(url: str, n: int) -> list[tuple[socket.socket, bytes]]:
    u = urlparse(url)
    out = []
    for i in range(n):
        s = socket.create_connection((u.hostname, u.port), timeout=5)
        if i % 2:  # headers a byte at a time
            rest = f"GET /healthz HTTP/1.1\r\nHost: {u.netloc}\r\nX-Pad: {'a' * 500}\r\n\r\n".encode()
        else:  # a login body a byte at a time
            s.sendall(f"POST /api/v1/auth/tokens HTTP/1.1\r\nHost: {u.netloc}\r\nContent-Type: application/json\r\n"
                      f"Content-Length: 500\r\n\r\n".encode())
            rest = b"{" + b" " * 499
        s.setblocking(False)
        out.append((s, rest))
    return out


def run(url: str, n: int, hold: float) -> dict:
    slow = _open_slow(url, n)
    closed = [False] * n
    lat, ok, tried = [], 0, 0
    end = time.monotonic() + hold
    next_tick = 0.0
    while time.monotonic() < end:
        if time.monotonic() >= next_tick:  # one byte per second on each slow connection
            next_tick = time.monotonic() + 1
            for i, (s, rest) in enumerate(slow):
                if closed[i]:
                    continue
                try:
                    if s.recv(4096) == b"":
                        closed[i] = True
                        continue
                except BlockingIOError:
                    pass
                except OSError:
                    closed[i] = True
                    continue
                try:
                    s.send(rest[:1])
                    slow[i] = (s, rest[1:])
                except BlockingIOError:
                    pass
                except OSError:
                    closed[i] = True
        t0 = time.perf_counter()
        tried += 1
        try:
            if requests.get(url + "/healthz", timeout=5).status_code == 200:
                ok += 1
                lat.append(time.perf_counter() - t0)
        except requests.RequestException:
            pass
        time.sleep(0.2)
    for s, _ in slow:
        s.close()
    lat.sort()
    return {"answered": f"{ok}/{tried}", "p50_ms": round(statistics.median(lat) * 1000, 1) if lat else None,
            "p95_ms": round(lat[min(len(lat) - 1, math.ceil(len(lat) * 0.95) - 1)] * 1000, 1) if lat else None,
            "slow_closed": f"{sum(closed)}/{n}"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hold", type=float, default=15.0, help="seconds the slow clients are held open")
    ap.add_argument("--clients", type=int, nargs="+", default=[10, 24, 64])
    ap.add_argument("--models", nargs="+", default=list(MODELS))
    args = ap.parse_args()
    rows = []
    for model in args.models:
        with tempfile.TemporaryDirectory() as tmp:
            if isinstance(MODELS[model], dict):
                proc, srv = start_server(Path(tmp), None, extra_env=MODELS[model])
                url = srv.url
            else:
                proc, url = _gunicorn(Path(tmp), MODELS[model])
            try:
                for n in args.clients:
                    rows.append({"model": model, "slow": n, **run(url, n, args.hold)})
                    print(rows[-1], flush=True)
                    time.sleep(2)
            finally:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
    print(f"\nslow clients held {args.hold:.0f} s, one byte per second each; /healthz polled every 0.2 s (5 s timeout)")
    print(f"{'model':<12} {'slow':>5} {'healthz answered':>17} {'p50 ms':>8} {'p95 ms':>8} {'slow closed':>12}")
    for r in rows:
        print(f"{r['model']:<12} {r['slow']:>5} {r['answered']:>17} {str(r['p50_ms']):>8} {str(r['p95_ms']):>8} "
              f"{r['slow_closed']:>12}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
