"""``blockdrive bisync`` measured: how soon an edit on one replica shows on the other with
``--watch``, and a run with nothing to do over a big tree beside ``rclone bisync`` of the same
tree through blockdrive's WebDAV. Prints figures and the goals; asserts nothing.

    python -m bench.bisync [--quick] [--files N] [--edits N] [--no-download] [--repeat N] [--tmp DIR]
    python -m bench [--quick]                  # the suite runs it as its ``bisync`` section

Latency: one account on ``blockdrive serve`` (a fresh embedded home), two local replicas each
running ``blockdrive bisync DIR /bench --watch`` (a ``--state``, ``--device`` and cache of its
own). ``--edits`` small files are created or edited, the sides taking turns, one at a time; each
is timed from just before the write to the moment the other replica's file holds the new bytes
(read every 10 ms), and the next edit comes :data:`PAUSE` s after that. Goal: p50 under 1 s.

No-op: ``--files`` files of 100 B-2 KiB, 1,000 to a folder, go to the server by the one-way
``blockdrive sync`` (timed). ``blockdrive bisync`` then brings them to an empty folder (timed: the
initial download; ``--no-download`` leaves it out) and, separately, runs over a copy of the tree
(timed: the first run matches every file by hash and sends nothing). On that replica a
``blockdrive bisync`` with nothing to do is timed ``--repeat`` times. ``rclone bisync`` joins the
seeded local tree and the same remote folder through ``/remote.php/dav/files/EMAIL/`` (the
Nextcloud dialect: bisync needs modification times): ``--resync`` first (timed, for the record),
then its no-op, timed as often, the two tools taking turns. Goals: blockdrive's no-op under 3 s,
and at most 2x rclone's.

Every command runs as a user runs it (a subprocess, start-up included). Full profile: 100,000
files and 30 edits; ``--quick``: 10,000 files and 10 edits. The rows go to
``bench/results/bisync-<profile>.json``, from which ``python -m tools.figures`` makes the table
in docs/performance.md.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

from bench import datasets
from bench.common import machine, save
from bench.dav import rclone_exe, rclone_version
from bench.suite import Http, Results, parser, profile_of, run_alone
from harness.server import BIN

LATENCY_GOAL, NOOP_GOAL, RCLONE_GOAL = 1.0, 3.0, 2.0
PAUSE = 0.5          # seconds between an edit's arrival and the next edit
ARRIVAL_TIMEOUT = 30.0
TREE_SEED, EDIT_SEED = 51, 52
RCLONE_FLAGS = ("--checkers", "8")
SUMMARY = re.compile(r"bisync: (\d+) up, (\d+) down, (\d+) moved, (\d+) deleted, (\d+) conflicts")


class Replica:
    """One local folder kept in step with a remote folder by ``blockdrive bisync``, as one user
    on one device: its own cache, config, trash and state database under ``home``."""

    def __init__(self, home: Path, url: str, token: str, remote: str, device: str):
        self.home, self.remote, self.device = home, remote, device
        self.local = home / "files"
        self.local.mkdir(parents=True, exist_ok=True)
        self.log = home / "bisync.log"
        self.env = {**os.environ, "BLOCKDRIVE_URL": url, "BLOCKDRIVE_TOKEN": token,
                    "XDG_CACHE_HOME": str(home / "cache"), "XDG_CONFIG_HOME": str(home / "config"),
                    "XDG_DATA_HOME": str(home / "data")}
        self.watcher: subprocess.Popen | None = None

    def argv(self, *flags: str) -> list[str]:
        return [str(BIN), "bisync", str(self.local), self.remote, "--state", str(self.home / "state.sqlite"),
                "--device", self.device, *flags]

    def run(self) -> tuple[float, tuple[int, ...]]:
        """Seconds for one ``blockdrive bisync``, and its summary's counts (up, down, moved,
        deleted, conflicts)."""
        t = time.perf_counter()
        out = subprocess.run(self.argv(), env=self.env, capture_output=True, text=True)
        took = time.perf_counter() - t
        with open(self.log, "a") as fh:
            fh.write(out.stdout + out.stderr)
        m = SUMMARY.search(out.stdout)
        if out.returncode or not m:
            raise SystemExit(f"blockdrive bisync {self.local} {self.remote} failed (exit {out.returncode}):\n"
                             f"{(out.stdout + out.stderr)[-3000:]}")
        return took, tuple(int(x) for x in m.groups())

    def watch(self) -> None:
        with open(self.log, "ab") as log:
            self.watcher = subprocess.Popen(self.argv("--watch"), env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                            start_new_session=True)

    def check(self) -> None:
        """Exit with the watcher's log when it is no longer running."""
        if self.watcher and self.watcher.poll() is not None:
            raise SystemExit(f"blockdrive bisync --watch ({self.device}) exited {self.watcher.returncode}:\n"
                             f"{self.log.read_text(errors='replace')[-3000:]}")

    def stop(self) -> None:
        if self.watcher and self.watcher.poll() is None:
            self.watcher.send_signal(signal.SIGTERM)
            try:
                self.watcher.wait(20)
            except subprocess.TimeoutExpired:
                self.watcher.kill()
                self.watcher.wait()


