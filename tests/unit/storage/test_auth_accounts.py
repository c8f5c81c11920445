"""storage.accounts and storage.ratelimit.Throttle: what a sign-in costs, how failures slow
down, tokens and invitations, on SQLite and MariaDB."""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from storage import accounts, clock, ratelimit
from storage.accounts import Accounts, PasswordHasher
from storage.errors import RateLimited, RetryLater, Unauthorized
from storage.ratelimit import Throttle
from storage.sharing import Sharing


@pytest.fixture
def scrypt_calls(monkeypatch):
    """Every scrypt derivation accounts makes, counted."""
    calls = []
    real = accounts.hashlib.scrypt

    def spy(*a, **kw):
        calls.append(kw.get("n"))
        return real(*a, **kw)
    monkeypatch.setattr(accounts.hashlib, "scrypt", spy)
    return calls


@pytest.fixture
def frozen(monkeypatch):
    """The throttle's clock, stopped (moved only by ``frozen.advance``): waits are exact."""
    class Frozen:
        t = clock.now()

        def advance(self, seconds):
            self.t += dt.timedelta(seconds=seconds)
    f = Frozen()
    monkeypatch.setattr(ratelimit, "now", lambda: f.t)
    return f


def test_auth_unknown_and_known_email_cost_one_derivation_each(drive, make_user, scrypt_calls):
    user = make_user()
    for _ in range(3):  # every time, not only the first
        scrypt_calls.clear()
        with pytest.raises(Unauthorized):
            drive.login(user.email, "wrong-password")
        known = list(scrypt_calls)
        scrypt_calls.clear()
        with pytest.raises(Unauthorized):
            drive.login("nobody-" + user.email, "wrong-password")
        unknown = list(scrypt_calls)
        assert len(known) == len(unknown) == 1
        assert known == unknown == [drive.hasher.n]  # the same cost parameters too
    scrypt_calls.clear()
    with pytest.raises(Unauthorized):
        drive.login("not an email", "wrong-password")  # malformed: no derivation, nothing to hide
    assert scrypt_calls == []


def test_auth_concurrent_derivations_are_bounded(monkeypatch):
    hasher = PasswordHasher(n=1024, concurrency=1, wait=0.05)
    encoded = hasher.hash("password123")
    entered, release = threading.Event(), threading.Event()
    real = accounts.hashlib.scrypt

    def slow(*a, **kw):
        entered.set()
        release.wait(10)
        return real(*a, **kw)
    monkeypatch.setattr(accounts.hashlib, "scrypt", slow)
    t = threading.Thread(target=hasher.verify, args=("password123", encoded))
    t.start()
    try:
        assert entered.wait(10)
        with pytest.raises(RetryLater):  # the only slot is taken: refused, not a third core
            hasher.verify_nothing("x")
    finally:
        release.set()
        t.join()
    monkeypatch.setattr(accounts.hashlib, "scrypt", real)
    assert hasher.verify("password123", encoded)  # the slot came back


def test_auth_throttle_waits_grow_and_are_capped(drive, frozen):
    t = Throttle(drive.sm, max_delay=60, forget=3600)
    keys = {"k": 3}
    for _ in range(3):  # the free failures
        t.attempt(keys)
    assert t.wait("k") == 0
    waits = []
    for _ in range(8):
        t.attempt(keys)
        waits.append(t.wait("k"))
        with pytest.raises(RateLimited) as exc:
            t.attempt(keys)  # refused while it runs, and not counted
        assert exc.value.details["retry_after"] == waits[-1]
        frozen.advance(waits[-1])
    assert waits == [1, 2, 4, 8, 16, 32, 60, 60]
    frozen.advance(3600)  # forgotten an hour after the last failure
    t.attempt(keys)
    assert t.wait("k") == 0


def test_auth_throttle_refund_and_reset(drive, frozen):
    t = Throttle(drive.sm, max_delay=60, forget=3600)
    for _ in range(2):
        t.attempt({"addr": 2})
    t.attempt({"addr": 2})
    assert t.wait("addr") == 1
    t.refund({"addr": 2})  # that one was right: its wait goes, the earlier failures stay
    assert t.wait("addr") == 0
    t.attempt({"addr": 2})
    assert t.wait("addr") == 1
    t.reset(["addr"])
    assert t.wait("addr") == 0


