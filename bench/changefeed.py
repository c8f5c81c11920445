"""The change journal's costs on the embedded default (SQLite): one owner makes ``--changes``
folders, ``--shared`` percent of them inside a folder shared with ``--grantees`` users. Prints
the journal rows written (one per change, however many grantees; a journal per reader would
write one per change per reader who sees it), the time per change, and how long the owner and
one grantee take to read everything by pages of 500. Asserts nothing.

    .venv/bin/python bench/changefeed.py [--changes 20000] [--grantees 50] [--shared 10]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

# bench/ holds client.py and jobs.py: keep the folder off the path, or they shadow the packages.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from storage.changes import ChangeFeed  # noqa: E402
from storage.config import load_config  # noqa: E402
from storage.db import migrate  # noqa: E402
from storage.drive import Drive  # noqa: E402
from storage.models import Change  # noqa: E402
from storage.sharing import Sharing  # noqa: E402


def read_all(feed: ChangeFeed, user_id: int, cursor: str) -> tuple[int, float]:
    t, n = time.perf_counter(), 0
    while True:
        page = feed.read(user_id, cursor, limit=500)
        n += len(page.entries)
        cursor = page.cursor
        if not page.has_more:
            return n, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=20_000)
    ap.add_argument("--grantees", type=int, default=50)
    ap.add_argument("--shared", type=float, default=10.0, help="percent of the changes inside the share")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(env={}, overrides={"storage": {"home": tmp}, "security": {"scrypt_n": 1024}})
        d = Drive(cfg)
        migrate(d.engine)
        sh, feed = Sharing(d), ChangeFeed(d.sm)
        owner, _ = d.create_user("owner@example.com", "password123")
        grantees = [d.create_user(f"g{i}@example.com", "password123")[0] for i in range(args.grantees)]
        top = d.mkdir(owner.id, owner.root_id, "shared")
        out = d.mkdir(owner.id, owner.root_id, "private")
        for g in grantees:
            sh.grant(owner.id, top.id, g.email, "editor")
        start_owner, start_grantee = feed.latest(owner.id), feed.latest(grantees[0].id)
        every = max(1, round(100 / args.shared)) if args.shared else 0
        t = time.perf_counter()
        for i in range(args.changes):
            d.mkdir(owner.id, top.id if every and i % every == 0 else out.id, f"d{i}")
        per_change = (time.perf_counter() - t) / args.changes
        with d.sm() as s:
            rows = s.execute(sa.select(sa.func.count()).select_from(Change)).scalar_one()
        inside = len(range(0, args.changes, every)) if every else 0
        print(f"{args.changes} changes, {inside} inside a folder shared with {args.grantees} users")
        print(f"journal rows: {rows} (a journal per reader would hold {args.changes + inside * args.grantees})")
        print(f"per change (mkdir, journal included): {per_change * 1000:.2f} ms")
        n, secs = read_all(feed, owner.id, start_owner)
        print(f"owner reads {n} entries in {secs * 1000:.0f} ms ({secs / max(n, 1) * 1e6:.0f} us an entry)")
        n, secs = read_all(feed, grantees[0].id, start_grantee)
        print(f"a grantee reads {n} entries in {secs * 1000:.0f} ms ({secs / max(n, 1) * 1e6:.0f} us an entry)")
        d.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
