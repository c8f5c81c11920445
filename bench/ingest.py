"""Ingest throughput of the domain ``put`` on the embedded default, against its ceilings.

    python -m bench.ingest [--size-mib 1024] [--rss-mib 4096] [--repeat 3]

Prints MB/s for: blockdrive ``put`` of a random file and of a file with repeated content;
the bare loop (read -> FastCDC -> SHA-256 -> write to one file, fsync'd) as the ceiling;
FastCDC + SHA-256 without writing; hashlib SHA-256 over the same bytes in memory as the hash
limit. Then the ratios, the pack bytes added by putting the same file twice, and the peak
RSS of a process putting a ``--rss-mib`` file.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.datasets import random_file
from bench.common import MiB, machine, save, table, timed, write_repeated


def fresh_drive(home: Path, **storage):
    """A drive on an empty ``home`` with one user; ``storage`` overrides [storage] settings."""
    from storage.config import load_config
    from storage.db import make_engine, migrate
    from storage.drive import Drive
    cfg = load_config(env={}, overrides={"storage": {"home": str(home), **storage}, "security": {"scrypt_n": 1024}})
    engine = make_engine(cfg.database_url)
    migrate(engine)
    drive = Drive(cfg, engine=engine)
    user, _ = drive.create_user("bench@example.com", "benchpassword")
    return drive, user


def put_file(drive, user, path: Path, name: str):
    with open(path, "rb", buffering=0) as fh:
        return drive.put(user.id, user.root_id, name, fh)


def bare_loop(path: Path, out_dir: Path):
    from storage.chunking import FastCDCChunker
    c = FastCDCChunker()
    with open(path, "rb", buffering=0) as fh, open(out_dir / "bare.out", "wb") as out:
        for view in c.chunks(fh):
            hashlib.sha256(view).digest()
            out.write(view)
        out.flush()
        os.fsync(out.fileno())
    os.unlink(out_dir / "bare.out")


def chunk_hash(path: Path):
    from storage.chunking import FastCDCChunker
    c = FastCDCChunker()
    with open(path, "rb", buffering=0) as fh:
        for view in c.chunks(fh):
            hashlib.sha256(view).digest()


def pack_bytes(drive) -> int:
    return sum(size for _k, size in drive.blocks.hot.list("packs"))


def rss_child(size_mib: int, workdir: str) -> None:
    """Run in a child process: put a file of size_mib and print the peak RSS in KiB."""
    work = Path(workdir)
    src = random_file(work / "rss.bin", size_mib * MiB, seed=9)
    drive, user = fresh_drive(work / "rss-home")
    put_file(drive, user, src, "rss.bin")
    # VmHWM, not getrusage: Linux carries ru_maxrss across fork and exec, so the child would
    # report the parent's peak (which held a whole test file in memory).
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            print(int(line.split()[1]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size-mib", type=int, default=1024)
    ap.add_argument("--rss-mib", type=int, default=4096)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dir", default=None, help="scratch directory (default: a temp dir on the same disk as ./var)")
    ap.add_argument("--rss-child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_mib, args.rss_child)
        return 0
    Path("var").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(dir=args.dir or "var", prefix="bench-ingest-") as tmp:
        work = Path(tmp)
        size = args.size_mib * MiB
        mb = size / 1e6
        rnd = random_file(work / "random.bin", size, seed=1)
        rep = write_repeated(work / "repeated.bin", size)
        t_sha, _ = timed(lambda d=rnd.read_bytes(): hashlib.sha256(d).digest(), args.repeat)
        t_ch, _ = timed(lambda: chunk_hash(rnd), args.repeat)
        t_bare, _ = timed(lambda: bare_loop(rnd, work), args.repeat)
        n = iter(range(1000))
        drive, user = fresh_drive(work / "home")
        t_put, _ = timed(lambda: put_file(drive, user, rnd, f"r{next(n)}"), 1)
        # later repeats dedup against the first: measure them separately
        t_put_again, _ = timed(lambda: put_file(drive, user, rnd, f"r{next(n)}"), args.repeat)
        before = pack_bytes(drive)
        put_file(drive, user, rnd, "twice")
        added = pack_bytes(drive) - before
        drive2, user2 = fresh_drive(work / "home2")
        t_rep, _ = timed(lambda: put_file(drive2, user2, rep, f"p{next(n)}"), 1)
        rep_stored = pack_bytes(drive2)
        rss_kib = int(subprocess.run(
            [sys.executable, "-m", "bench.ingest", "--rss-mib", str(args.rss_mib), "--rss-child", str(work)],
            check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])

    rows = [
        ("hashlib SHA-256 in memory (hash limit)", f"{mb / t_sha:.0f}", ""),
        ("FastCDC + SHA-256, one core", f"{mb / t_ch:.0f}", f"{t_sha / t_ch:.0%} of in-memory SHA-256 (goal >= 60%)"),
        ("bare loop: read -> chunk -> SHA-256 -> write+fsync", f"{mb / t_bare:.0f}", "ceiling"),
        ("blockdrive put, random (first time)", f"{mb / t_put:.0f}", f"{t_bare / t_put:.0%} of bare loop (goal >= 70%)"),
        ("blockdrive put, random (already stored)", f"{mb / t_put_again:.0f}", f"{t_bare / t_put_again:.0%} of bare loop"),
        ("blockdrive put, repeated content", f"{mb / t_rep:.0f}", f"stored {rep_stored / MiB:.1f} MiB of {size / MiB:.0f} MiB"),
    ]
    print(f"\ningest of {args.size_mib} MiB on {machine()}  (median of {args.repeat} where repeated)\n")
    print(table(rows, ("measurement", "MB/s", "ratio / note")))
    print(f"\nsame {args.size_mib} MiB file put twice: second put added {added} pack bytes (goal < 1 MiB)")
    print(f"peak RSS putting a {args.rss_mib} MiB file: {rss_kib / 1024:.0f} MiB (goal <= 200 MB)")
    save("ingest", {"size_mib": args.size_mib, "machine": machine(),
                    "mb_s": {r[0]: float(r[1]) for r in rows}, "second_put_added_bytes": added,
                    "peak_rss_mib": rss_kib / 1024, "rss_file_mib": args.rss_mib})
    return 0


if __name__ == "__main__":
    sys.exit(main())
