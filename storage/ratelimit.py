"""Failed-attempt limits (logins, link passwords), kept in the database so that every server
process sees the same count.

A key may fail ``max_failures`` times within ``window`` seconds; the next attempt is refused
with :class:`RateLimited` until the window that started with the first failure has passed.

Guarding a password check: :meth:`attempt` before it, then :meth:`succeed` (a login: the
count starts over) or :meth:`refund` (a shared secret such as a link password: the reader
who got in gives back only their own attempt) after a success. :meth:`attempt` counts the
try *before* the password is checked, in one locked read-modify-write: with a separate
check and a failure recorded afterwards, guesses sent all at once would all pass the check
before the first failure was written (12 parallel guesses got 8 verified with a limit of 3).
A failed guess thus costs one write, a success two.
"""

from __future__ import annotations

import datetime as dt
import math

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .errors import RateLimited
from .models import RateLimit


class Limiter:
    def __init__(self, sm: sessionmaker[Session], max_failures: int = 5, window: int = 900):
        self.sm, self.max_failures, self.window = sm, max_failures, dt.timedelta(seconds=window)

    def check(self, key: str) -> None:
        """Raise RateLimited if ``key`` has used up its failures in the current window."""
        with self.sm() as s:
            row = s.get(RateLimit, key[:200])
        if row is None:
            return
        t = now()
        if row.failures >= self.max_failures and row.window_start + self.window > t:
            wait = math.ceil((row.window_start + self.window - t).total_seconds())
            raise RateLimited(f"too many failed attempts; retry in {wait} s", retry_after=max(wait, 1))

    def attempt(self, key: str) -> None:
        """Count one try at ``key`` now, or raise RateLimited (counting nothing) if its
        failures are used up in the current window."""
        self._count(key, enforce=True)

    def refund(self, key: str) -> None:
        """Give back one :meth:`attempt` that succeeded, leaving the others' failures."""
        with self.sm() as s, s.begin():
            s.execute(sa.update(RateLimit).where(RateLimit.key == key[:200], RateLimit.failures > 0)
                      .values(failures=RateLimit.failures - 1))

    def fail(self, key: str) -> None:
        self._count(key, enforce=False)

    def _count(self, key: str, enforce: bool) -> None:
        """Add one failure to ``key`` under a row lock, starting a new window when the old one
        has passed; with ``enforce``, refuse (counting nothing) once the window's are used up."""
        key, t = key[:200], now()
        for _ in range(3):  # a concurrent first failure inserts the row; then we lock it
            try:
                with self.sm() as s, s.begin():
                    row = s.get(RateLimit, key, with_for_update=True)
                    if row is None:
                        s.add(RateLimit(key=key, failures=1, window_start=t))
                    elif row.window_start + self.window <= t:
                        row.failures, row.window_start = 1, t
                    elif enforce and row.failures >= self.max_failures:
                        wait = math.ceil((row.window_start + self.window - t).total_seconds())
                        raise RateLimited(f"too many failed attempts; retry in {wait} s", retry_after=max(wait, 1))
                    else:
                        row.failures += 1
                return
            except DBIntegrityError:
                continue

    def succeed(self, key: str) -> None:
        with self.sm() as s, s.begin():
            s.execute(sa.delete(RateLimit).where(RateLimit.key == key[:200]))

    def purge(self, older_than: dt.datetime) -> int:
        """Forget windows that started before ``older_than`` (housekeeping)."""
        with self.sm() as s, s.begin():
            return s.execute(sa.delete(RateLimit).where(RateLimit.window_start < older_than)).rowcount