def arrival(path: Path, data: bytes, since: float, replicas: list[Replica]) -> float | None:
    """Seconds from ``since`` until ``path`` holds ``data`` (read every 10 ms), or None after
    :data:`ARRIVAL_TIMEOUT`."""
    while True:
        try:
            if path.read_bytes() == data:
                return time.perf_counter() - since
        except OSError:  # not there yet, or being replaced right now
            pass
        now = time.perf_counter()
        if now - since > ARRIVAL_TIMEOUT:
            return None
        for r in replicas:
            r.check()
        time.sleep(0.01)


def latency(edits: int, tmp: Path, http: Http) -> tuple[list[float], int]:
    """Two watching replicas of one account; ``edits`` creates and edits of small files, the
    sides taking turns (create on one, create on the other, edit on one, edit on the other...);
    returns the seconds each took to show on the other side, and how many never did."""
    c = http.user()
    one = Replica(tmp / "one", http.url, c.token, "/bench", "one")
    two = Replica(tmp / "two", http.url, c.token, "/bench", "two")
    one.run()  # both start from a synced, empty folder
    two.run()
    rng = random.Random(EDIT_SEED)
    names: list[str] = []
    times: list[float] = []
    lost = 0
    try:
        one.watch()
        two.watch()
        for i in range(-2, edits):  # two warm-up edits, one each way, are not counted
            src, dst = (one, two) if i % 2 == 0 else (two, one)
            if i < 0 or (i // 2) % 2 == 0 or not names:
                name = f"note-{i + 2:03d}.txt"
                names.append(name)
            else:
                name = rng.choice(names)
            data = f"edit {i} by {src.device}\n".encode() + rng.randbytes(rng.randint(100, 4000))
            since = time.perf_counter()
            (src.local / name).write_bytes(data)
            took = arrival(dst.local / name, data, since, [one, two])
            if i >= 0:
                if took is None:
                    lost += 1
                else:
                    times.append(took)
            time.sleep(PAUSE)
    finally:
        one.stop()
        two.stop()
    return times, lost


def rclone_env(url: str, email: str, password: str, tmp: Path) -> dict:
    """rclone's remote ``bd:`` from environment variables: blockdrive's Nextcloud-dialect WebDAV
    for ``email``, the password given obscured, as rclone requires."""
    (tmp / "rclone.conf").touch()
    env = {**os.environ, "RCLONE_CONFIG": str(tmp / "rclone.conf"), "RCLONE_CACHE_DIR": str(tmp / "rclone-cache")}
    obscured = subprocess.run([rclone_exe(), "obscure", password], env=env, capture_output=True, text=True,
                              check=True).stdout.strip()
    return {**env, "RCLONE_CONFIG_BD_TYPE": "webdav", "RCLONE_CONFIG_BD_VENDOR": "nextcloud",
            "RCLONE_CONFIG_BD_URL": f"{url}/remote.php/dav/files/{quote(email)}/",
            "RCLONE_CONFIG_BD_USER": email, "RCLONE_CONFIG_BD_PASS": obscured}


def rclone_bisync(local: Path, remote: str, workdir: Path, env: dict, log: Path, *flags: str) -> float:
    """Seconds for one ``rclone bisync local bd:remote`` (it must succeed)."""
    argv = [rclone_exe(), "bisync", str(local), f"bd:{remote}", "--workdir", str(workdir), *RCLONE_FLAGS, *flags]
    t = time.perf_counter()
    out = subprocess.run(argv, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    with open(log, "a") as fh:
        fh.write(f"$ {' '.join(argv)}\n{out.stdout}{out.stderr}")
    if out.returncode:
        raise SystemExit(f"rclone bisync {' '.join(flags)} failed (exit {out.returncode}):\n{out.stderr[-3000:]}")
    return took


def noop(files: int, repeat: int, tmp: Path, http: Http, download: bool = True) -> dict[str, list[float]]:
    """The big tree seeded; its first ``blockdrive bisync`` over a copy of it (files matched by
    hash, nothing sent) and, with ``download``, into an empty folder; ``rclone bisync --resync``;
    then the no-op of each, ``repeat`` times, taking turns. Seconds by measure."""
    c = http.user()
    src = tmp / "tree"
    datasets.foldered_files(src, files, seed=TREE_SEED)
    os.sync()
    seeder = Replica(tmp / "seeder", http.url, c.token, "/tree", "seeder")
    t = time.perf_counter()
    out = subprocess.run([str(BIN), "sync", str(src), "/tree", "-q", "--json"], env=seeder.env,
                         capture_output=True, text=True)
    runs = {"seed": [time.perf_counter() - t]}
    if out.returncode:
        raise SystemExit(f"blockdrive sync failed: {out.stderr[-3000:]}")
    if download:
        took, counts = Replica(tmp / "empty", http.url, c.token, "/tree", "empty").run()
        runs["download"] = [took]
        if counts[1] != files:
            print(f"   note: the first bisync to an empty folder brought {counts[1]} files down, not {files}", flush=True)
        shutil.rmtree(tmp / "empty")
    bd = Replica(tmp / "bd", http.url, c.token, "/tree", "bench")
    bd.local.rmdir()
    shutil.copytree(src, bd.local)
    os.sync()
    took, counts = bd.run()
    runs["first"] = [took]
    if any(counts):
        print(f"   note: the first bisync over an identical copy reported {counts}", flush=True)
    env = rclone_env(http.url, c.email, c.token, tmp)
    work, log = tmp / "rclone-work", tmp / "rclone.log"
    work.mkdir()
    # The seeded tree's modification times are older than the server's copies (the one-way sync
    # does not send them), so a plain --resync would upload every file again: by size, the two
    # sides already agree, which is the state whose no-op run is measured.
    runs["resync"] = [rclone_bisync(src, "tree", work, env, log, "--resync", "--size-only")]
    runs["bd_noop"], runs["rclone_noop"] = [], []
    for _ in range(repeat):
        os.sync()
        took, counts = bd.run()
        if any(counts):
            print(f"   note: a blockdrive bisync with nothing to do reported {counts}", flush=True)
        runs["bd_noop"].append(took)
        os.sync()
        runs["rclone_noop"].append(rclone_bisync(src, "tree", work, env, log))
    return runs


def percentile(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def measure(p: dict, tmp: Path, res: Results, http: Http) -> list[dict]:
    """Both measurements; their rows (section ``bisync``) go to ``res`` and are returned."""
    tmp = tmp / "bisync"
    tmp.mkdir(parents=True, exist_ok=True)
    first = len(res.rows)
    n, edits = p["bisync_files"], p["bisync_edits"]
    print(f"   latency: {edits} edits between two watching replicas", flush=True)
    times, lost = latency(edits, tmp / "latency", http)
    if lost:
        print(f"   {lost} of {edits} edits never showed on the other side within {ARRIVAL_TIMEOUT:g} s", flush=True)
    if times:
        label = "--watch: an edit's bytes on the other replica"
        res.add("bisync_lat_p50", "bisync", f"{label}, p50 of {len(times)}", [statistics.median(times)], "s",
                higher_is_better=False)
        res.within("bisync_lat_p50", LATENCY_GOAL)
        res.add("bisync_lat_p99", "bisync", f"{label}, p99 of {len(times)}", [percentile(times, 0.99)], "s",
                higher_is_better=False)
    if lost:
        res.add("bisync_lat_lost", "bisync", f"--watch: edits not shown within {ARRIVAL_TIMEOUT:g} s", [lost], "edits",
                higher_is_better=False)
    print(f"   no-op: {n:,} files", flush=True)
    runs = noop(n, p["bisync_repeat"], tmp / "noop", http, p["bisync_download"])
    tree = f"{n:,} files"
    res.add("bisync_seed", "bisync", f"{tree}: seeded by the one-way blockdrive sync", runs["seed"], "s",
            higher_is_better=False)
    if "download" in runs:
        res.add("bisync_download", "bisync", f"{tree}: first bisync to an empty folder (download)", runs["download"],
                "s", higher_is_better=False)
    res.add("bisync_first", "bisync", f"{tree}: first bisync over an identical copy", runs["first"], "s",
            higher_is_better=False)
    res.add("bisync_resync", "bisync", f"{tree}: rclone bisync --resync --size-only (WebDAV)", runs["resync"], "s",
            higher_is_better=False)
    res.add("bisync_noop_bd", "bisync", f"{tree}: blockdrive bisync, nothing to do", runs["bd_noop"], "s",
            higher_is_better=False, short="blockdrive bisync")
    res.add("bisync_noop_rclone", "bisync", f"{tree}: rclone bisync (WebDAV), nothing to do", runs["rclone_noop"], "s",
            higher_is_better=False, short="rclone bisync")
    res.within("bisync_noop_bd", NOOP_GOAL)
    res.ratio("bisync_noop_bd", "bisync_noop_rclone", RCLONE_GOAL, what="of rclone's")
    return res.rows[first:]


def how() -> str:
    return (f"{rclone_version()}: `rclone bisync LOCAL bd:tree {' '.join(RCLONE_FLAGS)}` on "
            f"/remote.php/dav/files/EMAIL/ (vendor nextcloud)")


def save_results(command: str, profile: str, p: dict, rows: list[dict], seconds: float) -> Path:
    """``bench/results/bisync-<profile>.json``: the rows, the ``command`` that measured them
    (without ``--quick``) and what they were measured with."""
    return save(f"bisync-{profile}", {"command": command, "profile": profile, "machine": machine(),
                                      "at": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(seconds),
                                      "how": how(),
                                      "params": {"files": p["bisync_files"], "edits": p["bisync_edits"],
                                                 "repeat": p["bisync_repeat"],
                                                 "download": p["bisync_download"]},
                                      "rows": rows})


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m bench.bisync", __doc__.splitlines()[0], "10,000 files and 10 edits instead of 100,000 and 30")
    ap.add_argument("--files", type=int, help="files in the no-op tree")
    ap.add_argument("--edits", type=int, help="edits timed with --watch")
    ap.add_argument("--no-download", action="store_true",
                    help="leave out the first bisync to an empty folder (it downloads the whole tree)")
    args = ap.parse_args(argv)
    profile, p = profile_of(args)
    p["bisync_repeat"] = args.repeat or p["bisync_repeat"]
    p["bisync_files"] = args.files or p["bisync_files"]
    p["bisync_edits"] = args.edits or p["bisync_edits"]
    p["bisync_download"] = p["bisync_download"] and not args.no_download
    print(how(), flush=True)
    rows, took = run_alone(f"blockdrive bisync bench ({profile})", f"bisync, {profile} profile", "bd-bench-bisync-",
                           args.tmp, measure, p, p["bisync_repeat"])
    command = "python -m bench.bisync" + ("" if p["bisync_download"] else " --no-download")
    out = save_results(command, profile, p, rows, took)
    print(f"results: {out}; {took:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
