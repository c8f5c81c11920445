"""Leases: named, expiring locks in the database (the scheduler's leadership, one run of a
job at a time across every process that may start it)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .models import Lock


def acquire_lease(sm: sessionmaker[Session], name: str, holder: str, ttl_seconds: float) -> bool:
    """Take or renew the lease ``name`` for ``holder`` until now + ttl. True if held."""
    t = now()
    until = t + dt.timedelta(seconds=ttl_seconds)
    with sm() as s, s.begin():
        res = s.execute(sa.update(Lock).where(Lock.name == name,
                                              sa.or_(Lock.holder == holder, Lock.expires_at < t))
                        .values(holder=holder, expires_at=until).execution_options(synchronize_session=False))
        if res.rowcount == 1:
            return True
    try:
        with sm() as s, s.begin():
            s.execute(sa.insert(Lock).values(name=name, holder=holder, expires_at=until))
        return True
    except DBIntegrityError:  # someone else holds it (or took it between our two statements)
        return False


def release_lease(sm: sessionmaker[Session], name: str, holder: str) -> None:
    with sm() as s, s.begin():
        s.execute(sa.delete(Lock).where(Lock.name == name, Lock.holder == holder))


def lease_holder(sm: sessionmaker[Session], name: str) -> str | None:
    with sm() as s:
        row = s.execute(sa.select(Lock.holder, Lock.expires_at).where(Lock.name == name)).first()
    return row.holder if row is not None and row.expires_at >= now() else None


def leases(sm: sessionmaker[Session]) -> list[dict]:
    """Every lease row by name: its ``holder``, ``expires_at`` and whether it is ``held`` now (a
    row past its expiry is free for the next taker). Read only."""
    t = now()
    with sm() as s:
        rows = s.execute(sa.select(Lock.name, Lock.holder, Lock.expires_at).order_by(Lock.name)).all()
    return [{"name": r.name, "holder": r.holder, "expires_at": r.expires_at.isoformat(), "held": r.expires_at >= t}
            for r in rows]
