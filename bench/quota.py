"""What the quota model costs, on the embedded default (SQLite + local packs). Prints figures;
asserts nothing.

    .venv/bin/python bench/quota.py                   # 400 files x 12 versions
    .venv/bin/python bench/quota.py --files 100 --versions 6

- the account split (``Drive.usage``: current, old versions, trash, pending), one aggregate
  over every version of the user's files, as ``GET /api/v1/account`` runs it;
- the retention executor (``maintenance.apply_retention``) thinning versions spread over
  45 days: versions checked and purged per second, in transactions of ``batch_nodes`` files.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import clock, maintenance, quota  # noqa: E402
from storage.config import load_config  # noqa: E402
from storage.db import migrate  # noqa: E402
from storage.drive import Drive  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=400)
    ap.add_argument("--versions", type=int, default=12)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(env={}, overrides={"storage": {"home": tmp}, "security": {"scrypt_n": 1024}})
        drive = Drive(cfg)
        migrate(drive.engine)
        user, _ = drive.create_user("bench@example.com", "password123", premium=True)
        t0 = time.perf_counter()
        # Versions every ~4 days back from now: most fall in the daily and weekly buckets.
        clock.advance(-45 * 86400)
        step = 45 * 86400 // args.versions
        for v in range(args.versions):
            for f in range(args.files):
                drive.put(user.id, user.root_id, f"f{f}.bin", io.BytesIO(f"{f}:{v}".encode() * 100))
            clock.advance(step)
        clock.reset()
        n = args.files * args.versions
        print(f"setup: {n} versions of {args.files} files in {time.perf_counter() - t0:.1f} s")
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            u = drive.usage(user.id)
            runs.append(time.perf_counter() - t)
        print(f"account split over {n} versions: median {statistics.median(runs) * 1000:.1f} ms "
              f"(current {u.current}, old {u.old_versions}, trash {u.trash}, pending {u.pending})")
        t = time.perf_counter()
        stats = maintenance.apply_retention(drive.sm, quota.Retention.from_config(cfg), clock.now(),
                                            batch_nodes=cfg["retention"]["batch_nodes"])
        dt = time.perf_counter() - t
        print(f"retention: {stats['retention_files_checked']} files checked, {stats['versions_thinned']} versions "
              f"thinned in {dt:.2f} s ({stats['versions_thinned'] / dt:.0f} versions/s, "
              f"{stats['version_bytes_freed']} bytes of quota freed)")
        drive.close()


if __name__ == "__main__":
    main()
