"""Load and soak: 20 simulated users (locust, ``tests/reliability/locustfile.py``) against the
real server for 1 minute (10 in soak), mixing uploads, downloads and folder listings.

What it proves: under sustained concurrent load the server answers (fewer than 0.1% of the
requests fail, and no download ever returns bytes other than those uploaded), its memory
does not creep (the RSS of the master and its workers grows less than 10% after warm-up),
and the store it leaves passes ``blockdrive fsck --deep``. Requests per second and latency
percentiles are recorded as figures, not asserted.

locust runs as a subprocess: its gevent monkey-patching must not reach the pytest process.
"""

from __future__ import annotations

import contextlib
import csv
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from tests.e2e.conftest import own_mysql_database, start_server, stop_server
from tests.reliability import figures

LOCUST = Path(sys.executable).parent / "locust"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")
USERS = 20
ACCOUNTS = 5  # four simulated users per account, each in a folder of its own


def _children() -> dict[int, list[int]]:
    kids: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:  # the process ended meanwhile
            continue
        ppid = int(text.rpartition(")")[2].split()[1])
        kids.setdefault(ppid, []).append(int(stat.parent.name))
    return kids


def tree_rss(pid: int) -> int:
    """Resident bytes of ``pid`` and all its descendants (the master and its workers)."""
    kids, total, todo = _children(), 0, [pid]
    while todo:
        p = todo.pop()
        todo += kids.get(p, [])
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def aggregated(prefix: Path) -> dict:
    with open(f"{prefix}_stats.csv", newline="") as f:
        return next(r for r in csv.DictReader(f) if r["Name"] == "Aggregated")


def failures(prefix: Path, kind: str = "failures") -> list[dict]:
    """Failed requests (``failures``), or errors raised inside a task (``exceptions``: a check
    that crashed is not a request failure to locust, but it is one to us)."""
    with open(f"{prefix}_{kind}.csv", newline="") as f:
        return list(csv.DictReader(f))


# CI runs the load on SQLite; make soak on MariaDB too.
DATABASES = ["sqlite", *([pytest.param("mariadb", marks=pytest.mark.integration)] if figures.SOAK else [])]


@pytest.fixture(params=DATABASES)
def load_server(request, tmp_path):
    with contextlib.ExitStack() as stack:
        db_url = None if request.param == "sqlite" else \
            stack.enter_context(own_mysql_database(request.getfixturevalue("mysql_url")))
        proc, srv = start_server(tmp_path, db_url, workers=2)
        srv.db = request.param
        try:
            yield proc, srv
        finally:
            stop_server(proc)


def test_load(load_server, tmp_path):
    proc, srv = load_server
    seconds = figures.scale(60, 600)
    warmup = max(15, seconds // 5)
    tokens = [srv.user().token for _ in range(ACCOUNTS)]
    prefix = tmp_path / "locust"
    env = {**os.environ, "BLOCKDRIVE_LOAD_TOKENS": ",".join(tokens)}
    cmd = [str(LOCUST), "-f", str(LOCUSTFILE), "--headless", "-u", str(USERS), "-r", "10",
           "-t", f"{seconds}s", "--stop-timeout", "30", "--host", srv.url, "--csv", str(prefix),
           "--only-summary", "--loglevel", "WARNING"]
    locust = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    reader = threading.Thread(target=lambda: output.extend(locust.stdout), daemon=True)
    reader.start()
    try:
        locust.wait(warmup)
    except subprocess.TimeoutExpired:
        pass
    assert locust.poll() is None, "locust ended during warm-up:\n" + "".join(output)
    rss_warm = tree_rss(proc.pid)
    rss_peak = rss_warm
    while locust.poll() is None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            locust.wait(5)
        rss_peak = max(rss_peak, tree_rss(proc.pid))
    reader.join(10)
    rss_end = tree_rss(proc.pid)
    log = "".join(output)
    # locust exits 1 when any request failed; the threshold below is what counts
    assert locust.returncode in (0, 1), log
    agg = aggregated(prefix)
    crashed = failures(prefix, "exceptions")
    requests_done = int(agg["Request Count"])
    errors = int(agg["Failure Count"]) + sum(int(e["Count"]) for e in crashed)
    wrong_bytes = sum(int(f["Occurrences"]) for f in failures(prefix) if "WRONG BYTES" in f["Error"])
    growth = 100.0 * (rss_end - rss_warm) / rss_warm

    stop_server(proc)  # fsck the store the server leaves, as an operator would
    out = subprocess.run([str(LOCUST.with_name("blockdrive")), "fsck", "--deep"], env=srv.env,
                         capture_output=True, text=True, timeout=600)

    figures.record(f"load ({USERS} users, {srv.db})", runs=requests_done, lost=wrong_bytes,
                   req_s=round(float(agg["Requests/s"]), 1), p50_ms=agg["50%"], p95_ms=agg["95%"],
                   p99_ms=agg["99%"], errors=errors, rss_growth_pct=round(growth, 1),
                   rss_mb=round(rss_end / 2**20), seconds=seconds)
    assert requests_done > 0, log
    assert wrong_bytes == 0, failures(prefix)
    assert errors < 0.001 * requests_done, \
        f"{errors} of {requests_done} requests failed: {failures(prefix)} {[e['Message'] for e in crashed]}"
    assert growth < 10, f"server RSS {rss_warm / 2**20:.0f} MiB after warm-up, {rss_end / 2**20:.0f} MiB at the end " \
                        f"(peak {rss_peak / 2**20:.0f} MiB)"
    assert out.returncode == 0, out.stdout + out.stderr
