"""storage/ratelimit.py: failed attempts counted in the database, on SQLite and MariaDB."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from storage import clock
from storage.errors import RateLimited, Unauthorized
from storage.models import RateLimit
from storage.ratelimit import Limiter
from storage.sharing import Sharing
from tests.conftest import put_bytes


@pytest.fixture
def limiter(drive):
    return Limiter(drive.sm, max_failures=3, window=600)


def _row(drive, key):
    with drive.sm() as s:
        return s.get(RateLimit, key)


def test_the_limit_starts_after_max_failures(drive, limiter):
    for _ in range(3):
        limiter.check("k")
        limiter.fail("k")
    assert _row(drive, "k").failures == 3
    with pytest.raises(RateLimited) as exc:
        limiter.check("k")
    assert 590 <= exc.value.details["retry_after"] <= 600
    limiter.check("other")  # keys are independent


def test_the_window_runs_from_the_first_failure(drive, limiter):
    limiter.fail("k")
    clock.advance(400)
    limiter.fail("k")
    limiter.fail("k")
    with pytest.raises(RateLimited) as exc:
        limiter.check("k")
    assert 190 <= exc.value.details["retry_after"] <= 200
    clock.advance(201)
    limiter.check("k")
    limiter.fail("k")  # a new window, counting from one
    row = _row(drive, "k")
    assert row.failures == 1 and row.window_start >= clock.now() - dt.timedelta(seconds=2)
    limiter.check("k")


def test_success_clears_the_key(drive, limiter):
    for _ in range(3):
        limiter.fail("k")
    limiter.succeed("k")
    assert _row(drive, "k") is None
    limiter.check("k")


def test_long_keys_are_one_key(drive, limiter):
    long = "login:" + "x" * 300
    for _ in range(3):
        limiter.fail(long)
    with pytest.raises(RateLimited):
        limiter.check(long)
    limiter.succeed(long)
    limiter.check(long)


def test_purge_forgets_old_windows(drive, limiter):
    limiter.fail("old")
    clock.advance(3600)
    limiter.fail("new")
    assert limiter.purge(clock.now() - dt.timedelta(seconds=60)) == 1
    assert _row(drive, "old") is None and _row(drive, "new").failures == 1


def test_concurrent_first_failures_are_all_counted(drive):
    lim = Limiter(drive.sm, max_failures=100, window=600)
    n = 8
    barrier = threading.Barrier(n)
    errors = []

    def go():
        try:
            barrier.wait()
            lim.fail("race")
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
    threads = [threading.Thread(target=go) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _row(drive, "race").failures == n


def test_concurrent_guesses_get_no_more_than_the_limit(drive, make_user):
    """Guesses sent all at once must not all pass the check before any failure is counted."""
    owner = make_user()
    leaf = put_bytes(drive, owner, "f.txt", b"x").node
    sh = Sharing(drive, Limiter(drive.sm, max_failures=3, window=600))
    _, token = sh.create_link(owner.id, leaf.id, password="right")
    n = 12
    barrier = threading.Barrier(n)
    outcomes = []

    def guess(i):
        barrier.wait()
        try:
            sh.link_get(token, f"guess{i}")
        except (Unauthorized, RateLimited) as exc:
            outcomes.append(type(exc).__name__)
    threads = [threading.Thread(target=guess, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(outcomes) == n
    assert outcomes.count("Unauthorized") == 3  # exactly the allowance was verified
    assert outcomes.count("RateLimited") == n - 3


def test_attempt_counts_before_the_check_and_refund_gives_one_back(drive, limiter):
    limiter.attempt("k")
    limiter.attempt("k")
    assert _row(drive, "k").failures == 2
    limiter.refund("k")  # the second try succeeded
    assert _row(drive, "k").failures == 1
    limiter.attempt("k")
    limiter.attempt("k")
    with pytest.raises(RateLimited):
        limiter.attempt("k")
    assert _row(drive, "k").failures == 3  # a refused attempt counts nothing
    clock.advance(601)
    limiter.attempt("k")
    assert _row(drive, "k").failures == 1
    limiter.refund("k")
    limiter.refund("k")  # never below zero
    assert _row(drive, "k").failures == 0
