"""blockdrive's WebDAV beside rclone serve webdav and WsgiDAV, through rclone copy, on one disk.

``rclone copy`` of many small files and of one large file to blockdrive's ``/dav/``, to ``rclone
serve webdav`` over a plain folder, and to WsgiDAV's own filesystem provider (the engine under
Seafile's seafdav; ``bench/wsgidav_fs.py``) served by gunicorn with blockdrive's workers and
threads; and blockdrive's own HTTP PUT of the large file.

    python -m bench.dav [--quick] [--repeat N] [--tmp DIR]
    python -m bench [--quick]                  # the suite runs it as its ``dav`` section

Prints files/s and MB/s, the ratios to each peer and the goals (at least the WsgiDAV peer's
files/s; at least 80% of blockdrive's own PUT on the large file), and writes the rows to
``bench/results/dav-<profile>.json``, from which ``python -m tools.figures`` makes the table in
docs/webdav.md. Full profile: 10,000 files of 1-64 KiB and 1 GiB; ``--quick``: 1,000 and 128 MiB.

Every target gets the same ``rclone copy`` flags (:data:`RCLONE_FLAGS`) and HTTP Basic sign-in
(blockdrive: a new user's email and an app password for each run, so nothing it stores already
makes a run cheaper; the peers: a new folder for each run). Debian's rclone (1.60) starts each
process's WebDAV calls at least 10 ms apart and spends three calls on a small file (MKCOL of its
folder, PUT, PROPFIND), so one process copies at most ~33 small files a second whatever the
server. The small files are therefore copied by :data:`PROCESSES` rclone processes at once, each
given every PROCESSES-th top folder of the tree; the large file by one process.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

from bench import datasets
from bench.common import MiB, machine, save
from bench.suite import Http, Results, parser, profile_of, run_alone
from harness.server import free_port, stop_server

ROOT = Path(__file__).resolve().parents[1]
RCLONE_FLAGS = ("--transfers", "4", "--checkers", "8", "--webdav-vendor", "other",
                "--retries", "1", "--stats", "0", "-v")
PROCESSES = 16
PEER_USER, PEER_PASSWORD = "bench@example.com", "bench-password"
SMALL_SEED, BIG_SEED = 31, 41


@dataclass
class Target:
    """Where one run copies to: a WebDAV root URL (ending in ``/``), the folder under it that
    rclone creates, and the Basic credentials."""

    url: str
    folder: str
    user: str
    password: str


def rclone_exe() -> str:
    """The path of rclone, or exit saying how to install it."""
    exe = shutil.which("rclone")
    if not exe:
        raise SystemExit("rclone is not installed: run `make bench` (it installs Debian's rclone) "
                         "or `apt-get install -y rclone`")
    return exe


def rclone_version() -> str:
    out = subprocess.run([rclone_exe(), "version"], capture_output=True, text=True).stdout
    return out.splitlines()[0] if out else "rclone ?"


def _wait_ready(url: str, auth: tuple[str, str], proc: subprocess.Popen, log: Path) -> None:
    """Until ``PROPFIND url`` answers 207, or raise with the server's log."""
    deadline = time.monotonic() + 60
    while True:
        try:
            r = requests.request("PROPFIND", url, auth=auth, headers={"Depth": "0"}, timeout=2)
            if r.status_code == 207:
                return
        except (requests.ConnectionError, requests.Timeout):  # not listening yet
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            stop_server(proc)
            raise RuntimeError(f"{url} did not start:\n{log.read_text()}")
        time.sleep(0.2)


class Peer:
    """A peer server over a plain folder: each :meth:`target` is a new folder in it."""

    key = label = ""

    def __init__(self, root: Path, argv: list[str], url: str):
        self.root, self.url = root, url
        root.mkdir(parents=True, exist_ok=True)
        self.log = root.parent / f"{self.key}.log"
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        _wait_ready(url, (PEER_USER, PEER_PASSWORD), self.proc, self.log)

    def target(self, name: str) -> Target:
        return Target(self.url, name, PEER_USER, PEER_PASSWORD)

    def clear(self, name: str) -> None:
        """Free the disk a run used (its folder is not reused: the server may cache listings)."""
        shutil.rmtree(self.root / name, ignore_errors=True)

    def close(self) -> None:
        stop_server(self.proc)


class RcloneServe(Peer):
    """``rclone serve webdav`` over a plain folder (rclone's VFS, no write cache)."""

    key, label = "rclone", "rclone serve webdav"

    def __init__(self, root: Path, conf: Path):
        port = free_port()
        super().__init__(root, [rclone_exe(), "serve", "webdav", str(root), "--addr", f"127.0.0.1:{port}",
                                "--user", PEER_USER, "--pass", PEER_PASSWORD, "--config", str(conf)],
                         f"http://127.0.0.1:{port}/")


