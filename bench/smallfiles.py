"""Small files and single streams, each beside its peers in one run: the baseline the group
commit, shared packs and parallel hashing are measured against. Prints figures and the goals;
asserts nothing.

    python -m bench.smallfiles [--quick] [--files N] [--mib N] [--repeat N] [--tmp DIR]
    python -m bench [--quick] --only smallfiles    # the suite's ``smallfiles`` section (opt-in)

Small files (``--files`` of 4 KiB each, random bytes, so nothing dedups), taking turns in each run:

- HTTP ``PUT /api/v1/nodes/{folder}/children/{name}`` to ``blockdrive serve`` by
  :data:`CLIENTS` concurrent clients (one aiohttp session, one keep-alive connection each),
  a new folder of a new user per run; the pack files the uploads added to the server's pack
  store are counted;
- the same PUTs to ``rclone serve webdav`` over a plain folder on the same disk;
- a loop of open + write + fsync + close per file, in one thread, on the same disk;
- ``Drive.put`` in process (a fresh embedded home) by :data:`CLIENTS` threads (and, for a
  fifth of the files, by one thread): files/s, the pack files made, the fsyncs (``os.fsync`` calls, timed) and the durability wait of each
  request (the time in ``SharedPacks.append``: its append, its fsync or the one it waits for).

Latency: one 4 KiB PUT at a time on the otherwise idle server (median and p99), beside one
open + write + fsync + close.

Streams (``--mib``, random bytes, the source read once first so every contender reads it warm):
``Drive.put`` in process beside FastCDC + SHA-256 on one core (pyfastcdc at the server's chunk
sizes, hashlib) and ``cp`` + ``sync``; an HTTP download of the stored file with the page cache
dropped (as root) beside ``cp`` of the source, also cold; the server's resident memory (master
and the sum of its workers, from /proc) while four clients upload a file of ``--mib`` each.

Full profile: 10,000 files, 1 GiB, 3 runs of the small files; ``--quick``: 2,000 files,
256 MiB, 1 run. The rows go to ``bench/results/smallfiles-<profile>.json``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiohttp
import requests

from bench import datasets
from bench.common import MiB, drop_caches, machine, save
from bench.dav import PEER_PASSWORD, PEER_USER, RcloneServe, rclone_version
from bench.longpoll import rss_kib
from bench.suite import DEFAULT_CHUNKING, Http, Local, Results, parser, run_alone

CLIENTS = 16
FILE_SIZE = 4096
FILES_GOAL, INPROC_GOAL, PACKS_GOAL, LATENCY_GOAL = 1500.0, 1000.0, 4, 3.0
STREAM_GOAL, DOWNLOAD_GOAL, RSS_GOAL = 0.8, 0.9, 300.0
SMALL_SEED, STREAM_SEED = 61, 62
PROFILES = {"quick": dict(sf_files=2_000, sf_mib=256, sf_latency=100, sf_repeat=1),
            "full": dict(sf_files=10_000, sf_mib=1024, sf_latency=300, sf_repeat=3)}


def small_payloads(n: int, seed: int) -> list[bytes]:
    """``n`` distinct random blobs of :data:`FILE_SIZE` bytes, the same for a seed."""
    rng = random.Random(seed)
    return [rng.randbytes(FILE_SIZE) for _ in range(n)]


def count_files(root: Path) -> int:
    return sum(1 for p in root.rglob("*") if p.is_file()) if root.exists() else 0


async def _put_all(urls: list[str], payloads: list[bytes], headers: dict) -> None:
    queue = list(zip(urls, payloads))
    queue.reverse()
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        async def client():
            while queue:
                url, data = queue.pop()
                async with session.put(url, data=data) as r:
                    if r.status not in (200, 201, 204):
                        raise SystemExit(f"PUT {url}: {r.status} {(await r.text())[:300]}")
                    await r.read()
        await asyncio.gather(*(client() for _ in range(CLIENTS)))


def put_concurrently(urls: list[str], payloads: list[bytes], headers: dict | None = None,
                     auth: tuple[str, str] | None = None) -> float:
    """Files per second for one PUT of each payload to its URL, :data:`CLIENTS` at a time."""
    headers = dict(headers or {})
    if auth:
        headers["Authorization"] = "Basic " + base64.b64encode(":".join(auth).encode()).decode()
    t = time.perf_counter()
    asyncio.run(_put_all(urls, payloads, headers))
    return len(urls) / (time.perf_counter() - t)


def fsync_loop(folder: Path, payloads: list[bytes]) -> list[float]:
    """Write each payload to a file of its own in ``folder``, fsync'd and closed one after the
    other; the seconds each took."""
    folder.mkdir(parents=True, exist_ok=True)
    times = []
    for i, data in enumerate(payloads):
        t = time.perf_counter()
        fd = os.open(folder / f"f{i:05d}.bin", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        times.append(time.perf_counter() - t)
    return times


class Timings:
    """``os.fsync`` and ``SharedPacks.append`` timed while in effect (this process only)."""

    def __init__(self):
        self.fsyncs: list[float] = []
        self.appends: list[float] = []
        self._lock = threading.Lock()

    def _wrap(self, fn, into: list[float]):
        def timed(*a, **kw):
            t = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                with self._lock:
                    into.append(time.perf_counter() - t)
        return timed

    def __enter__(self) -> "Timings":
        from storage.sharedpack import SharedPacks
        self._saved = os.fsync, SharedPacks.append
        os.fsync = self._wrap(os.fsync, self.fsyncs)
        SharedPacks.append = self._wrap(SharedPacks.append, self.appends)
        return self

    def __exit__(self, *exc) -> None:
        from storage.sharedpack import SharedPacks
        os.fsync, SharedPacks.append = self._saved


def put_in_process(home: Path, payloads: list[bytes], threads: int = CLIENTS) -> tuple[float, int, Timings]:
    """Files/s for ``Drive.put`` of each payload by ``threads`` threads into a fresh home; the
    pack files it then holds (the shared pack sealed) and the fsyncs and appends timed."""
    import io
    local = Local(home, DEFAULT_CHUNKING)
    folder = local.folder("small")
    try:
        with Timings() as tm, ThreadPoolExecutor(threads) as ex:
            t = time.perf_counter()
            list(ex.map(lambda i: local.drive.put(local.user.id, folder, f"f{i:05d}.bin", io.BytesIO(payloads[i])),
                        range(len(payloads))))
            rate = len(payloads) / (time.perf_counter() - t)
        local.drive.close()
        return rate, count_files(home / "packs"), tm
    finally:
        local.close()


def small(p: dict, tmp: Path, res: Results, http: Http) -> None:
    n, repeat = p["sf_files"], p["sf_repeat"]
    payloads = small_payloads(n, SMALL_SEED)
    names = [f"f{i:05d}.bin" for i in range(n)]
    packs_dir = http.srv.home / "packs"
    rclone = RcloneServe(tmp / "rclone", tmp / "rclone.conf")
    runs: dict[str, list[float]] = {k: [] for k in ("bd", "rclone", "fsync", "inproc", "bd_packs", "inproc_packs",
                                                     "fsyncs", "fsync_ms", "wait_p50", "wait_p99", "serial")}
    try:
        for r in range(repeat):
            c = http.user()
            folder = c.mkdir(c.root, f"small-{r}")["id"]
            before = count_files(packs_dir)
            os.sync()
            runs["bd"].append(put_concurrently([f"{http.url}/api/v1/nodes/{folder}/children/{x}" for x in names],
                                               payloads, {"Authorization": f"Bearer {c.token}"}))
            runs["bd_packs"].append(count_files(packs_dir) - before)
            os.sync()
            requests.request("MKCOL", f"{rclone.url}small-{r}", auth=(PEER_USER, PEER_PASSWORD),
                             timeout=30).raise_for_status()
            runs["rclone"].append(put_concurrently([f"{rclone.url}small-{r}/{x}" for x in names], payloads,
                                                   auth=(PEER_USER, PEER_PASSWORD)))
            rclone.clear(f"small-{r}")
            os.sync()
            t = time.perf_counter()
            fsync_loop(tmp / "fsync", payloads)
            runs["fsync"].append(n / (time.perf_counter() - t))
            shutil.rmtree(tmp / "fsync")
            os.sync()
            rate, packs, tm = put_in_process(tmp / "home-small", payloads)
            shutil.rmtree(tmp / "home-small", ignore_errors=True)
            runs["inproc"].append(rate)
            runs["inproc_packs"].append(packs)
            runs["fsyncs"].append(len(tm.fsyncs))
            runs["fsync_ms"].append(statistics.median(tm.fsyncs) * 1000 if tm.fsyncs else 0)
            waits = sorted(tm.appends) or [0.0]
            runs["wait_p50"].append(waits[len(waits) // 2] * 1000)
            runs["wait_p99"].append(waits[min(len(waits) - 1, int(len(waits) * 0.99))] * 1000)
            runs["serial"].append(put_in_process(tmp / "home-small", payloads[:n // 5], threads=1)[0])
            shutil.rmtree(tmp / "home-small", ignore_errors=True)
    finally:
        rclone.close()
    label = f"{n:,} files of 4 KiB"
    res.add("sf_bd", "smallfiles", f"{label}: HTTP PUT, {CLIENTS} clients", runs["bd"], "f/s", short="blockdrive PUT")
    res.add("sf_rclone", "smallfiles", f"{label}: PUT to rclone serve webdav, {CLIENTS} clients", runs["rclone"], "f/s",
            short="rclone serve webdav")
    res.add("sf_fsync", "smallfiles", f"{label}: write + fsync per file, one loop", runs["fsync"], "f/s",
            short="the write+fsync loop")
    res.within("sf_bd", FILES_GOAL)
    res.ratio("sf_bd", "sf_fsync", 1.0)
    res.ratio("sf_bd", "sf_rclone")
    res.add("sf_bd_packs", "smallfiles", f"  pack files added by the {n:,} HTTP uploads", runs["bd_packs"], "packs",
            higher_is_better=False)
    res.within("sf_bd_packs", PACKS_GOAL)
    res.add("sf_inproc", "smallfiles", f"{label}: Drive.put in process, {CLIENTS} threads", runs["inproc"], "f/s")
    res.within("sf_inproc", INPROC_GOAL)
    res.add("sf_serial", "smallfiles", f"{n // 5:,} of them: Drive.put in process, one thread", runs["serial"], "f/s")
    res.add("sf_inproc_packs", "smallfiles", f"  pack files after the {n:,} in-process puts", runs["inproc_packs"],
            "packs", higher_is_better=False)
    res.add("sf_fsyncs", "smallfiles", f"  fsyncs during the {n:,} in-process puts", runs["fsyncs"], "calls",
            higher_is_better=False)
    res.add("sf_fsync_ms", "smallfiles", "  one of those fsyncs, median", runs["fsync_ms"], "ms", higher_is_better=False)
    res.add("sf_wait_p50", "smallfiles", "  a put's durability wait (SharedPacks.append), p50", runs["wait_p50"], "ms",
            higher_is_better=False)
    res.add("sf_wait_p99", "smallfiles", "  a put's durability wait (SharedPacks.append), p99", runs["wait_p99"], "ms",
            higher_is_better=False)


def latency(p: dict, tmp: Path, res: Results, http: Http) -> None:
    n = p["sf_latency"]
    payloads = small_payloads(n + 10, SMALL_SEED + 1)
    c = http.user()
    folder = c.mkdir(c.root, "latency")["id"]
    times = []
    for i, data in enumerate(payloads):
        t = time.perf_counter()
        r = c.put(f"/api/v1/nodes/{folder}/children/l{i:04d}.bin", data=data)
        took = time.perf_counter() - t
        r.raise_for_status()
        if i >= 10:  # the first few warm the connection and the workers
            times.append(took * 1000)
    disk = [x * 1000 for x in fsync_loop(tmp / "latency-fsync", payloads[10:])]
    shutil.rmtree(tmp / "latency-fsync")
    times.sort()
    res.add("sf_lat", "smallfiles", f"one 4 KiB PUT on an idle server, median of {n}", [statistics.median(times)], "ms",
            higher_is_better=False, short="one PUT")
    res.add("sf_lat_p99", "smallfiles", f"one 4 KiB PUT on an idle server, p99 of {n}",
            [times[min(n - 1, int(n * 0.99))]], "ms", higher_is_better=False)
    res.add("sf_lat_fsync", "smallfiles", f"one 4 KiB write + fsync, median of {n}", [statistics.median(disk)], "ms",
            higher_is_better=False, short="one write+fsync")
    res.within("sf_lat", LATENCY_GOAL)
    res.ratio("sf_lat", "sf_lat_fsync")


def _cdc_sha(path: Path) -> None:
    from storage.chunking import FastCDCChunker
    chunker = FastCDCChunker(*(DEFAULT_CHUNKING[k] for k in ("chunk_min", "chunk_avg", "chunk_max")))
    with open(path, "rb", buffering=0) as fh:
        for view in chunker.chunks(fh):
            hashlib.sha256(view).digest()


def _cp(src: Path, dst: Path, sync: bool) -> float:
    t = time.perf_counter()
    subprocess.run(["cp", str(src), str(dst)], check=True)
    if sync:
        os.sync()
    took = time.perf_counter() - t
    dst.unlink()
    return took


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def streams(p: dict, tmp: Path, res: Results, http: Http) -> None:
    size = p["sf_mib"] * MiB
    mb = size / 1e6
    src = datasets.random_file(tmp / "stream.bin", size, seed=STREAM_SEED)
    os.sync()
    src.read_bytes()  # warm: every contender below reads it from the page cache
    cdc = mb / _timed(lambda: _cdc_sha(src))
    cp = mb / _cp(src, tmp / "stream-copy.bin", sync=True)
    local = Local(tmp / "home-stream", DEFAULT_CHUNKING)
    put = mb / _timed(lambda: (local.put(src, "stream.bin"), os.sync()))
    local.close()
    shutil.rmtree(tmp / "home-stream", ignore_errors=True)
    label = f"one {p['sf_mib']:,} MiB stream"
    res.add("sf_put", "smallfiles", f"{label}: Drive.put in process (+ sync)", [put], "MB/s", short="put")
    res.add("sf_cdc", "smallfiles", f"{label}: FastCDC + SHA-256, one core", [cdc], "MB/s",
            short="FastCDC + SHA-256")
    res.add("sf_cp", "smallfiles", f"{label}: cp + sync", [cp], "MB/s", short="cp + sync")
    res.ratio("sf_put", "sf_cdc", STREAM_GOAL)
    res.ratio("sf_put", "sf_cp")

    c = http.user()
    with open(src, "rb") as fh:
        r = c.put(f"/api/v1/nodes/{c.root}/children/stream.bin", data=fh)
    r.raise_for_status()
    node = r.json()["id"]
    cold = os.geteuid() == 0 and os.access("/proc/sys/vm/drop_caches", os.W_OK)
    drop_caches()
    out = tmp / "download.bin"
    t = time.perf_counter()
    http.download(c, node, out)
    get = mb / (time.perf_counter() - t)
    out.unlink()
    drop_caches()
    cp_cold = mb / _cp(src, tmp / "stream-copy.bin", sync=False)
    how = "cold cache" if cold else "warm: not root, the page cache stayed"
    res.add("sf_get", "smallfiles", f"{label}: HTTP download, {how}", [get], "MB/s", short="HTTP GET")
    res.add("sf_cp_cold", "smallfiles", f"{label}: cp, {how}", [cp_cold], "MB/s", short="cp")
    res.ratio("sf_get", "sf_cp_cold", DOWNLOAD_GOAL)

    srcs = [src] + [datasets.random_file(tmp / f"stream-{i}.bin", size, seed=STREAM_SEED + 1 + i) for i in range(3)]
    os.sync()
    clients = [http.user() for _ in srcs]
    pid = http.proc.pid

    def workers_kib() -> int:
        try:
            workers = [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            workers = []
        return sum(rss_kib(x) for x in workers)
    idle = {"all": rss_kib(pid), "workers": workers_kib()}
    peak = {"all": 0, "workers": 0}
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak["workers"] = max(peak["workers"], workers_kib())
            peak["all"] = max(peak["all"], rss_kib(pid))
            time.sleep(0.05)
    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(len(srcs)) as ex:
            list(ex.map(lambda i: http.upload(clients[i], srcs[i], f"rss-{i}.bin"), range(len(srcs))))
    finally:
        stop.set()
        sampler.join()
    for f in srcs:
        f.unlink()
    res.add("sf_rss_workers", "smallfiles", f"4 concurrent {p['sf_mib']:,} MiB uploads: workers' RSS, summed peak",
            [peak["workers"] * 1024 / 1e6], "MB", higher_is_better=False)
    res.within("sf_rss_workers", RSS_GOAL)
    res.add("sf_rss_all", "smallfiles", "  the same with the master, peak", [peak["all"] * 1024 / 1e6], "MB",
            higher_is_better=False)
    res.add("sf_rss_idle", "smallfiles", "  workers' RSS, summed, before the uploads", [idle["workers"] * 1024 / 1e6],
            "MB", higher_is_better=False)
    res.add("sf_rss_idle_all", "smallfiles", "  the same with the master", [idle["all"] * 1024 / 1e6], "MB",
            higher_is_better=False)


def measure(p: dict, tmp: Path, res: Results, http: Http) -> list[dict]:
    """Every measurement; its rows (section ``smallfiles``) go to ``res`` and are returned."""
    tmp = tmp / "smallfiles"
    tmp.mkdir(parents=True, exist_ok=True)
    first = len(res.rows)
    for name, fn in (("small files", small), ("latency", latency), ("streams", streams)):
        t = time.perf_counter()
        print(f"   {name} ...", flush=True)
        fn(p, tmp, res, http)
        print(f"   {name} done in {time.perf_counter() - t:.0f} s", flush=True)
    return res.rows[first:]


def how() -> str:
    return (f"{CLIENTS} aiohttp clients; {rclone_version()}: `rclone serve webdav DIR` (no write cache); "
            "write+fsync: os.open, write, fsync, close")


def save_results(command: str, profile: str, p: dict, rows: list[dict], seconds: float) -> Path:
    """``bench/results/smallfiles-<profile>.json``: the rows, the ``command`` that measured
    them and what they were measured with."""
    return save(f"smallfiles-{profile}", {"command": command, "profile": profile, "machine": machine(),
                                          "at": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds),
                                          "how": how(),
                                          "params": {"repeat": p["sf_repeat"],
                                                     **{k: v for k, v in p.items() if k.startswith("sf_")}},
                                          "rows": rows})


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m bench.smallfiles", __doc__.splitlines()[0], "2,000 files and 256 MiB, one run")
    ap.add_argument("--files", type=int, help="small files per run")
    ap.add_argument("--mib", type=int, help="MiB of each stream")
    args = ap.parse_args(argv)
    profile = "quick" if args.quick else "full"
    p = dict(PROFILES[profile])
    p["sf_repeat"] = args.repeat or p["sf_repeat"]
    p["sf_files"] = args.files or p["sf_files"]
    p["sf_mib"] = args.mib or p["sf_mib"]
    rows, took = run_alone(f"blockdrive small files and streams bench ({profile})", f"small files and streams, {profile} "
                           "profile", "bd-bench-smallfiles-", args.tmp, measure, p, p["sf_repeat"])
    command = "python -m bench.smallfiles" + (f" --repeat {args.repeat}" if args.repeat else "")
    out = save_results(command, profile, p, rows, took)
    print(f"results: {out}; {took:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
