"""Where the time of one small ``put`` goes: files/s of many 4 KiB puts in process, with the
transactions, fsyncs and pack files each one costs.

    python -m bench.smallput [--files 2000] [--size 4096] [--threads 1 16] [--db-url URL]
                             [--profile] [--group-commit auto|on|off]

For each thread count, a fresh home (and, with ``--db-url``, the tables in that empty
database; the default is the embedded SQLite file) gets ``--files`` random files of
``--size`` bytes through ``Drive.put``, split over the threads, each file its own name in the
user's root folder. Printed per run: files/s, the median and 99th percentile latency of one
put, database transactions committed, SQL statements sent (SQLite's ``BEGIN IMMEDIATE``
included) and ``packs`` rows added per put, fsyncs per put made
from Python (``os.fsync``/``os.fdatasync``: the pack writes; SQLite's own fsyncs are not
seen here, count them with ``strace -c -f -e trace=fsync,fdatasync``), and the pack files on
disk at the end. Next to it, the floor: a loop writing each file to its own file and
fsyncing it. ``--profile`` prints the cProfile functions with the most cumulative time of the
single-thread run. ``--group-commit on|off`` sets ``storage.group_commit`` (concurrent puts
share a transaction), to see what it changes; the default, ``auto``, is what the server runs
with (on with SQLite, off with MariaDB).
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import random
import statistics
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench.common import machine, save, table


class Counts:
    """Commits and SQL statements on the engine and fsyncs from Python, counted while
    installed."""

    def __init__(self, engine):
        import sqlalchemy as sa
        self.commits = self.fsyncs = self.statements = 0
        self._lock = threading.Lock()
        self._real = os.fsync, os.fdatasync
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "before_cursor_execute", self._statement)

    def _commit(self, _conn) -> None:
        with self._lock:
            self.commits += 1

    def _statement(self, *_args) -> None:
        with self._lock:
            self.statements += 1

    def _wrap(self, fn):
        def counted(fd):
            with self._lock:
                self.fsyncs += 1
            return fn(fd)
        return counted

    def __enter__(self):
        os.fsync, os.fdatasync = (self._wrap(f) for f in self._real)
        return self

    def __exit__(self, *exc):
        os.fsync, os.fdatasync = self._real


def fresh_drive(home: Path, db_url: str | None, group_commit: bool | str = "auto"):
    from storage.config import load_config
    from storage.db import make_engine, migrate
    from storage.drive import Drive
    overrides = {"storage": {"home": str(home), "group_commit": group_commit}, "security": {"scrypt_n": 1024}}
    if db_url:
        overrides["database"] = {"url": db_url}
    cfg = load_config(env={}, overrides=overrides)
    engine = make_engine(cfg.database_url)
    migrate(engine)
    drive = Drive(cfg, engine=engine)
    user, _ = drive.create_user("bench@example.com", "benchpassword")
    return drive, engine, user


def pack_rows(drive) -> int:
    import sqlalchemy as sa
    from storage.models import Pack
    with drive.sm() as s:
        return s.execute(sa.select(sa.func.count()).select_from(Pack)).scalar_one()


def run_puts(home: Path, db_url: str | None, files: list[bytes], threads: int, profile: bool,
             group_commit: bool | str = "auto") -> dict:
    drive, engine, user = fresh_drive(home, db_url, group_commit)
    rows0 = pack_rows(drive)
    lat: list[float] = []

    def one(i: int) -> None:
        t = time.perf_counter()
        drive.put(user.id, user.root_id, f"f{i:06d}.bin", io.BytesIO(files[i]))
        lat.append(time.perf_counter() - t)

    prof = cProfile.Profile() if profile else None
    with Counts(engine) as counts:
        t0 = time.perf_counter()
        if threads == 1:
            if prof:
                prof.enable()
            for i in range(len(files)):
                one(i)
            if prof:
                prof.disable()
        else:
            with ThreadPoolExecutor(threads) as pool:
                list(pool.map(one, range(len(files))))
        took = time.perf_counter() - t0
    rows = pack_rows(drive) - rows0
    drive.close()
    n = len(files)
    lat.sort()
    out = {"threads": threads, "files_per_s": n / took, "median_ms": 1000 * statistics.median(lat),
           "p99_ms": 1000 * lat[int(0.99 * (n - 1))], "commits_per_put": counts.commits / n,
           "statements_per_put": counts.statements / n,
           "fsyncs_per_put": counts.fsyncs / n, "pack_rows_per_put": rows / n,
           "pack_files": sum(1 for p in (home / "packs").rglob("*") if p.is_file())}
    engine.dispose()
    if prof:
        pstats.Stats(prof).sort_stats("cumulative").print_stats(35)
    return out


def fsync_loop(home: Path, files: list[bytes]) -> float:
    """Files/s of writing each file to a file of its own and fsyncing it."""
    home.mkdir(parents=True)
    t0 = time.perf_counter()
    for i, data in enumerate(files):
        with open(home / f"f{i:06d}", "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    return len(files) / (time.perf_counter() - t0)


_SETTING = {"auto": "auto", "on": True, "off": False}  # --group-commit as storage.group_commit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--files", type=int, default=2000)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--db-url", help="an empty database (default: the embedded SQLite file)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--group-commit", choices=("auto", "on", "off"), default="auto",
                    help="storage.group_commit: on = concurrent puts share a transaction; auto (the "
                         "default) = on with SQLite, off with MariaDB")
    args = ap.parse_args(argv)
    rng = random.Random(20)
    files = [rng.randbytes(args.size) for _ in range(args.files)]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bd-smallput-") as tmp:
        floor = fsync_loop(Path(tmp) / "loop", files)
        for i, threads in enumerate(args.threads):
            if args.db_url and i:
                raise SystemExit("--db-url takes one thread count per run: the tables exist after the first")
            r = run_puts(Path(tmp) / f"home{threads}", args.db_url, files, threads, args.profile and threads == 1,
                         _SETTING[args.group_commit])
            rows.append(r)
    db = "MariaDB" if args.db_url else "SQLite"
    print(machine())
    print(f"{args.files} files of {args.size} B, {db}, group commit {args.group_commit}; "
          f"write+fsync loop: {floor:.0f} files/s")
    print(table([(r["threads"], f"{r['files_per_s']:.0f}", f"{r['median_ms']:.2f}", f"{r['p99_ms']:.1f}",
                  f"{r['commits_per_put']:.2f}", f"{r['statements_per_put']:.1f}", f"{r['fsyncs_per_put']:.2f}", f"{r['pack_rows_per_put']:.2f}",
                  r["pack_files"]) for r in rows],
                ("threads", "files/s", "median ms", "p99 ms", "commits/put", "SQL/put", "py fsyncs/put", "pack rows/put",
                 "pack files")))
    save(f"smallput_{db.lower()}", {"machine": machine(), "files": args.files, "size": args.size,
                                     "group_commit": _SETTING[args.group_commit],
                                     "fsync_loop_files_per_s": floor, "runs": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