class WsgidavFs(Peer):
    """WsgiDAV's filesystem provider (``bench/wsgidav_fs.py``) under gunicorn's gthread
    workers, as many workers and threads as ``blockdrive serve`` runs with."""

    key, label = "wsgidav", "WsgiDAV filesystem provider"

    def __init__(self, root: Path, workers: int, threads: int):
        port = free_port()
        gunicorn = Path(sys.executable).parent / "gunicorn"
        argv = [str(gunicorn), "--worker-class", "gthread", "--workers", str(workers), "--threads", str(threads),
                "--bind", f"127.0.0.1:{port}", "--timeout", "300", "--access-logfile", "-",
                f"bench.wsgidav_fs:app({str(root)!r}, {PEER_USER!r}, {PEER_PASSWORD!r})"]
        super().__init__(root, argv, f"http://127.0.0.1:{port}/dav/")


class Blockdrive:
    """blockdrive's ``/dav/`` on the suite's server: each :meth:`target` is a new user, signed
    in with the app password (API token) that ``blockdrive user create`` printed."""

    key, label = "bd", "blockdrive /dav/"

    def __init__(self, http: Http):
        self.http = http
        c = http.user()
        r = requests.request("PROPFIND", f"{http.url}/dav/", auth=(c.email, c.token), headers={"Depth": "0"},
                             timeout=30)
        if r.status_code != 207:
            raise SystemExit(f"blockdrive serves no WebDAV at /dav/ (PROPFIND: {r.status_code})")

    def target(self, name: str) -> Target:
        c = self.http.user()
        return Target(f"{self.http.url}/dav/", name, c.email, c.token)

    def clear(self, name: str) -> None:
        """Nothing: each run's data belongs to a user of its own."""

    def close(self) -> None:
        """Nothing: the server is the suite's."""


def dav_put(http: Http, path: Path, name: str) -> float:
    """Seconds for one plain PUT of ``path`` to ``/dav/name`` as a new user, with the client
    the JSON API's PUT is timed with (requests), so that the difference to it is WebDAV's and
    not rclone's."""
    c = http.user()
    with open(path, "rb") as fh:
        t = time.perf_counter()
        r = requests.put(f"{http.url}/dav/{name}", data=fh, auth=(c.email, c.token), timeout=600)
        took = time.perf_counter() - t
    r.raise_for_status()
    return took


def groups(tree: Path, k: int) -> list[list[str]]:
    """The top folders of ``tree`` dealt round-robin into at most ``k`` groups."""
    tops = sorted(p.name for p in tree.iterdir() if p.is_dir())
    return [g for g in (tops[i::k] for i in range(k)) if g]


def rclone_copy(src: Path, target: Target, conf: Path, tmp: Path, parts: list[list[str]] | None = None) -> float:
    """Seconds for ``rclone copy src`` into ``target`` with :data:`RCLONE_FLAGS`: one process, or
    one per group of top folders in ``parts``, all at once. Raises unless every process succeeds
    and every file was copied."""
    env = {**os.environ, "RCLONE_CONFIG": str(conf), "RCLONE_WEBDAV_URL": target.url,
           "RCLONE_WEBDAV_USER": target.user,
           "RCLONE_WEBDAV_PASS": subprocess.run([rclone_exe(), "obscure", target.password], capture_output=True,
                                                text=True, check=True).stdout.strip()}
    argvs = [[rclone_exe(), "copy", str(src), f":webdav:{target.folder}", *RCLONE_FLAGS]]
    if parts:
        argvs = [argvs[0] + [a for top in part for a in ("--include", f"/{top}/**")] for part in parts]
    logs = [tmp / f"rclone-{i}.log" for i in range(len(argvs))]
    t = time.perf_counter()
    procs = []
    for argv, log in zip(argvs, logs):
        with open(log, "wb") as fh:
            procs.append(subprocess.Popen(argv, env=env, stdout=fh, stderr=subprocess.STDOUT))
    codes = [p.wait() for p in procs]
    took = time.perf_counter() - t
    texts = [log.read_text(errors="replace") for log in logs]
    copied = sum(text.count(": Copied (new)") for text in texts)
    expected = sum(1 for p in src.rglob("*") if p.is_file()) if src.is_dir() else 1
    if any(codes) or copied != expected:
        failed = next((text for code, text in zip(codes, texts) if code), texts[0])
        raise SystemExit(f"rclone copy to {target.url}{target.folder} copied {copied} of {expected} files "
                         f"(exit codes {sorted(set(codes))}):\n{failed[-3000:]}")
    return took


