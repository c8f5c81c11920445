"""The database pool keeps as many connections as a process serves requests at once
(``database.pool_size``): requests in flight together reuse their connections instead of each
opening one of its own and closing it when done."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from storage.config import load_config
from storage.db import POOL_SIZE, make_engine
from storage.drive import Drive


def _rounds(engine, threads: int, rounds: int) -> list[int]:
    """Connections opened in each of ``rounds``, where ``threads`` threads each hold a
    connection at the same time."""
    opened = [0]
    sa.event.listen(engine, "connect", lambda *_: opened.__setitem__(0, opened[0] + 1))
    out = []
    for _ in range(rounds):
        before = opened[0]
        together = threading.Barrier(threads)

        def work():
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
                together.wait(30)
        ts = [threading.Thread(target=work) for _ in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(30)
        out.append(opened[0] - before)
    return out


def test_requests_in_flight_together_keep_their_connections(db_engine):
    engine = make_engine(str(db_engine.url.render_as_string(hide_password=False)))
    try:
        assert engine.pool.size() == POOL_SIZE == 16
        first, *later = _rounds(engine, 12, 3)
        # SQLAlchemy's default pool of 5 closed 7 of the 12 each round and opened 7 again
        assert first <= 12 and later == [0, 0]
    finally:
        engine.dispose()


def test_the_pool_size_is_the_drives_setting(tmp_path):
    cfg = load_config(env={"BLOCKDRIVE_DATABASE_POOL_SIZE": "3"}, overrides={"storage": {"home": str(tmp_path)}})
    drive = Drive(cfg)
    try:
        assert drive.engine.pool.size() == 3
    finally:
        drive.close()
