"""Access records: uploads and downloads per UTC day and user, for the admin reports.

Each finished transfer upserts one ``traffic_daily`` row in its own tiny statement (after the
upload's commit, or when a download's response is built), so recording costs one indexed
write per request and never holds a lock across the transfer. A plain PUT of a file counts
itself inside its version's commit instead (:func:`add`), saving a transaction per file. Counting is best effort on
purpose: a failed counter write is logged and dropped, never turned into a failed upload or
download, since the data itself is what the user cares about.

What counts: ``uploads`` = file versions committed through the API (a PUT, a finished tus
upload, a block-API commit, each file a batch commit lands); ``bytes_in`` = request body
bytes accepted (PUT bodies, tus PATCH bodies, block PUTs, the raw block bytes of a batch of
blocks); ``downloads`` = GET responses that send content (200 or 206; not
HEAD, not 304); ``bytes_out`` = the bytes those responses carry.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from .clock import now
from .db import execute_core
from .models import TrafficDaily

log = logging.getLogger("blockdrive.traffic")

COUNTERS = ("uploads", "downloads", "bytes_in", "bytes_out")


@functools.cache
def _upsert(dialect: str) -> sa.TextClause:
    """The upsert of one row (parameters: the columns of :func:`_row`), built once per
    dialect. It is text, not SQLAlchemy's dialect ``insert()``: those constructs carry no cache
    key, so SQLAlchemy compiled one afresh for every upload (a tenth of a small PUT's Python);
    a text clause is compiled once."""
    t = TrafficDaily.__table__
    cols = ("day", "user_id", *COUNTERS)
    insert = f"INSERT INTO {t.name} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"
    if dialect == "mysql":
        # In ON DUPLICATE KEY UPDATE, VALUES(x) is the would-be inserted value.
        add = ", ".join(f"{k} = {k} + VALUES({k})" for k in COUNTERS)
        sql = f"{insert} ON DUPLICATE KEY UPDATE {add}"
    elif dialect == "sqlite":
        add = ", ".join(f"{k} = {t.name}.{k} + excluded.{k}" for k in COUNTERS)
        sql = f"{insert} ON CONFLICT (day, user_id) DO UPDATE SET {add}"
    else:
        raise NotImplementedError(dialect)  # make_engine admits only these two
    return sa.text(sql).bindparams(*(sa.bindparam(c, type_=t.c[c].type) for c in cols))


def _row(user_id: int, uploads: int, downloads: int, bytes_in: int, bytes_out: int,
         day: dt.date | None) -> dict:
    return {"day": day or now().date(), "user_id": int(user_id), "uploads": int(uploads),
            "downloads": int(downloads), "bytes_in": int(bytes_in), "bytes_out": int(bytes_out)}


def add(s: Session, user_id: int, *, uploads: int = 0, bytes_in: int = 0) -> None:
    """Add an upload to ``user_id``'s counters for today inside the caller's transaction
    (the version's own commit, so a small upload pays no second one); it commits or rolls
    back with the upload."""
    row = _row(user_id, uploads, 0, bytes_in, 0, None)
    if any(row[k] for k in COUNTERS):
        execute_core(s, _upsert(s.get_bind().dialect.name), row)


def record(engine: sa.engine.Engine, user_id: int, *, uploads: int = 0, downloads: int = 0,
           bytes_in: int = 0, bytes_out: int = 0, day: dt.date | None = None) -> bool:
    """Add to ``user_id``'s counters for ``day`` (today, UTC). Returns False when the write
    failed (logged, not raised)."""
    row = _row(user_id, uploads, downloads, bytes_in, bytes_out, day)
    if not any(row[k] for k in COUNTERS):
        return True
    try:
        with engine.begin() as conn:
            conn.execute(_upsert(engine.dialect.name), row)
        return True
    except SQLAlchemyError as exc:
        log.warning("traffic record for user %s dropped: %s", user_id, getattr(exc, "orig", exc))
        return False


def daily(engine: sa.engine.Engine, since: dt.date | None = None) -> list[dict]:
    """Totals per day over all users (oldest first)."""
    t = TrafficDaily.__table__
    q = sa.select(t.c.day, *(sa.func.sum(t.c[k]).label(k) for k in COUNTERS)).group_by(t.c.day).order_by(t.c.day)
    if since is not None:
        q = q.where(t.c.day >= since)
    with engine.connect() as conn:
        return [{"day": r.day.isoformat() if hasattr(r.day, "isoformat") else str(r.day),
                 **{k: int(r._mapping[k] or 0) for k in COUNTERS}} for r in conn.execute(q)]
