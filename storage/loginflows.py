"""Nextcloud's Login Flow v2, the way its desktop and mobile apps sign in: the app starts a
flow and gets two secrets, a *login id* for the URL it opens in the user's browser and a
*poll token* it keeps; the user signs in in the browser, which grants the flow a new API token
(the app password); the app polls with its token and is given that app password, once.

Both secrets are 256 random bits kept only as SHA-256 digests, so the table alone lets no
one open the sign-in page or poll. A flow expires ``ttl_seconds`` after its start (Nextcloud
uses 20 minutes); an expired flow is invisible to every read here and is deleted by the next
:func:`start` or :func:`take`. Starting needs no account, so one client address may hold at
most ``max_per_address`` live flows: no one fills the table faster than flows expire.

The app password waits in its row between the grant and the first poll, and that poll deletes
the row in the transaction that reads it, so it is handed out once. It is kept as it is rather
than sealed to the poll token: sealing it needs a key the server can use at grant time but
that the database does not hold, which takes public-key encryption (the poll token deriving
a private key) and a dependency blockdrive does not have. What bounds the exposure instead is
time: a granted row lives until the app's next poll (seconds; the apps poll continuously) and
at most until the flow expires. Nothing here logs it.

Plain functions over a Session; the caller owns the transaction (``Drive.tx``)."""

from __future__ import annotations

import datetime as dt
import hashlib
import math
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .clock import now
from .errors import RateLimited
from .models import LoginFlow

SECRET_BYTES = 32  # 256 random bits, as API tokens
TTL_SECONDS = 20 * 60
USER_AGENT_MAX = 255
ADDRESS_MAX = 45  # an IPv6 address in text
MAX_PER_ADDRESS = 20


@dataclass(frozen=True)
class Started:
    """A new flow's two secrets, given to the app (never stored as they are)."""

    login_id: str
    poll_token: str
    expires_at: dt.datetime


@dataclass(frozen=True)
class Granted:
    """What the app's poll gets once the user has signed in."""

    login_name: str
    app_password: str


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def _live():
    return LoginFlow.expires_at > now()


def purge_expired(s: Session) -> int:
    """Delete the flows that expired; how many."""
    return s.execute(sa.delete(LoginFlow).where(LoginFlow.expires_at <= now())).rowcount


def start(s: Session, user_agent: str, address: str, ttl_seconds: float = TTL_SECONDS,
          max_per_address: int = MAX_PER_ADDRESS) -> Started:
    """A new flow for the app that says it is ``user_agent``, started from client ``address``,
    live for ``ttl_seconds``; RateLimited (until its oldest expires) when that address holds
    ``max_per_address`` live flows already."""
    purge_expired(s)
    address = (address or "")[:ADDRESS_MAX]
    held = s.execute(sa.select(sa.func.count(), sa.func.min(LoginFlow.expires_at)).where(
        LoginFlow.address == address, _live())).one()
    if held[0] >= max_per_address:
        wait = math.ceil((held[1] - now()).total_seconds())
        raise RateLimited(f"too many sign-ins started from this address; retry in {wait} s", retry_after=max(wait, 1))
    login_id, poll_token = secrets.token_urlsafe(SECRET_BYTES), secrets.token_urlsafe(SECRET_BYTES)
    created = now()
    expires = created + dt.timedelta(seconds=ttl_seconds)
    s.add(LoginFlow(login_hash=digest(login_id), poll_hash=digest(poll_token),
                    user_agent=(user_agent or "")[:USER_AGENT_MAX], address=address,
                    created_at=created, expires_at=expires))
    return Started(login_id, poll_token, expires)


def pending_agent(s: Session, login_id: str) -> str | None:
    """The User-Agent of the live flow ``login_id`` that waits for a sign-in; None when there is
    no such flow (unknown, expired, or granted already)."""
    return s.execute(sa.select(LoginFlow.user_agent).where(
        LoginFlow.login_hash == digest(login_id or ""), LoginFlow.app_password.is_(None), _live())).scalar_one_or_none()


def grant(s: Session, login_id: str, login_name: str, app_password: str) -> bool:
    """Give the live, still pending flow ``login_id`` its account and app password; False
    (nothing changed) when there is no such flow."""
    return s.execute(sa.update(LoginFlow).where(
        LoginFlow.login_hash == digest(login_id or ""), LoginFlow.app_password.is_(None), _live())
        .values(login_name=login_name, app_password=app_password)).rowcount == 1


def take(s: Session, poll_token: str) -> Granted | None:
    """The account and app password of the granted, live flow polled with ``poll_token``, and
    the flow deleted; None while it waits, and for an unknown or expired token. Of concurrent
    polls only the one whose delete took the row gets the password."""
    purge_expired(s)
    row = s.execute(sa.select(LoginFlow.id, LoginFlow.login_name, LoginFlow.app_password).where(
        LoginFlow.poll_hash == digest(poll_token or ""), LoginFlow.app_password.is_not(None), _live())).first()
    if row is None or s.execute(sa.delete(LoginFlow).where(LoginFlow.id == row.id)).rowcount != 1:
        return None
    return Granted(row.login_name, row.app_password)
