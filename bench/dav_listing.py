"""A WebDAV listing of a huge folder: PROPFIND Depth 1 on folders of 10,000 and 100,000 entries
through a real ``blockdrive serve`` (one worker, SQLite), with the worker's RSS sampled while the
answer streams. The answer is written a member at a time while the folder is read a page at a
time, so the worker's memory should not grow with the folder.

    python -m bench.dav_listing [--sizes 10000,100000]

Prints, per size: the answer's bytes, entries/s, and the worker's RSS before and at its peak."""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from pathlib import Path

import requests

from harness.server import start_server, stop_server

PROPS = ('<?xml version="1.0"?><d:propfind xmlns:d="DAV:"><d:prop><d:getetag/><d:resourcetype/>'
         "<d:getlastmodified/></d:prop></d:propfind>")


def rss_mib(pid: int) -> float:
    """The resident set of process ``pid`` and its children (the gunicorn worker), in MiB."""
    total = 0
    for p in [pid, *children(pid)]:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total = max(total, int(line.split()[1]))
        except FileNotFoundError:
            continue
    return total / 1024


def children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except FileNotFoundError:
        return []


def fill(user, folder_id: int, n: int) -> None:
    for i in range(0, n, 1000):
        r = user.post("/api/v1/batch/folders", json={"folders": [
            {"parent_id": folder_id, "name": f"d{j:06d}"} for j in range(i, min(n, i + 1000))]})
        r.raise_for_status()


def listing(srv, user, pid: int, n: int) -> dict:
    folder = user.mkdir(user.root, f"big{n}")
    fill(user, folder["id"], n)
    before = rss_mib(pid)
    samples = [before]
    done = threading.Event()

    def watch():
        while not done.is_set():
            samples.append(rss_mib(pid))
            time.sleep(0.05)
    t = threading.Thread(target=watch)
    t.start()
    start = time.perf_counter()
    r = requests.request("PROPFIND", f"{srv.url}/dav/big{n}/", auth=(user.email, user.token),
                         headers={"Depth": "1"}, data=PROPS, stream=True, timeout=600)
    nbytes = sum(len(c) for c in r.iter_content(1 << 16))
    seconds = time.perf_counter() - start
    done.set()
    t.join()
    assert r.status_code == 207, r.status_code
    return {"entries": n, "bytes": nbytes, "seconds": seconds, "rss_before_mib": before, "rss_peak_mib": max(samples)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10000,100000", help="folder sizes, comma-separated")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bd-listing-") as tmp:
        proc, srv = start_server(Path(tmp), None, workers=1)
        try:
            user = srv.user()
            for n in (int(x) for x in args.sizes.split(",")):
                row = listing(srv, user, proc.pid, n)
                print(f"PROPFIND Depth 1 of {row['entries']:,} entries: {row['bytes'] / 1e6:.1f} MB in "
                      f"{row['seconds']:.1f} s ({row['entries'] / row['seconds']:,.0f} entries/s); worker RSS "
                      f"{row['rss_before_mib']:.0f} MiB before, {row['rss_peak_mib']:.0f} MiB at its peak", flush=True)
        finally:
            stop_server(proc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
