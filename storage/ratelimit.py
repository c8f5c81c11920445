"""Failed-attempt limits, kept in the database so that every server process sees the same count.

:class:`Throttle` (sign-ins) makes each failure past a free allowance cost a growing wait, per
key; :class:`Limiter` (link passwords) allows a fixed number of failures per window.

Limiter:

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


class Throttle:
    """Growing delays after failures, for sign-ins: once a key has failed ``free`` times, the
    next attempt must wait 1 s, then 2, 4, 8 ... up to ``max_delay`` after each further failure
    (answered :class:`RateLimited` with the wait while it runs). A key forgets its failures
    ``forget`` seconds after its last one, or when :meth:`reset` says the password was right.

    Nothing is ever locked for good: a wait an attacker provokes on one key ends by itself,
    and a caller decides which keys an attempt touches (a sign-in touches the client address,
    the account from that address, and the account as a whole) so that one key's wait does
    not stop attempts that do not touch it. Like :meth:`Limiter.attempt`, an attempt is
    counted before the password is checked, in one locked read-modify-write, so parallel
    guesses cannot all slip in before the first failure is written.
    """

    def __init__(self, sm: sessionmaker[Session], max_delay: int = 900, forget: int = 86400):
        self.sm, self.max_delay, self.forget = sm, max_delay, dt.timedelta(seconds=forget)

    def delay(self, failures: int, free: int) -> int:
        """Seconds to wait after the ``failures``-th failure of a key allowed ``free`` ones."""
        if failures <= free:
            return 0
        return min(2 ** min(failures - free - 1, 40), self.max_delay)

    def wait(self, key: str) -> int:
        """Seconds ``key`` must still wait (0 if none), without counting anything."""
        with self.sm() as s:
            row = s.get(RateLimit, key[:200])
        return self._remaining(row, now())

    def _failed(self, row: RateLimit | None, t: dt.datetime) -> bool:
        return row is not None and row.failures > 0 and row.window_start + self.forget > t

    @staticmethod
    def _remaining(row: RateLimit | None, t: dt.datetime) -> int:
        if row is None or row.blocked_until is None or row.blocked_until <= t:
            return 0
        return max(math.ceil((row.blocked_until - t).total_seconds()), 1)

    def attempt(self, keys: dict[str, int], enforce_if_failed: dict[str, str] | None = None) -> None:
        """Count one failure against every key (``key -> free failures``), or raise
        RateLimited, counting nothing, while any of them must wait. A key named in
        ``enforce_if_failed`` (``key -> other key``) is counted always but makes the attempt
        wait only when its other key has failures of its own."""
        gated = {k[:200]: o[:200] for k, o in (enforce_if_failed or {}).items()}
        ordered = sorted((k[:200], free) for k, free in keys.items())  # one lock order: no deadlock
        for _ in range(3):  # a concurrent first failure inserts a row; then we lock it
            try:
                with self.sm() as s, s.begin():
                    t = now()
                    rows = {k: s.get(RateLimit, k, with_for_update=True) for k, _ in ordered}
                    wait = max(self._remaining(r, t) for k, r in rows.items()
                               if k not in gated or self._failed(rows.get(gated[k]), t))
                    if wait:
                        raise RateLimited(f"too many failed attempts; retry in {wait} s", retry_after=wait)
                    for k, free in ordered:
                        row = rows[k]
                        if row is None:
                            row = RateLimit(key=k, failures=0, window_start=t)
                            s.add(row)
                        elif row.window_start + self.forget <= t:
                            row.failures = 0
                        row.failures += 1
                        row.window_start = t
                        d = self.delay(row.failures, free)
                        row.blocked_until = t + dt.timedelta(seconds=d) if d else None
                return
            except DBIntegrityError:
                continue
        raise RateLimited("too many attempts at once; retry", retry_after=1)

    def refund(self, keys: dict[str, int]) -> None:
        """Give back one counted attempt per key (it succeeded), keeping the others' failures:
        a success must not wipe the count of a guesser sharing the key."""
        with self.sm() as s, s.begin():
            for k, free in sorted((k[:200], f) for k, f in keys.items()):
                row = s.get(RateLimit, k, with_for_update=True)
                if row is None or row.failures <= 0:
                    continue
                row.failures -= 1
                if self.delay(row.failures, free) == 0:
                    row.blocked_until = None

    def reset(self, keys) -> None:
        """Forget the keys' failures (the password was right)."""
        with self.sm() as s, s.begin():
            s.execute(sa.delete(RateLimit).where(RateLimit.key.in_([k[:200] for k in keys])))