def measure(p: dict, tmp: Path, res: Results, http: Http) -> list[dict]:
    """Run the WebDAV measurements ``p["repeat"]`` times, the targets interleaved, and add their
    rows (section ``webdav``) to ``res``; returns those rows."""
    tmp = tmp / "dav"
    tmp.mkdir(parents=True, exist_ok=True)
    conf = tmp / "rclone.conf"
    conf.touch()
    n, size = p["dav_files"], p["dav_mib"] * MiB
    tree, big = tmp / "small", tmp / "big.bin"
    total = datasets.small_files(tree, n, seed=SMALL_SEED)
    datasets.random_file(big, size, seed=BIG_SEED)
    from storage.config import load_config
    threads = load_config(env=http.srv.env)["server"]["threads"]
    targets: list[Blockdrive | Peer] = [Blockdrive(http)]
    try:
        targets.append(WsgidavFs(tmp / "wsgidav", http.workers, threads))
        targets.append(RcloneServe(tmp / "rclone", conf))
        parts = groups(tree, PROCESSES)
        small: dict[str, list[float]] = {t.key: [] for t in targets}
        bulk: dict[str, list[float]] = {k: [] for k in [*small, "put", "dav_put"]}
        for r in range(p["repeat"]):
            for t in targets:
                os.sync()
                small[t.key].append(rclone_copy(tree, t.target(f"small-{r}"), conf, tmp, parts))
                t.clear(f"small-{r}")
            for t in targets:
                os.sync()
                bulk[t.key].append(rclone_copy(big, t.target(f"big-{r}"), conf, tmp))
                t.clear(f"big-{r}")
            os.sync()
            client = http.user()
            t0 = time.perf_counter()
            http.upload(client, big, f"big-{r}.bin")
            bulk["put"].append(time.perf_counter() - t0)
            os.sync()
            bulk["dav_put"].append(dav_put(http, big, f"big-{r}.bin"))
    finally:
        for t in targets:
            t.close()
    labels = {t.key: t.label for t in targets}
    where = {"bd": "blockdrive /dav/", "wsgidav": f"WsgiDAV fs (gunicorn {http.workers}x{threads})",
             "rclone": "rclone serve webdav"}
    first = len(res.rows)
    for key in labels:
        res.add(f"dav_small_{key}", "webdav", f"{n:,} files of 1-64 KiB to {where[key]}",
                [n / s for s in small[key]], "f/s", short=labels[key])
    for key in labels:
        res.add(f"dav_small_{key}_mb", "webdav", f"  the same in MB/s, {labels[key]}",
                [total / s / 1e6 for s in small[key]], "MB/s", short=labels[key])
    for key in ("wsgidav", "rclone"):
        res.ratio("dav_small_bd", f"dav_small_{key}", 1.0 if key == "wsgidav" else None)
        res.ratio("dav_small_bd_mb", f"dav_small_{key}_mb")
    mib = p["dav_mib"]
    res.add("dav_big_put", "webdav", f"{mib:,} MiB file, blockdrive HTTP PUT (JSON API)",
            [size / s / 1e6 for s in bulk["put"]], "MB/s", short="blockdrive PUT")
    for key in labels:
        res.add(f"dav_big_{key}", "webdav", f"{mib:,} MiB file to {where[key]}",
                [size / s / 1e6 for s in bulk[key]], "MB/s", short=labels[key])
    res.ratio("dav_big_bd", "dav_big_put", 0.8)
    res.ratio("dav_big_bd", "dav_big_wsgidav")
    res.ratio("dav_big_bd", "dav_big_rclone")
    res.add("dav_big_bd_put", "webdav", "  the same file PUT to /dav/ by the JSON API PUT's client",
            [size / s / 1e6 for s in bulk["dav_put"]], "MB/s", short="PUT to /dav/")
    res.ratio("dav_big_bd_put", "dav_big_put")
    return res.rows[first:]


def how() -> str:
    """One line saying how every target was copied to."""
    return (f"{rclone_version()}: `rclone copy SRC :webdav:DEST {' '.join(RCLONE_FLAGS)}` (URL, user and "
            f"password from the environment), small files in {PROCESSES} processes at once")


def save_results(command: str, profile: str, p: dict, rows: list[dict], seconds: float) -> Path:
    """``bench/results/dav-<profile>.json``: the rows, the ``command`` that measured them (without
    ``--quick``) and what they were measured with."""
    import wsgidav
    return save(f"dav-{profile}", {"command": command, "profile": profile, "machine": machine(),
                                   "at": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds),
                                   "how": how(), "wsgidav": wsgidav.__version__,
                                   "params": {k: p[k] for k in ("dav_files", "dav_mib", "repeat")},
                                   "rows": rows})


def main(argv: list[str] | None = None) -> int:
    args = parser("python -m bench.dav", __doc__.splitlines()[0],
                  "1,000 files and 128 MiB instead of 10,000 and 1 GiB").parse_args(argv)
    profile, p = profile_of(args)
    print(how(), flush=True)
    rows, took = run_alone(f"blockdrive WebDAV bench ({profile})", f"WebDAV, {profile} profile", "bd-bench-dav-",
                           args.tmp, measure, p, p["repeat"])
    out = save_results("python -m bench.dav", profile, p, rows, took)
    print(f"results: {out}; {took:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
