"""The folder tree's bounds and their cost, on the embedded default (SQLite) or a database URL.
Prints a table and writes ``bench/results/trees.json``; asserts nothing.

    .venv/bin/python bench/trees.py                       # 10k/100k/300k nodes, SQLite
    .venv/bin/python bench/trees.py --db mysql+pymysql://user:pw@host/db --sizes 10000,100000

- counting a user's nodes: an indexed ``COUNT(*)`` over ``nodes (owner_id, ...)`` against the
  ``users.node_count`` counter kept by the guarded UPDATE every node creation makes (why the
  counter: the count grows with the user's tree, the UPDATE does not);
- the permission check (``Drive._role``) for a user with a share at the top of a chain, at
  depths 2 and 250: queries and time;
- a copy of a folder of ``limits.max_nodes_per_copy`` (10,000) nodes: how long one request
  holds the write transaction at the limit.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import tempfile
import time
from pathlib import Path

sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import sqlalchemy as sa  # noqa: E402

from bench.common import machine, save, table, timed  # noqa: E402
from storage.config import load_config  # noqa: E402
from storage.db import make_engine, migrate  # noqa: E402
from storage.drive import Drive  # noqa: E402
from storage.models import Node, User  # noqa: E402
from storage.sharing import Sharing  # noqa: E402
from storage.tree import role_of  # noqa: E402


def unlimited_drive(home: Path, db: str | None) -> Drive:
    """A Drive on ``db`` (default: a fresh SQLite file in ``home``) with no practical node limit."""
    cfg = load_config(env={}, overrides={"storage": {"home": str(home)}, "security": {"scrypt_n": 1024},
                                         "limits": {"max_nodes_per_user": 10**9}})
    engine = make_engine(db or f"sqlite:///{home / 'bench.db'}")
    migrate(engine)
    return Drive(cfg, engine=engine)


def _user(d: Drive, tag: str):
    return d.create_user(f"bench-{tag}-{time.time_ns()}@example.com", "password123")[0]


def _bulk_folders(d: Drive, user, n: int) -> None:
    """``n`` folders straight under the user's root, inserted in bulk (their count kept)."""
    rows = [dict(owner_id=user.id, parent_id=user.root_id, kind="folder", name=f"f{i}", live_name=f"f{i}",
                 path=f"/{user.root_id}/") for i in range(n)]
    with d.sm() as s, s.begin():
        for i in range(0, n, 5000):
            s.execute(sa.insert(Node), rows[i:i + 5000])
        s.execute(sa.update(User).where(User.id == user.id).values(node_count=n))


def count_vs_counter(d: Drive, sizes: list[int]) -> list[dict]:
    out = []
    for n in sizes:
        u = _user(d, f"count{n}")
        _bulk_folders(d, u, n)

        def count():
            with d.sm() as s:
                return s.execute(sa.select(sa.func.count()).select_from(Node).where(Node.owner_id == u.id)).scalar_one()

        def counter():
            with d.sm() as s, s.begin():
                d.limits.reserve_nodes(s, u.id, 1)
                s.rollback()
        t_count, got = timed(count, 5)
        t_counter, _ = timed(counter, 5)
        out.append({"nodes": n, "indexed_count_ms": round(t_count * 1000, 2),
                    "counter_update_ms": round(t_counter * 1000, 2), "counted": got})
    return out


@contextlib.contextmanager
def _queries(engine, seen):
    def note(*_a):
        seen.append(1)
    sa.event.listen(engine, "before_cursor_execute", note)
    try:
        yield
    finally:
        sa.event.remove(engine, "before_cursor_execute", note)


def role_by_depth(d: Drive, depths=(2, 250)) -> list[dict]:
    owner, guest = _user(d, "owner"), _user(d, "guest")
    ids, parent = [], owner.root_id
    for i in range(max(depths)):
        parent = d.mkdir(owner.id, parent, f"d{i}").id
        ids.append(parent)
    Sharing(d).grant(owner.id, ids[0], guest.email, "viewer")
    out = []
    for depth in depths:
        with d.sm() as s:
            node = s.get(Node, ids[depth - 1])
            seen: list[int] = []
            with _queries(d.engine, seen):
                role_of(s, guest.id, node)
            t, _ = timed(lambda: role_of(s, guest.id, node), 20)
        out.append({"depth": depth, "queries": len(seen), "ms": round(t * 1000, 3)})
    return out


def copy_at_limit(d: Drive, n: int = 10_000) -> dict:
    u = _user(d, "copy")
    top = d.mkdir(u.id, u.root_id, "top").id
    per = 100
    for i in range(n // per - 1):
        sub = d.mkdir(u.id, top, f"s{i}").id
        with d.sm() as s, s.begin():
            s.execute(sa.insert(Node), [dict(owner_id=u.id, parent_id=sub, kind="folder", name=f"f{j}",
                                             live_name=f"f{j}", path=f"/{u.root_id}/{top}/{sub}/")
                                        for j in range(per - 1)])
            s.execute(sa.update(User).where(User.id == u.id).values(node_count=User.node_count + per - 1))
    t = time.perf_counter()
    d.copy(u.id, top, u.root_id, "copy")
    return {"nodes": (n // per - 1) * per + 1, "copy_seconds": round(time.perf_counter() - t, 2)}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", help="database URL (default: a fresh SQLite file)")
    ap.add_argument("--sizes", default="10000,100000,300000")
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = unlimited_drive(Path(tmp), args.db)
        counts = count_vs_counter(d, [int(x) for x in args.sizes.split(",")])
        roles = role_by_depth(d)
        copy = copy_at_limit(d)
        d.close()
    print(f"machine: {machine()}; database: {'SQLite' if not args.db else args.db.split(':')[0]}")
    print(table([(r["nodes"], r["indexed_count_ms"], r["counter_update_ms"]) for r in counts],
                ("nodes of the user", "indexed COUNT(*) ms", "counter UPDATE ms")))
    print(table([(r["depth"], r["queries"], r["ms"]) for r in roles], ("depth", "queries in _role", "ms")))
    print(f"copy of a {copy['nodes']}-node folder (the copy limit): {copy['copy_seconds']} s in one transaction")
    save("trees", {"machine": machine(), "db": "sqlite" if not args.db else "url", "count": counts,
                   "role": roles, "copy": copy})
    return 0


if __name__ == "__main__":
    sys.exit(main())