def test_auth_a_gated_key_holds_back_only_addresses_that_failed_on_it(drive, frozen):
    t = Throttle(drive.sm, max_delay=900, forget=3600)

    def attempt(addr):
        t.attempt({f"acct|{addr}": 100, "acct": 2}, {"acct": f"acct|{addr}"})
    for addr in ("a", "b", "c"):
        attempt(addr)
    assert t.wait("acct") > 0
    with pytest.raises(RateLimited):
        attempt("a")  # failed on this account before: waits for the account as a whole
    attempt("fresh")  # never failed here: not held back


def test_auth_owner_signs_in_from_another_address_while_one_hammers(drive, make_user, frozen):
    user = make_user()
    acc = Accounts(drive)
    hammered = 0
    while True:
        try:
            acc.login(user.email, "wrong-password", "203.0.113.7")
        except Unauthorized:
            hammered += 1
            continue
        except RateLimited:
            break
    assert hammered == drive.config["security"]["login_free_failures"] + 1
    with pytest.raises(RateLimited):
        acc.login(user.email, "password123", "203.0.113.7")
    assert acc.login(user.email, "password123", "198.51.100.1").startswith("bd_")


def test_auth_invitation_becomes_a_share_when_the_account_is_created(drive, make_user):
    owner = make_user()
    sh = Sharing(drive)
    folder = drive.mkdir(owner.id, owner.root_id, "team")
    info, created = sh.grant(owner.id, folder.id, "Later@Example.com", "editor")
    assert created and info.email == "later@example.com" and info.user_id is None
    [pending] = sh.list_shares(owner.id, folder.id)
    assert pending.pending and pending.user_id is None and pending.invitation_id
    later, _ = drive.create_user("later@example.com", "password123")
    [share] = sh.list_shares(owner.id, folder.id)
    assert (share.user_id, share.role, share.pending, share.granted_by) == (later.id, "editor", False, owner.id)
    assert drive.get(later.id, folder.id).role == "editor"


def test_auth_tokens_expire_and_touch_last_used_at_at_most_once_a_minute(drive):
    user, token = drive.create_user("toucher@example.com", "password123")
    acc = Accounts(drive)
    _, tid = acc.authenticate(token)
    first = {t.id: t for t in acc.tokens(user.id, tid)}[tid]
    assert first.current and first.last_used_at is not None and first.expires_at is not None
    clock.advance(30)
    acc.authenticate(token)
    assert {t.id: t for t in acc.tokens(user.id)}[tid].last_used_at == first.last_used_at
    clock.advance(31)
    acc.authenticate(token)
    assert {t.id: t for t in acc.tokens(user.id)}[tid].last_used_at > first.last_used_at
    clock.advance(drive.config["security"]["cli_token_ttl_days"] * 86400)
    with pytest.raises(Unauthorized):
        acc.authenticate(token)
    assert acc.tokens(user.id) == []


def test_auth_purging_a_node_takes_its_invitations_along(drive, make_user):
    owner = make_user()
    folder = drive.mkdir(owner.id, owner.root_id, "gone")
    Sharing(drive).grant(owner.id, folder.id, "someday@example.com", "viewer")
    drive.delete(owner.id, folder.id)
    drive.purge(owner.id, folder.id)
    later, _ = drive.create_user("someday@example.com", "password123")
    assert Sharing(drive).shared_with_me(later.id) == []


def test_auth_a_bad_trusted_proxy_is_a_config_error_at_start():
    from storage.config import load_config
    from storage.errors import ConfigError
    assert load_config(env={"BLOCKDRIVE_SECURITY_TRUSTED_PROXIES": "10.0.0.0/8, ::1"})
    with pytest.raises(ConfigError, match="trusted_proxies"):
        load_config(env={"BLOCKDRIVE_SECURITY_TRUSTED_PROXIES": "10.0.0.0/8, nginx"})
