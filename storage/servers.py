"""API server processes, and whether each can do its work right now.

``/readyz`` is answered by :class:`Readiness`. A check commits the process's heartbeat row
(a real write, so a database that is gone, read-only or full fails it) and writes, reads back
and removes a small object on the hot pack backend (so a server whose packs cannot be written
fails it), at most once per ``server.ready_probe_seconds``; checks in between get the last
answer, so a balancer probing every second costs one write of each kind per interval. A load
balancer then takes a server that cannot store an upload out of rotation before users see it.

The heartbeat rows also say which servers were up and when each last could write
(:func:`servers`); rows not seen for a week are removed by the next beat.
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .db import check_ready
from .errors import BlockdriveError
from .models import Server

FORGET_AFTER = dt.timedelta(days=7)
PROBE_PREFIX = "readyz/"


@dataclass(frozen=True)
class ServerBeat:
    id: str
    host: str
    pid: int
    started_at: dt.datetime
    seen_at: dt.datetime


def beat(sm: sessionmaker[Session], server_id: str, host: str, pid: int, started_at: dt.datetime) -> None:
    """Commit ``server_id``'s heartbeat (inserted the first time) and drop rows a week old."""
    t = now()
    with sm() as s, s.begin():
        done = s.execute(sa.update(Server).where(Server.id == server_id).values(seen_at=t)
                         .execution_options(synchronize_session=False)).rowcount
        if not done:
            s.add(Server(id=server_id, host=host, pid=pid, started_at=started_at, seen_at=t))
        s.execute(sa.delete(Server).where(Server.seen_at < t - FORGET_AFTER)
                  .execution_options(synchronize_session=False))


def servers(sm: sessionmaker[Session], since: dt.datetime) -> list[ServerBeat]:
    """The servers whose last heartbeat is at or after ``since``, most recent first."""
    with sm() as s:
        rows = s.execute(sa.select(Server).where(Server.seen_at >= since).order_by(Server.seen_at.desc())).scalars()
        return [ServerBeat(r.id, r.host, r.pid, r.started_at, r.seen_at) for r in rows]


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BlockdriveError):
        return str(exc)[:300]
    text = " ".join(str(getattr(exc, "orig", None) or exc).split())
    return f"{type(exc).__name__}: {text}"[:300]


class Readiness:
    """The answer to "can this process store an upload now?", probed at most every
    ``interval`` seconds. ``backend`` is the hot pack backend (put/read/delete by key)."""

    def __init__(self, engine: sa.Engine, sm: sessionmaker[Session], backend: Any, interval: float):
        self.engine, self.sm, self.backend, self.interval = engine, sm, backend, interval
        self.host = socket.gethostname()
        self.started_at = now()
        self._lock = threading.Lock()
        self._checked = -float("inf")
        self._pid = 0
        self._last: dict[str, str] = {}

    @property
    def server_id(self) -> str:
        return f"{self.host}:{os.getpid()}"

    def check(self) -> dict[str, str]:
        """``{"database": "ok" | reason, "storage": "ok" | reason}``, probed again when the
        last probe is older than the interval (or was made in another process before a fork)."""
        with self._lock:
            if self._pid != os.getpid() or time.monotonic() - self._checked >= self.interval:
                self._last = {"database": self._database(), "storage": self._storage()}
                self._checked, self._pid = time.monotonic(), os.getpid()
            return dict(self._last)

    def _database(self) -> str:
        try:
            check_ready(self.engine)
            beat(self.sm, self.server_id, self.host, os.getpid(), self.started_at)
        except Exception as exc:  # noqa: BLE001 - any failure means "not ready"; the reason is reported
            return _reason(exc)
        return "ok"

    def _storage(self) -> str:
        key = PROBE_PREFIX + self.server_id.replace(":", "-")
        payload = f"{self.server_id} {time.time()}".encode()
        try:
            self.backend.put(key, payload)
            back = self.backend.read(key)
            self.backend.delete(key)
        except Exception as exc:  # noqa: BLE001 - as above
            return _reason(exc)
        return "ok" if back == payload else "the probe object read back different bytes"
