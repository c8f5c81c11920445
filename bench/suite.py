"""blockdrive side by side with restic and the hardware's limits, on the same data, in one run.

    python -m bench [--quick] [--repeat N] [--only SECTION] [--tmp DIR]

Generates the data sets from a seed (``bench/datasets.py``), runs each measurement ``--repeat``
times, interleaving the contenders so drift on a shared machine hits them alike, and prints one
table of medians and ratios against the goals; the same figures go to
``bench/results/suite-<profile>.json`` and a chart to ``bench/results/suite-<profile>.png``.

Sections: ingest (random bytes: SHA-256 in memory, FastCDC + SHA-256, cp + sync, ``put``,
HTTP PUT, ``restic backup`` with compression off and on), restore (cold: ``drive.open``, HTTP GET,
``restic restore``, a plain cp), dedup (20 versions of a source tree, one file per upload, at
restic's chunk sizes and at blockdrive's; stored bytes vs ``restic stats --mode raw-data``),
incremental (version N+1 after N, and a large file edited in place), small files (10,000 files of
1-64 KiB: ``put`` per file, ``blockdrive sync`` over HTTP, ``restic backup``), scaling (1, 2, 4
concurrent HTTP uploads; latency of a folder listing with 10, 1,000 and 100,000 entries), dav
(``rclone copy`` to blockdrive's WebDAV beside ``rclone serve webdav`` and WsgiDAV's filesystem
provider, and blockdrive's own PUT: ``bench/dav.py``), bisync (an edit's way from one ``--watch`` replica
to the other; a no-op ``blockdrive bisync`` of a big tree beside ``rclone bisync`` through the WebDAV:
``bench/bisync.py``), and, only when named with ``--only``, smallfiles (4 KiB files by 16 HTTP
clients beside ``rclone serve webdav`` and a write+fsync loop, one stream, a cold download, the
workers' memory: ``bench/smallfiles.py``).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench import datasets
from bench.common import MiB, drop_caches, machine, save

RESTIC_CHUNKING = {"chunk_min": 512 * 1024, "chunk_avg": MiB, "chunk_max": 8 * MiB}
DEFAULT_CHUNKING = {"chunk_min": 256 * 1024, "chunk_avg": MiB, "chunk_max": 4 * MiB}

PROFILES = {
    "quick": dict(random_mib=192, corpus_files=250, corpus_mib=12, versions=20, big_mib=64, small=10_000, small_put=1_000,
                  scale_mib=32, listings=(10, 1_000, 100_000), latency_requests=60, dav_files=1_000, dav_mib=128,
                  bisync_files=10_000, bisync_edits=10, bisync_repeat=3, bisync_download=True, repeat=3),
    "full": dict(random_mib=1024, corpus_files=1_500, corpus_mib=64, versions=20, big_mib=512, small=10_000, small_put=10_000,
                 scale_mib=128, listings=(10, 1_000, 100_000), latency_requests=300, dav_files=10_000, dav_mib=1024,
                 bisync_files=100_000, bisync_edits=30, bisync_repeat=3, bisync_download=True,
                 repeat=5),
}
SECTIONS = ("ingest", "restore", "dedup", "incremental", "small", "scaling", "dav", "bisync", "smallfiles")
OPT_IN = ("smallfiles",)  # run only when named with --only: it alone takes as long as the rest


class Results:
    """Rows of the table: a measure, its runs and median, and (optionally) a ratio to a
    reference measure and the goal it is held to."""

    def __init__(self):
        self.rows: list[dict] = []
        self.by_key: dict[str, dict] = {}

    def add(self, key: str, section: str, label: str, runs: list[float], unit: str,
            higher_is_better: bool = True, short: str | None = None) -> dict:
        row = dict(key=key, section=section, label=label, short=short or label, unit=unit,
                   runs=[round(x, 3) for x in runs],
                   median=statistics.median(runs), higher_is_better=higher_is_better)
        self.rows.append(row)
        self.by_key[key] = row
        return row

    def ratio(self, key: str, ref: str, goal: float | None = None, what: str = "") -> None:
        """``key``'s median over ``ref``'s; with ``goal``, met when the ratio is at least it
        (for lower-is-better measures, when ``ref``/``key`` is at least it)."""
        row, base = self.by_key[key], self.by_key[ref]
        r = row["median"] / base["median"] if base["median"] else float("inf")
        row.setdefault("ratios", []).append(dict(ref=ref, ratio=r, goal=goal, what=what,
                                                 met=None if goal is None else r >= goal if row["higher_is_better"]
                                                 else r <= goal))

    def within(self, key: str, limit: float) -> None:
        """Hold ``key``'s median to ``limit``, in the row's own unit (at most it; at least it for
        higher-is-better measures); shown as the fraction of the limit against a goal of 1."""
        row = self.by_key[key]
        r = row["median"] / limit
        row.setdefault("ratios", []).append(dict(ref=key, ratio=r, goal=1.0, what=f"of {limit:g} {row['unit']}",
                                                 met=r >= 1 if row["higher_is_better"] else r <= 1))

    def _notes(self, r: dict, ge: str, le: str, times: str, missed: str) -> str:
        notes = []
        for q in r.get("ratios", []):
            s = f"{q['ratio']:.2f}{times} {q['what'] or self.by_key[q['ref']]['short']}"
            if q["goal"] is not None:
                cmp = ge if r["higher_is_better"] else le
                if q["met"]:
                    s += f" (goal {cmp} {q['goal']:g}: met)"
                else:
                    short = abs(q["goal"] - q["ratio"]) / q["goal"] * 100
                    s += f" (goal {cmp} {q['goal']:g}: {missed} by {short:.0f}%)"
            notes.append(s)
        return "; ".join(notes)

    def lines(self) -> list[str]:
        out = [f"{'section':<11} {'measure':<64} {'median':>14}  {'runs':<26} ratio / goal", "-" * 150]
        for r in self.rows:
            runs = " ".join(_fmt(x) for x in r["runs"])
            out.append(f"{r['section']:<11} {r['label'][:64]:<64} {_fmt(r['median']):>9} {r['unit']:<4}  "
                       f"{runs[:26]:<26} {self._notes(r, '>=', '<=', 'x', 'MISSED')}")
        return out

    def markdown(self) -> list[str]:
        out = ["| section | measure | median | ratio / goal |", "| --- | --- | --- | --- |"]
        for r in self.rows:
            out.append(f"| {r['section']} | {r['label']} | {_fmt(r['median'])} {r['unit']} | "
                       f"{self._notes(r, '≥', '≤', '×', '**missed**')} |")
        return out


def _fmt(x: float) -> str:
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.2f}" if abs(x) >= 1 else f"{x:.3f}"


def _sync() -> None:
    os.sync()


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _du(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.exists() else 0


# ---- contenders ------------------------------------------------------------------------------

class Restic:
    """One local restic repository (format v2, so compression can be chosen)."""

    def __init__(self, root: Path, name: str, compression: str):
        self.bin = shutil.which("restic")
        if not self.bin:
            raise SystemExit("restic is not installed: run `make bench` (it installs Debian's restic) "
                             "or `apt-get install -y restic`")
        self.repo, self.compression = root / f"restic-{name}", compression
        self.env = {**os.environ, "RESTIC_PASSWORD": "bench", "RESTIC_REPOSITORY": str(self.repo),
                    "RESTIC_CACHE_DIR": str(root / f"restic-cache-{name}")}
        shutil.rmtree(self.repo, ignore_errors=True)
        self._run("init", "--repository-version", "2")

    def _run(self, *args) -> str:
        p = subprocess.run([self.bin, *args], env=self.env, capture_output=True, text=True)
        if p.returncode != 0:
            raise SystemExit(f"restic {' '.join(args)} failed: {p.stderr.strip()}")
        return p.stdout

    def backup(self, path: Path) -> float:
        return _timed(lambda: self._run("backup", "--quiet", "--compression", self.compression, str(path)))

    def restore(self, target: Path) -> float:
        return _timed(lambda: self._run("restore", "latest", "--target", str(target)))

    def raw_bytes(self) -> int:
        return json.loads(self._run("stats", "--json", "--mode", "raw-data"))["total_size"]

    @staticmethod
    def version() -> str:
        exe = shutil.which("restic")
        return subprocess.run([exe, "version"], capture_output=True, text=True).stdout.split(" compiled")[0] \
            if exe else "not installed"


class Local:
    """blockdrive in process, on the embedded default (SQLite + local packs)."""

    def __init__(self, home: Path, chunking: dict):
        from storage.config import load_config
        from storage.db import make_engine, migrate
        from storage.drive import Drive
        shutil.rmtree(home, ignore_errors=True)
        self.home = home
        cfg = load_config(env={}, overrides={"storage": {"home": str(home), **chunking},
                                             "security": {"scrypt_n": 1024}})
        self.engine = make_engine(cfg.database_url)
        migrate(self.engine)
        self.drive = Drive(cfg, engine=self.engine)
        self.user, _ = self.drive.create_user("bench@example.com", "benchpassword", premium=True)
        self.folders = {"": self.user.root_id}

    def folder(self, rel: str) -> int:
        if rel not in self.folders:
            parent, _, name = rel.rpartition("/")
            self.folders[rel] = self.drive.mkdir(self.user.id, self.folder(parent), name).id
        return self.folders[rel]

    def put(self, path: Path, rel: str):
        parent, _, name = rel.rpartition("/")
        with open(path, "rb", buffering=0) as fh:
            return self.drive.put(self.user.id, self.folder(parent), name, fh)

    def put_tree(self, root: Path, limit: int | None = None) -> int:
        n = 0
        for p in sorted(root.rglob("*")):
            if p.is_file() and (limit is None or n < limit):
                self.put(p, p.relative_to(root).as_posix())
                n += 1
        return n

    def read_to(self, node_id: int, out: Path) -> None:
        _node, _v, chunks = self.drive.open(self.user.id, node_id)
        with open(out, "wb") as fh:
            for c in chunks:
                fh.write(c)

    def pack_bytes(self) -> int:
        return _du(self.home / "packs")

    def close(self) -> None:
        self.engine.dispose()


class Http:
    """The real server (``blockdrive serve``: gunicorn, 2 workers, SQLite + local packs)."""

    def __init__(self, tmp: Path, env: dict[str, str] | None = None):
        """``env``: more of the server's environment, over the bench's chunking settings."""
        from harness.server import start_server
        env = {**{f"BLOCKDRIVE_STORAGE_{k.upper()}": str(v) for k, v in DEFAULT_CHUNKING.items()}, **(env or {})}
        self.workers = 2
        self.proc, self.srv = start_server(tmp, None, workers=self.workers, extra_env=env)
        self.url, self.n = self.srv.url, 0

    def user(self):
        self.n += 1
        return self.srv.user(f"bench{self.n}@example.com", premium=True)

    def upload(self, client, path: Path, name: str) -> dict:
        with open(path, "rb") as fh:
            r = client.put(f"/api/v1/nodes/{client.root}/children/{name}", data=fh)
        r.raise_for_status()
        return r.json()

    def download(self, client, node_id: int, out: Path) -> None:
        with client.get(f"/api/v1/nodes/{node_id}/content", stream=True) as r, open(out, "wb") as fh:
            r.raise_for_status()
            for chunk in r.iter_content(MiB):
                fh.write(chunk)

    def close(self) -> None:
        from harness.server import stop_server
        stop_server(self.proc)


# ---- sections ------------------------------------------------------------------------------

def ingest(p, tmp, res, state) -> None:
    size = p["random_mib"] * MiB
    files = [datasets.random_file(tmp / f"random-{r}.bin", size, seed=100 + r) for r in range(p["repeat"])]
    state["random"] = files[-1]  # the stores below keep the last run's file
    from storage.chunking import FastCDCChunker
    runs = {k: [] for k in ("sha", "cdc", "cp", "put", "http", "restic_off", "restic_on")}
    http = state["http"]
    client = http.user()
    for r, f in enumerate(files):
        runs["sha"].append(size / _timed(lambda d=f.read_bytes(): hashlib.sha256(d).digest()))
        chunker = FastCDCChunker(*(DEFAULT_CHUNKING[k] for k in ("chunk_min", "chunk_avg", "chunk_max")))

        def cdc():
            with open(f, "rb", buffering=0) as fh:
                for view in chunker.chunks(fh):
                    hashlib.sha256(view).digest()
        runs["cdc"].append(size / _timed(cdc))
        _sync()
        runs["cp"].append(size / _timed(lambda: subprocess.run(["sh", "-c", f"cp '{f}' '{tmp}/cp.out' && sync"],
                                                               check=True)))
        os.unlink(tmp / "cp.out")
        _sync()
        local = Local(tmp / "home-ingest", DEFAULT_CHUNKING)
        t = _timed(lambda: local.put(f, "random.bin"))
        runs["put"].append(size / t)
        local.close()
        _sync()
        t = _timed(lambda: state.setdefault("http_nodes", []).append(http.upload(client, f, f"random-{r}.bin")["id"]))
        runs["http"].append(size / t)
        _sync()
        for mode, key in (("off", "restic_off"), ("auto", "restic_on")):
            rs = Restic(tmp, f"ingest-{mode}", mode)
            runs[key].append(size / rs.backup(f))
            state[f"restic_{mode}"] = rs
            _sync()
    state["http_client"] = client
    mb = [x / 1e6 for x in runs["sha"]]
    res.add("sha", "ingest", "SHA-256 in memory (hashlib; the hash limit)", mb, "MB/s", short="SHA-256")
    res.add("cdc", "ingest", "FastCDC + SHA-256 (blockdrive's chunker, no I/O)", [x / 1e6 for x in runs["cdc"]], "MB/s")
    res.ratio("cdc", "sha", 0.6)
    res.add("cp", "ingest", "cp + sync to the same disk (the write limit)", [x / 1e6 for x in runs["cp"]], "MB/s",
            short="cp + sync")
    res.add("put", "ingest", "blockdrive put, in process", [x / 1e6 for x in runs["put"]], "MB/s",
            short="put")
    res.add("http", "ingest", "blockdrive over HTTP (PUT, 2 workers)", [x / 1e6 for x in runs["http"]], "MB/s")
    res.add("restic_off", "ingest", f"restic backup, compression off ({Restic.version()})",
            [x / 1e6 for x in runs["restic_off"]], "MB/s", short="restic (off)")
    res.add("restic_on", "ingest", "restic backup, compression auto", [x / 1e6 for x in runs["restic_on"]], "MB/s",
            short="restic (auto)")
    res.ratio("put", "restic_off", 1.0)
    res.ratio("put", "restic_on", 1.0)
    res.ratio("put", "cp")
    res.ratio("http", "put", 0.6)
    res.ratio("http", "restic_on", 1.0)


def restore(p, tmp, res, state) -> None:
    f = state.get("random")
    if f is None:  # restore alone: ingest one file into each store first
        f = state["random"] = datasets.random_file(tmp / "random-0.bin", p["random_mib"] * MiB, seed=100)
        client = state["http_client"] = state["http"].user()
        state["http_nodes"] = [state["http"].upload(client, f, "random-0.bin")["id"]]
        state["restic_auto"] = Restic(tmp, "ingest-auto", "auto")
        state["restic_auto"].backup(f)
    size = f.stat().st_size
    local = Local(tmp / "home-restore", DEFAULT_CHUNKING)
    node = local.put(f, "random.bin").node.id
    http, client, hnode = state["http"], state["http_client"], state["http_nodes"][-1]
    rs = state["restic_auto"]
    runs = {k: [] for k in ("cp", "open", "get", "restic")}
    out = tmp / "restored"
    for _ in range(p["repeat"]):
        for key, fn in (("cp", lambda: subprocess.run(["cp", str(f), str(out / "cp.bin")], check=True)),
                        ("open", lambda: local.read_to(node, out / "open.bin")),
                        ("get", lambda: http.download(client, hnode, out / "get.bin")),
                        ("restic", lambda: rs.restore(out / "restic"))):
            shutil.rmtree(out, ignore_errors=True)
            out.mkdir()
            drop_caches()
            runs[key].append(size / _timed(fn))
            got = [q for q in out.rglob("*") if q.is_file()]
            if [q.stat().st_size for q in got] != [size]:  # the contender restored the whole file
                raise SystemExit(f"{key} restored {[str(q) for q in got]}, not one file of {size} bytes")
    local.close()
    shutil.rmtree(out, ignore_errors=True)
    cold = "cold cache" if os.geteuid() == 0 else "page cache NOT dropped (not root)"
    res.add("cp_read", "restore", f"cp of the file ({cold}; the read limit)", [x / 1e6 for x in runs["cp"]], "MB/s",
            short="cp")
    res.add("open", "restore", "blockdrive read to a file, in process", [x / 1e6 for x in runs["open"]], "MB/s")
    res.add("get", "restore", "blockdrive download over HTTP (GET) to a file", [x / 1e6 for x in runs["get"]], "MB/s")
    res.add("restic_restore", "restore", "restic restore", [x / 1e6 for x in runs["restic"]], "MB/s", short="restic restore")
    res.ratio("open", "restic_restore", 1.0)
    res.ratio("get", "restic_restore", 1.0)
    res.ratio("get", "cp_read")


def dedup(p, tmp, res, state) -> None:
    """The versioned corpus into four stores in lockstep: after each version is written to the
    working folder, blockdrive (at restic's chunk sizes and at its own) gets one upload per
    changed file and a delete per removed one — what a drive client sends — and restic (off and
    auto) backs up the working folder, finding the unchanged files through its parent snapshot."""
    work = tmp / "corpus"
    work.mkdir()
    k = p["repeat"]  # the last k versions each count as one run of "version N+1 after N"
    last = p["versions"] - 1
    stores = {"bd_restic_sizes": Local(tmp / "home-bd-rs", RESTIC_CHUNKING),
              "bd_default": Local(tmp / "home-bd", DEFAULT_CHUNKING)}
    restics = {"restic_off": Restic(tmp, "corpus-off", "off"), "restic_auto": Restic(tmp, "corpus-auto", "auto")}
    times = {name: [] for name in [*stores, *restics]}
    added = {name: [] for name in [*stores, *restics]}
    nodes = {name: {} for name in stores}
    logical = 0
    for v, changed, deleted in datasets.versioned_corpus(work, p["versions"], p["corpus_files"],
                                                         p["corpus_mib"] * MiB, seed=11):
        logical += datasets.tree_bytes(work)
        _sync()
        for name, st in stores.items():
            def upload():
                for rel in changed:
                    nodes[name][rel] = st.put(work / rel, rel).node.id
                for rel in deleted:
                    st.drive.delete(st.user.id, nodes[name].pop(rel))
            before = st.pack_bytes()
            times[name].append(_timed(upload))
            added[name].append(st.pack_bytes() - before)
        for name, rs in restics.items():
            before = rs.raw_bytes() if v > last - k else 0
            times[name].append(rs.backup(work))
            added[name].append(rs.raw_bytes() - before if v > last - k else 0)
    stored = {name: st.pack_bytes() for name, st in stores.items()}
    stored.update({name: rs.raw_bytes() for name, rs in restics.items()})
    for st in stores.values():
        st.close()
        shutil.rmtree(st.home, ignore_errors=True)
    for rs in restics.values():
        shutil.rmtree(rs.repo, ignore_errors=True)
    inc = {name: (times[name][-k:], added[name][-k:]) for name in times}
    versions = range(p["versions"])
    mib = lambda b: b / MiB  # noqa: E731
    label = f"{len(versions)} versions, {logical / MiB:.0f} MiB logical"
    res.add("st_restic", "dedup", f"restic stored (raw-data, compression auto); {label}", [mib(stored["restic_auto"])],
            "MiB", higher_is_better=False, short="restic (auto)")
    res.add("st_restic_off", "dedup", "restic stored (raw-data, compression off)", [mib(stored["restic_off"])], "MiB",
            higher_is_better=False, short="restic (off)")
    res.add("st_bd_rs", "dedup", "blockdrive stored, restic's chunk sizes (512K/1M/8M)", [mib(stored["bd_restic_sizes"])],
            "MiB", higher_is_better=False)
    res.add("st_bd", "dedup", "blockdrive stored, its defaults (256K/1M/4M)", [mib(stored["bd_default"])], "MiB",
            higher_is_better=False)
    res.ratio("st_bd_rs", "st_restic", 1.0)
    res.ratio("st_bd", "st_restic", 1.0)
    res.ratio("st_bd", "st_restic_off")
    state["inc"] = inc


def incremental(p, tmp, res, state) -> None:
    if "inc" not in state:
        dedup(p, tmp, res, state)
    inc = state["inc"]
    res.add("inc_bd_t", "incremental", "corpus: version N+1 after N, blockdrive (changed files)", inc["bd_default"][0],
            "s", higher_is_better=False)
    res.add("inc_rs_t", "incremental", "corpus: version N+1 after N, restic backup (auto)", inc["restic_auto"][0], "s",
            higher_is_better=False)
    res.ratio("inc_bd_t", "inc_rs_t", 1.0, what="of restic's time")
    res.add("inc_bd_b", "incremental", "corpus: bytes stored for version N+1, blockdrive",
            [b / 1024 for b in inc["bd_default"][1]], "KiB", higher_is_better=False)
    res.add("inc_rs_b", "incremental", "corpus: bytes stored for version N+1, restic (auto)",
            [b / 1024 for b in inc["restic_auto"][1]], "KiB", higher_is_better=False)
    res.ratio("inc_bd_b", "inc_rs_b", 1.0, what="of restic's bytes")
    # one large file edited in place
    a, b = datasets.edited_pair(tmp / "big-a.bin", tmp / "big-b.bin", p["big_mib"] * MiB, seed=21)
    runs = {k: [] for k in ("bd_t", "bd_b", "rs_t", "rs_b")}
    for _ in range(p["repeat"]):
        local = Local(tmp / "home-big", DEFAULT_CHUNKING)
        local.put(a, "big.bin")
        before = local.pack_bytes()
        _sync()
        runs["bd_t"].append(_timed(lambda: local.put(b, "big.bin")))
        runs["bd_b"].append(local.pack_bytes() - before)
        local.close()
        rs = Restic(tmp, "big", "auto")
        d = tmp / "big-dir"
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir()
        shutil.copyfile(a, d / "big.bin")
        rs.backup(d)
        before = rs.raw_bytes()
        shutil.copyfile(b, d / "big.bin")
        _sync()
        runs["rs_t"].append(rs.backup(d))
        runs["rs_b"].append(rs.raw_bytes() - before)
    shutil.rmtree(tmp / "home-big", ignore_errors=True)
    label = f"{p['big_mib']} MiB file, 8 inserts/overwrites"
    res.add("big_bd_t", "incremental", f"{label}: blockdrive put of the edit", runs["bd_t"], "s", higher_is_better=False)
    res.add("big_rs_t", "incremental", f"{label}: restic backup of the edit", runs["rs_t"], "s", higher_is_better=False)
    res.ratio("big_bd_t", "big_rs_t", 1.0, what="of restic's time")
    res.add("big_bd_b", "incremental", "  bytes stored for the edit, blockdrive", [x / MiB for x in runs["bd_b"]], "MiB",
            higher_is_better=False)
    res.add("big_rs_b", "incremental", "  bytes stored for the edit, restic", [x / MiB for x in runs["rs_b"]], "MiB",
            higher_is_better=False)
    res.ratio("big_bd_b", "big_rs_b", 1.0, what="of restic's bytes")


def small(p, tmp, res, state) -> None:
    tree = tmp / "small"
    n = p["small"]
    datasets.small_files(tree, n, seed=31)
    _sync()
    from harness.server import BIN
    http = state["http"]
    runs = {k: [] for k in ("put", "sync", "restic")}
    for r in range(p["repeat"]):
        local = Local(tmp / "home-small", DEFAULT_CHUNKING)
        runs["put"].append(p["small_put"] / _timed(lambda: local.put_tree(tree, limit=p["small_put"])))
        local.close()
        _sync()
        c = http.user()  # a new user: the server rightly skips blocks a user already stores
        env = {**os.environ, "BLOCKDRIVE_URL": http.url, "BLOCKDRIVE_TOKEN": c.token,
               "XDG_CACHE_HOME": str(tmp / f"cache-{r}"), "XDG_CONFIG_HOME": str(tmp / f"cfg-{r}")}

        def sync():
            out = subprocess.run([str(BIN), "sync", str(tree), f"/small-{r}", "-q", "--json"], env=env,
                                 capture_output=True, text=True)
            if out.returncode:
                raise SystemExit(f"blockdrive sync failed: {out.stderr}")
        runs["sync"].append(n / _timed(sync))
        _sync()
        rs = Restic(tmp, "small", "auto")
        runs["restic"].append(n / rs.backup(tree))
        _sync()
    shutil.rmtree(tmp / "home-small", ignore_errors=True)
    label = f"{n:,} files of 1-64 KiB"
    res.add("small_put", "small", f"{p['small_put']:,} of them: blockdrive put per file, in process", runs["put"], "f/s")
    res.add("small_sync", "small", f"{label}: blockdrive sync over HTTP", runs["sync"], "f/s")
    res.add("small_restic", "small", f"{label}: restic backup", runs["restic"], "f/s", short="restic")
    res.ratio("small_put", "small_restic")
    res.ratio("small_sync", "small_restic", 0.5)


def scaling(p, tmp, res, state) -> None:
    http = state["http"]
    size = p["scale_mib"] * MiB
    clients = [http.user() for _ in range(4)]
    seed = 1000
    for n in (1, 2, 4):
        runs = []
        for _ in range(p["repeat"]):
            files = []
            for i in range(n):
                seed += 1
                files.append(datasets.random_file(tmp / f"scale-{i}.bin", size, seed))
            _sync()
            errors = []

            def go(i):
                try:
                    http.upload(clients[i], files[i], f"scale-{seed}-{i}.bin")
                except Exception as exc:  # noqa: BLE001 - reported below
                    errors.append(exc)
            threads = [threading.Thread(target=go, args=(i,)) for i in range(n)]
            t = time.perf_counter()
            for th in threads:
                th.start()
            for th in threads:
                th.join()
            runs.append(n * size / (time.perf_counter() - t) / 1e6)
            if errors:
                raise SystemExit(f"concurrent upload failed: {errors[0]}")
        res.add(f"scale{n}", "scaling", f"HTTP ingest, {n} concurrent client(s) x {p['scale_mib']} MiB", runs, "MB/s",
                short=f"{n} client" + "s" * (n > 1))
        if n > 1:
            res.ratio(f"scale{n}", "scale1")
    # listing latency: folders of 10, 1,000 and 100,000 entries (rows inserted in bulk)
    import sqlalchemy as sa

    from storage.config import load_config
    from storage.models import Node
    c = clients[0]
    engine = sa.create_engine(load_config(env=http.srv.env).database_url)
    for n in p["listings"]:
        folder = c.mkdir(c.root, f"list-{n}")["id"]
        rows = [dict(owner_id=c.id, parent_id=folder, kind="folder", name=f"entry-{i:06d}", live_name=f"entry-{i:06d}")
                for i in range(n)]
        with engine.begin() as conn:
            for i in range(0, n, 5000):
                conn.execute(sa.insert(Node), rows[i:i + 5000])
        lat = []
        for _ in range(p["latency_requests"]):
            t = time.perf_counter()
            r = c.get(f"/api/v1/nodes/{folder}/children?limit=100")
            lat.append((time.perf_counter() - t) * 1000)
            r.raise_for_status()
        lat.sort()
        p50, p99 = lat[len(lat) // 2], lat[min(len(lat) - 1, int(len(lat) * 0.99))]
        res.add(f"list{n}_p50", "scaling", f"folder listing, {n:,} entries (first page of 100), p50", [p50], "ms",
                higher_is_better=False)
        res.add(f"list{n}_p99", "scaling", f"folder listing, {n:,} entries (first page of 100), p99", [p99], "ms",
                higher_is_better=False)
    engine.dispose()


def dav(p, tmp, res, state) -> None:
    """WebDAV beside its peers (bench/dav.py); its rows also go to ``dav-<profile>.json``."""
    from bench import dav as webdav
    t = time.perf_counter()
    rows = webdav.measure(p, tmp, res, state["http"])
    webdav.save_results("python -m bench", state["profile"], p, rows, time.perf_counter() - t)


def bisync(p, tmp, res, state) -> None:
    """Two-way sync (bench/bisync.py); its rows also go to ``bisync-<profile>.json``."""
    from bench import bisync as two_way
    t = time.perf_counter()
    rows = two_way.measure(p, tmp, res, state["http"])
    two_way.save_results("python -m bench", state["profile"], p, rows, time.perf_counter() - t)


def smallfiles(p, tmp, res, state) -> None:
    """Small files and streams (bench/smallfiles.py), at its own profile's sizes and runs; its
    rows also go to ``smallfiles-<profile>.json``."""
    from bench import smallfiles as sf
    t = time.perf_counter()
    q = {**p, **sf.PROFILES[state["profile"]]}
    rows = sf.measure(q, tmp, res, state["http"])
    sf.save_results("python -m bench --only smallfiles", state["profile"], q, rows, time.perf_counter() - t)


# ---- output ----------------------------------------------------------------------------------

def chart(res: Results, path: Path, title: str) -> Path | None:
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    groups = [("Ingest (MB/s)", ["sha", "cdc", "cp", "put", "http", "restic_off", "restic_on"]),
              ("Restore (MB/s)", ["cp_read", "open", "get", "restic_restore"]),
              ("Stored bytes, versioned corpus (MiB)", ["st_bd", "st_bd_rs", "st_restic", "st_restic_off"]),
              ("Small files (files/s)", ["small_put", "small_sync", "small_restic"]),
              ("4 KiB files (files/s)", ["sf_bd", "sf_rclone", "sf_fsync", "sf_inproc"]),
              ("HTTP ingest by clients (MB/s)", ["scale1", "scale2", "scale4"]),
              ("Incremental (s)", ["inc_bd_t", "inc_rs_t", "big_bd_t", "big_rs_t"])]
    groups = [(t, [k for k in ks if k in res.by_key]) for t, ks in groups]
    groups = [g for g in groups if g[1]]
    if not groups:
        return None
    fig, axes = plt.subplots(len(groups), 1, figsize=(10, 2.2 * len(groups) + 0.6))
    axes = [axes] if len(groups) == 1 else list(axes)
    for ax, (t, keys) in zip(axes, groups):
        rows = [res.by_key[k] for k in keys]
        colors = ["#c0504d" if "restic" in r["key"] or "_rs_" in r["key"] else
                  "#7f7f7f" if "limit" in r["label"] else "#4f81bd" for r in rows]
        ax.barh([r["label"][:60] for r in rows], [r["median"] for r in rows], color=colors)
        for i, r in enumerate(rows):
            ax.text(r["median"], i, " " + _fmt(r["median"]), va="center", fontsize=7)
        ax.set_title(t, fontsize=9, loc="left")
        ax.tick_params(labelsize=7)
        ax.invert_yaxis()
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def parser(prog: str, description: str, quick: str) -> argparse.ArgumentParser:
    """The options of a bench that runs a profile: ``--quick`` (described by ``quick``),
    ``--repeat`` and ``--tmp``; read them back with :func:`profile_of`."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    ap.add_argument("--quick", action="store_true", help=quick)
    ap.add_argument("--repeat", type=int, help="runs per measurement (default 3 quick, 5 full)")
    ap.add_argument("--tmp", help="scratch folder on the disk to measure (default: the system's temp dir)")
    return ap


def profile_of(args: argparse.Namespace) -> tuple[str, dict]:
    """The profile's name and its parameters, ``--repeat`` applied."""
    profile = "quick" if args.quick else "full"
    p = dict(PROFILES[profile])
    if args.repeat:
        p["repeat"] = args.repeat
    return profile, p


def run_alone(name: str, title: str, prefix: str, scratch: str | None, measure, p: dict, runs: int) -> tuple[list[dict], float]:
    """Run one section's ``measure(p, tmp, res, http)`` on a server of its own in a scratch folder
    (removed after), print its table under ``title``; its rows and the seconds it all took."""
    tmp = Path(tempfile.mkdtemp(prefix=prefix, dir=scratch))
    print(f"{name} on {machine()}; scratch {tmp}", flush=True)
    res, t0 = Results(), time.perf_counter()
    http = Http(tmp / "server")
    try:
        rows = measure(p, tmp, res, http)
    finally:
        http.close()
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"\n{title}, medians of {runs} runs\n")
    for line in res.lines():
        print(line)
    return rows, time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = parser("python -m bench", __doc__.splitlines()[0], "smaller data, 3 runs (about 12 minutes)")
    ap.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    args = ap.parse_args(argv)
    profile, p = profile_of(args)
    sections = [s for s in SECTIONS if s in args.only] if args.only else [s for s in SECTIONS if s not in OPT_IN]
    tmp = Path(tempfile.mkdtemp(prefix="bd-bench-", dir=args.tmp))
    res, state = Results(), {"profile": profile}
    t0 = time.perf_counter()
    print(f"blockdrive bench ({profile}) on {machine()}; scratch {tmp}", flush=True)
    try:
        state["http"] = Http(tmp / "server")
        for s in sections:
            ts = time.perf_counter()
            print(f"-- {s} ...", flush=True)
            globals()[s](p, tmp, res, state)
            print(f"   {s} done in {time.perf_counter() - ts:.0f} s", flush=True)
    finally:
        if "http" in state:
            state["http"].close()
        shutil.rmtree(tmp, ignore_errors=True)
    took = time.perf_counter() - t0
    head = f"blockdrive vs restic ({Restic.version()}) and the hardware, {profile} profile, medians of {p['repeat']} runs"
    print(f"\n{head}\nmachine: {machine()}\n")
    for line in res.lines():
        print(line)
    missed = [f"{r['label']} vs {res.by_key[q['ref']]['label']}" for r in res.rows for q in r.get("ratios", [])
              if q["met"] is False]
    print(f"\ngoals: {sum(1 for r in res.rows for q in r.get('ratios', []) if q['met'])} met, {len(missed)} missed")
    out = save(f"suite-{profile}", {"profile": profile, "params": p, "machine": machine(), "restic": Restic.version(),
                                    "at": time.strftime("%Y-%m-%d %H:%M:%S"), "seconds": round(took), "rows": res.rows})
    md = out.with_suffix(".md")
    md.write_text(f"{head}; {machine()}; {time.strftime('%Y-%m-%d')}, {took:.0f} s\n\n" + "\n".join(res.markdown()) + "\n")
    png = chart(res, out.with_suffix(".png"), f"{head}\n{machine()}")
    print(f"results: {out}" + (f", chart: {png}" if png else "") + f"; {took:.0f} s in all")
    return 0


if __name__ == "__main__":
    sys.exit(main())
