"""Search by name among a million nodes (storage.search), on the embedded default (SQLite) or
a database URL. Prints a table and writes ``bench/results/search.json``; asserts nothing.

    .venv/bin/python bench/search.py                        # 1,000,000 nodes, SQLite
    .venv/bin/python bench/search.py --nodes 100000 --db mysql+pymysql://user:pw@host/db

The store: ``--users`` users, each with 20 folders holding an equal share of ``--nodes``
nodes, named from a small vocabulary ("report-2024_final 1234.pdf"), so that a common word is
in about one name in ten of everyone's. The searcher owns one user's share and is granted a
folder of another user's. Figures:

- bulk insert rate with the index triggers on (every node lands in the index);
- one search page (50 hits) for a rare word, a common word, two words, a two-letter prefix
  and a word nobody's names hold: median ms and hits;
- a rare word searched with ``LIKE '%word%'`` over the searcher's own nodes (what a search
  without the index costs: every name of theirs read, for scale);
- a rename (one trigger update) and a move of a 1,000-node folder (1,000 index rows rewritten).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench.common import machine, save, table, timed  # noqa: E402
from bench.trees import unlimited_drive  # noqa: E402
from storage.drive import Drive  # noqa: E402
from storage.models import Node, User  # noqa: E402
from storage.search import Search  # noqa: E402
from storage.sharing import Sharing  # noqa: E402

WORDS = ["report", "invoice", "photo", "budget", "notes", "draft", "final", "scan", "contract", "summary"]
EXTS = ["pdf", "txt", "jpg", "docx", "xlsx", "md"]
FOLDERS = 20
BATCH = 5000


def populate(d: Drive, users: int, nodes: int, seed: int = 7) -> tuple[list, float]:
    """``users`` users sharing ``nodes`` nodes; returns them and the seconds the inserts took."""
    rnd = random.Random(seed)
    made = [d.create_user(f"bench-{i}-{time.time_ns()}@example.com", "password123")[0] for i in range(users)]
    per_folder = max(nodes // (users * FOLDERS), 1)
    spent = 0.0
    for u in made:
        folders = [d.mkdir(u.id, u.root_id, f"folder {f} {rnd.choice(WORDS)}").id for f in range(FOLDERS)]
        rows = [dict(owner_id=u.id, parent_id=fid, kind="file", live_name=None, path=f"/{u.root_id}/{fid}/",
                     name=f"{rnd.choice(WORDS)}-{rnd.randint(2000, 2030)}_{rnd.choice(WORDS)} "
                          f"{rnd.randint(0, 99999)} n{j}.{rnd.choice(EXTS)}")
                for fid in folders for j in range(per_folder)]
        for r in rows:
            r["live_name"] = r["name"]
        t = time.perf_counter()
        with d.sm() as s, s.begin():
            for i in range(0, len(rows), BATCH):
                s.execute(sa.insert(Node), rows[i:i + BATCH])
            s.execute(sa.update(User).where(User.id == u.id).values(node_count=len(rows) + FOLDERS))
        spent += time.perf_counter() - t
    return made, spent


def searches(d: Drive, user, queries: list[str]) -> list[dict]:
    search = Search(d)
    out = []
    for q in queries:
        t, (hits, cursor) = timed(lambda q=q: search.find(user.id, q, limit=50), 5)
        out.append({"q": q, "ms": round(t * 1000, 2), "hits": len(hits), "more": cursor is not None})
    return out


def like_scan(d: Drive, user, word: str) -> dict:
    def run():
        with d.sm() as s:
            return s.execute(sa.select(Node.id).where(Node.owner_id == user.id, Node.live_name.is_not(None),
                                                      Node.name.like(f"%{word}%"))).all()
    t, rows = timed(run, 5)
    return {"q": f"LIKE %{word}%", "ms": round(t * 1000, 2), "hits": len(rows)}


def changes(d: Drive, user) -> dict:
    with d.sm() as s:
        fid, nid = s.execute(sa.select(Node.parent_id, Node.id).where(Node.owner_id == user.id, Node.kind == "file")
                             .limit(1)).one()
        size = s.execute(sa.select(sa.func.count()).where(Node.parent_id == fid)).scalar_one()
    t = time.perf_counter()
    d.move(user.id, nid, name="renamed zebra.txt")
    rename = time.perf_counter() - t
    target = d.mkdir(user.id, user.root_id, "moved here").id
    t = time.perf_counter()
    d.move(user.id, fid, parent_id=target)
    move = time.perf_counter() - t
    found = [h.node.id for h in Search(d).find(user.id, "zebra")[0]]
    return {"rename_ms": round(rename * 1000, 2), "move_nodes": size, "move_ms": round(move * 1000, 2),
            "renamed_found": found == [nid]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--nodes", type=int, default=1_000_000)
    ap.add_argument("--users", type=int, default=100)
    args = ap.parse_args(argv)
    if args.users < 2:
        ap.error("--users: at least 2 (one searches, another shares a folder with them)")
    with tempfile.TemporaryDirectory() as tmp:
        d = unlimited_drive(Path(tmp), args.db)
        users, spent = populate(d, args.users, args.nodes)
        me, other = users[0], users[1]
        with d.sm() as s:
            total = s.execute(sa.select(sa.func.count()).select_from(Node)).scalar_one()
            shared = s.execute(sa.select(Node.id).where(Node.parent_id == other.root_id).limit(1)).scalar_one()
        Sharing(d).grant(other.id, shared, me.email, "viewer")
        rows = searches(d, me, ["31337", "invoice", "report 2024", "re", "contract final pdf", "nothinglikeit"])
        rows.append(like_scan(d, me, "31337"))
        moved = changes(d, me)
        d.close()
    print(f"machine: {machine()}; database: {'SQLite' if not args.db else args.db.split(':')[0]}; "
          f"{total:,} nodes, {args.users} users, {total // args.users:,} nodes each")
    print(f"bulk insert with the index triggers: {total / spent:,.0f} nodes/s")
    print(table([(r["q"], r["ms"], r["hits"]) for r in rows], ("query (one page of 50)", "median ms", "hits")))
    print(f"rename: {moved['rename_ms']} ms (found under its new name: {moved['renamed_found']}); "
          f"move of a {moved['move_nodes']}-node folder: {moved['move_ms']} ms")
    save("search", {"machine": machine(), "db": "sqlite" if not args.db else "url", "nodes": total,
                    "users": args.users, "insert_nodes_per_s": round(total / spent), "queries": rows, **moved})
    return 0


if __name__ == "__main__":
    sys.exit(main())
