"""Every statement of a put is compiled once: after a few puts, SQLAlchemy finds each in its
compiled cache. A statement without a cache key (a dialect's own ``insert()`` with ON CONFLICT
or ON DUPLICATE KEY, say) is compiled afresh on every execution, which costs more than running
it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine.interfaces import CacheStats

from storage import traffic
from tests.conftest import put_bytes, rand


def test_a_put_compiles_no_statement_after_the_first(drive, make_user):
    u = make_user()
    folder = drive.mkdir(u.id, u.root_id, "f").id
    for i in range(3):  # warm: every statement of a new file and of a new version once
        put_bytes(drive, u, f"w{i}.bin", rand(4096), parent=folder, count_traffic=True)
        put_bytes(drive, u, f"w{i}.bin", rand(4096), parent=folder, count_traffic=True)
    compiled: list[str] = []

    def seen(_conn, _cursor, statement, _params, context, _many):
        if context is not None and context.compiled is not None and context.cache_hit in (CacheStats.CACHE_MISS, CacheStats.NO_CACHE_KEY):
            compiled.append(f"{context.cache_hit.name}: {statement[:120]}")
    sa.event.listen(drive.engine, "before_cursor_execute", seen)
    try:
        for i in range(3):
            put_bytes(drive, u, f"a{i}.bin", rand(4096), parent=folder, count_traffic=True)
            put_bytes(drive, u, f"a{i}.bin", rand(4096), parent=folder, count_traffic=True)
    finally:
        sa.event.remove(drive.engine, "before_cursor_execute", seen)
    assert compiled == []
    assert sum(day["uploads"] for day in traffic.daily(drive.engine)) == 12  # the upsert still counts


def test_the_traffic_upsert_adds_to_the_days_row(drive, make_user):
    u = make_user()
    assert traffic.record(drive.engine, u.id, uploads=1, bytes_in=10)
    assert traffic.record(drive.engine, u.id, uploads=2, downloads=1, bytes_in=5, bytes_out=7)
    (day,) = traffic.daily(drive.engine)
    assert (day["uploads"], day["downloads"], day["bytes_in"], day["bytes_out"]) == (3, 1, 15, 7)
