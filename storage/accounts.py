"""Users, passwords, API tokens and admin sessions.

A token is ``bd_`` + 256 random bits; only its SHA-256 is stored. Every token has an expiry
(``security.token_ttl_days`` for sign-ins, ``security.cli_token_ttl_days`` for the token
``blockdrive user create`` prints; 0 = never) and a ``last_used_at`` written at most once a
minute, so a busy client does not turn every read into a write. An admin dashboard session is
a token row of kind ``session`` whose secret never leaves the server: the cookie names the
row, logging out deletes it, and a copied cookie dies with it.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
import hmac
import secrets
import threading
import time
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from .clock import now
from .errors import Conflict, Forbidden, InvalidInput, NotFound, RetryLater, Unauthorized
from .models import ApiToken, Node, Share, User
from .models.sharing import Invitation
from .ratelimit import Throttle

if TYPE_CHECKING:
    from .drive import Drive

TOKEN_BYTES = 32  # 256 random bits
TOUCH_SECONDS = 60  # last_used_at is written at most this often per token
KIND_API, KIND_SESSION = "api", "session"
BASIC_CACHE_MAX = 10_000  # remembered Basic passwords per process; the cache starts over past it


class PasswordHasher:
    """scrypt (hashlib, OpenSSL) in a self-describing string: ``scrypt$N$r$p$salt$hash``.

    At most ``concurrency`` derivations run at once in a process (each takes ~128 MiB and a
    core for a fraction of a second at the default cost): a flood of sign-ins queues here for
    up to ``wait`` seconds and is then refused with :class:`RetryLater`, instead of taking
    every core and all the memory from the requests of people already signed in."""

    def __init__(self, n: int = 2**17, r: int = 8, p: int = 1, concurrency: int = 0, wait: float = 10.0):
        self.n, self.r, self.p = n, r, p
        self._slots = threading.BoundedSemaphore(concurrency) if concurrency > 0 else None
        self._wait = wait

    def hash(self, password: str) -> str:
        salt = secrets.token_bytes(16)
        dk = self._derive(password, salt, self.n, self.r, self.p)
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        return f"scrypt${self.n}${self.r}${self.p}${b64(salt)}${b64(dk)}"

    def verify(self, password: str, encoded: str) -> bool:
        try:
            algo, n, r, p, salt, dk = encoded.split("$")
            if algo != "scrypt":
                return False
            got = self._derive(password, base64.b64decode(salt), int(n), int(r), int(p))
        except (ValueError, TypeError):
            return False
        return hmac.compare_digest(got, base64.b64decode(dk))

    def verify_nothing(self, password: str) -> None:
        """Cost what :meth:`verify` of a current hash costs, checking nothing: for a sign-in
        to an unknown account, so its answer takes as long as a known account's."""
        self._derive(password, secrets.token_bytes(16), self.n, self.r, self.p)

    def _derive(self, password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        if self._slots is not None and not self._slots.acquire(timeout=self._wait):
            raise RetryLater("too many sign-ins at once; retry shortly")
        try:
            return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                                  maxmem=2 * 128 * n * r * p + 1024 * 1024, dklen=32)
        finally:
            if self._slots is not None:
                self._slots.release()


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def normalize_email(email: str) -> str:
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidInput(f"not an email address: {email!r}")
    # Case-insensitive in practice everywhere people type them: one account per address.
    return email.lower()


def normalize_email_or_none(email: str) -> str | None:
    try:
        return normalize_email(email)
    except InvalidInput:
        return None


def create_user(s: Session, hasher: PasswordHasher, email: str, password: str, quota: int,
                plan: str = "free", is_admin: bool = False) -> User:
    email = normalize_email(email)
    if len(password or "") < 8:
        raise InvalidInput("password must be at least 8 characters")
    if s.execute(sa.select(User.id).where(User.email == email)).first():
        raise Conflict(f"a user with email {email} exists")
    user = User(email=email, password_hash=hasher.hash(password), plan=plan, quota_bytes=quota,
                used_bytes=0, is_admin=is_admin, created_at=now())
    s.add(user)
    try:
        s.flush()
    except DBIntegrityError:
        raise Conflict(f"a user with email {email} exists") from None
    root = Node(owner_id=user.id, parent_id=None, kind="folder", name="", live_name=None, path="/",
                created_at=now(), updated_at=now())
    s.add(root)
    s.flush()
    user.root_id = root.id
    accept_invitations(s, user)
    return user


def accept_invitations(s: Session, user: User) -> int:
    """Turn the invitations to ``user``'s address into shares (in the caller's transaction,
    so an account never exists without the shares it was invited to)."""
    invites = s.execute(sa.select(Invitation).where(Invitation.email == user.email)
                        .order_by(Invitation.id)).scalars().all()
    for inv in invites:
        s.add(Share(node_id=inv.node_id, grantee_id=user.id, role=inv.role, granted_by=inv.granted_by,
                    created_at=inv.created_at))
        s.delete(inv)
    s.flush()
    return len(invites)


@dataclasses.dataclass(frozen=True)
class TokenInfo:
    id: int
    name: str
    kind: str
    created_at: dt.datetime
    last_used_at: dt.datetime | None
    expires_at: dt.datetime | None
    current: bool


def _expiry(ttl_days: float) -> dt.datetime | None:
    return now() + dt.timedelta(days=ttl_days) if ttl_days and ttl_days > 0 else None


def issue_token(s: Session, user_id: int, name: str = "", ttl_days: float = 0) -> str:
    """A new API token for ``user_id``, valid ``ttl_days`` (0 = no expiry)."""
    token = "bd_" + secrets.token_urlsafe(TOKEN_BYTES)
    s.add(ApiToken(user_id=user_id, token_hash=token_hash(token), name=name[:100], created_at=now(),
                   expires_at=_expiry(ttl_days), kind=KIND_API))
    return token


def _live(row: ApiToken, kind: str) -> bool:
    return row.kind == kind and (row.expires_at is None or row.expires_at > now())


# Every request with a bearer token runs it: built once, since building one costs more than running it.
_TOKEN_BY_HASH = sa.select(ApiToken).where(ApiToken.token_hash == sa.bindparam("h"))
_TOKEN_AND_USER = sa.select(ApiToken, User).join(User, User.id == ApiToken.user_id) \
    .where(ApiToken.token_hash == sa.bindparam("h"))


def token_row(s: Session, token: str) -> ApiToken:
    """The live API token row for a bearer ``token`` (Unauthorized if unknown or expired)."""
    row = s.execute(_TOKEN_BY_HASH, {"h": token_hash(token or "")}).scalar_one_or_none()
    if row is None or not _live(row, KIND_API):
        raise Unauthorized("invalid or expired token")
    return row


def token_user(s: Session, token: str) -> tuple[User, int, bool]:
    """The user a bearer token belongs to, the token's id, and whether its ``last_used_at``
    is due a refresh (older than :data:`TOUCH_SECONDS`; :func:`touch_token`). Only reads."""
    got = s.execute(_TOKEN_AND_USER, {"h": token_hash(token or "")}).one_or_none()  # one statement, not two
    if got is None or not _live(got[0], KIND_API) or got[1].disabled_at is not None:
        raise Unauthorized("invalid or expired token")
    row, user = got
    due = row.last_used_at is None or (now() - row.last_used_at).total_seconds() >= TOUCH_SECONDS
    return user, row.id, due


def touch_token(s: Session, token_id: int) -> None:
    """Set the token's ``last_used_at`` to now, unless another request did within
    :data:`TOUCH_SECONDS` (guarded, so that of concurrent requests only one writes)."""
    t = now()
    s.execute(sa.update(ApiToken).where(ApiToken.id == token_id, sa.or_(
        ApiToken.last_used_at.is_(None), ApiToken.last_used_at <= t - dt.timedelta(seconds=TOUCH_SECONDS)))
        .values(last_used_at=t))


def user_for_token(s: Session, token: str) -> tuple[User, int]:
    """The user a bearer token belongs to and the token's id; refreshes ``last_used_at``
    when it is older than :data:`TOUCH_SECONDS` (the caller commits)."""
    user, token_id, due = token_user(s, token)
    if due:
        touch_token(s, token_id)
    return user, token_id


def list_tokens(s: Session, user_id: int, current_id: int | None) -> list[TokenInfo]:
    """The user's live tokens and admin sessions, newest first (never their secrets)."""
    rows = s.execute(sa.select(ApiToken).where(ApiToken.user_id == user_id, sa.or_(
        ApiToken.expires_at.is_(None), ApiToken.expires_at > now())).order_by(ApiToken.id.desc())).scalars()
    return [TokenInfo(r.id, r.name, r.kind, r.created_at, r.last_used_at, r.expires_at, r.id == current_id)
            for r in rows]


def revoke_token(s: Session, user_id: int, token_id: int) -> None:
    """Delete one of the user's tokens, and the admin sessions opened with it."""
    n = s.execute(sa.delete(ApiToken).where(ApiToken.id == token_id, ApiToken.user_id == user_id)).rowcount
    if n == 0:
        raise NotFound(f"token {token_id} not found")
    s.execute(sa.delete(ApiToken).where(ApiToken.parent_id == token_id, ApiToken.user_id == user_id))


def revoke_others(s: Session, user_id: int, keep_id: int | None) -> int:
    """Delete every token and session of the user but ``keep_id``."""
    q = sa.delete(ApiToken).where(ApiToken.user_id == user_id)
    if keep_id is not None:
        q = q.where(ApiToken.id != keep_id)
    return s.execute(q).rowcount


def open_session(s: Session, user_id: int, parent_id: int | None, hours: float) -> bytes:
    """A server-side browser session; returns the digest the cookie carries. The secret it is
    the hash of is dropped at once: the row can be named, never used as a bearer token."""
    digest = token_hash("bs_" + secrets.token_urlsafe(TOKEN_BYTES))
    s.add(ApiToken(user_id=user_id, token_hash=digest, name="browser session", created_at=now(),
                   expires_at=now() + dt.timedelta(hours=hours), kind=KIND_SESSION, parent_id=parent_id))
    return digest


def session_user(s: Session, digest: bytes) -> User | None:
    """The user of the live session ``digest`` (None if there is none, or the account is disabled)."""
    row = s.execute(sa.select(ApiToken).where(ApiToken.token_hash == digest)).scalar_one_or_none()
    if row is None or not _live(row, KIND_SESSION):
        return None
    user = s.get(User, row.user_id)
    return user if user is not None and user.disabled_at is None else None


def close_session(s: Session, digest: bytes) -> None:
    s.execute(sa.delete(ApiToken).where(ApiToken.token_hash == digest, ApiToken.kind == KIND_SESSION))


def authenticate(s: Session, hasher: PasswordHasher, email: str, password: str) -> User:
    try:
        email = normalize_email(email)
    except InvalidInput:
        raise Unauthorized("wrong email or password") from None
    user = s.execute(sa.select(User).where(User.email == email)).scalar_one_or_none()
    if user is None:
        # One derivation, as for a known user, so the time taken does not tell who has an account.
        hasher.verify_nothing(password or "")
        raise Unauthorized("wrong email or password")
    if not hasher.verify(password or "", user.password_hash):
        raise Unauthorized("wrong email or password")
    if user.disabled_at is not None:
        # Said only to whoever knows the password: the owner learns why, a guesser learns nothing.
        raise Unauthorized("this account is disabled")
    return user


def change_password(s: Session, hasher: PasswordHasher, user_id: int, old: str, new: str,
                    keep_token_id: int | None) -> int:
    """Set a new password after checking the old one; revokes every other token and session
    of the user (the one in ``keep_token_id`` stays). Returns how many were revoked."""
    user = s.get(User, user_id, with_for_update=True)
    if user is None or not hasher.verify(old or "", user.password_hash):
        # 403, not 401: the token is fine, and a client must not take this for a sign-out
        raise Forbidden("the current password is wrong", field="old_password")
    if len(new or "") < 8:
        raise InvalidInput("password must be at least 8 characters", field="new_password")
    user.password_hash = hasher.hash(new)
    return revoke_others(s, user_id, keep_token_id)


class Accounts:
    """Sign-in with throttling, the caller's tokens, password change and admin sessions: the
    account operations of every door, over :class:`storage.drive.Drive`'s database.

    A failed sign-in counts against three keys, each with a free allowance and then growing
    waits (:class:`Throttle`): the client address (``security.login_free_per_address``: one
    address cannot try many accounts), the account from that address
    (``security.login_free_failures``) and the account as a whole
    (``security.login_free_per_account``), the last one holding back only addresses that have
    failed on that account themselves. So someone guessing from one address slows down only
    that address, and the owner elsewhere signs in with the right password as usual.
    """

    def __init__(self, drive: Drive, throttle: Throttle | None = None):
        self.drive = drive
        self.sec = sec = drive.config["security"]
        self.throttle = throttle or Throttle(drive.sm, sec["login_max_delay_seconds"], sec["login_forget_seconds"])
        self._basic_key = secrets.token_bytes(32)  # this process's key for remembered passwords
        self._basic_cache: dict[bytes, tuple[int, str, float]] = {}

    def _login_keys(self, email: str, address: str) -> tuple[dict[str, int], dict[str, str]]:
        who = (email or "").strip().lower()[:150]
        addr = (address or "unknown")[:45]
        acct_addr, acct = f"login:{who}|{addr}", f"login-account:{who}"
        keys = {f"login-address:{addr}": self.sec["login_free_per_address"],
                acct_addr: self.sec["login_free_failures"], acct: self.sec["login_free_per_account"]}
        return keys, {acct: acct_addr}

    def _signed_in(self, keys: dict[str, int]) -> None:
        """A right password: the account's failure counts start over, and the address gets
        back the attempt it spent (only failures count against an address)."""
        acct_keys = [k for k in keys if not k.startswith("login-address:")]
        self.throttle.reset(acct_keys)
        self.throttle.refund({k: v for k, v in keys.items() if k not in acct_keys})

    def login(self, email: str, password: str, address: str, name: str = "login") -> str:
        """A new API token for the right email and password, from client ``address``."""
        keys, gated = self._login_keys(email, address)
        self.throttle.attempt(keys, gated)  # counted first; a wrong password keeps it counted
        token = self.drive.login(email, password, name=name)
        self._signed_in(keys)
        return token

    def authenticate(self, token: str) -> tuple[User, int]:
        """The user of a bearer token and the token's id (Unauthorized if none)."""
        with self.drive.reads() as s:  # a read beside the writer; the rare touch writes apart
            user, token_id, due = token_user(s, token)
            s.expunge(user)
        if due:
            with self.drive.sm() as s, s.begin():
                touch_token(s, token_id)
        return user, token_id

    def basic(self, email: str, secret: str, address: str) -> User:
        """The user of HTTP Basic credentials (WebDAV, the Nextcloud clients): ``email`` with
        an API token used as an app password, or with the account's password, checked and
        throttled exactly as :meth:`login`.

        Basic credentials come with every request, and a password costs one scrypt
        derivation (~128 MiB, a core for a tenth of a second), so a password that was right
        is remembered in this process for ``security.basic_cache_seconds`` under a keyed hash
        of the credentials, together with the password hash it matched: changing the
        password ends it at once. App passwords cost one indexed lookup and are not cached."""
        if secret.startswith("bd_"):
            user, _ = self.authenticate(secret)
            if user.email != normalize_email_or_none(email):
                raise Unauthorized("this app password belongs to another account")
            return user
        key = hmac.new(self._basic_key, f"{email}\0{secret}".encode(), hashlib.sha256).digest()
        hit = self._basic_cache.get(key)
        if hit is not None and hit[2] > time.monotonic():
            with self.drive.sm() as s:
                user = s.get(User, hit[0])
                if user is not None and user.password_hash == hit[1] and user.disabled_at is None:
                    s.expunge(user)
                    return user
            self._basic_cache.pop(key, None)
        keys, gated = self._login_keys(email, address)
        self.throttle.attempt(keys, gated)
        with self.drive.sm() as s:
            user = authenticate(s, self.drive.hasher, email, secret)
            s.expunge(user)
        self._signed_in(keys)
        ttl = self.sec["basic_cache_seconds"]
        if ttl > 0:
            if len(self._basic_cache) >= BASIC_CACHE_MAX:
                self._basic_cache.clear()
            self._basic_cache[key] = (user.id, user.password_hash, time.monotonic() + ttl)
        return user

    def tokens(self, user_id: int, current_id: int | None = None) -> list[TokenInfo]:
        with self.drive.sm() as s:
            return list_tokens(s, user_id, current_id)

    def revoke(self, user_id: int, token_id: int) -> None:
        with self.drive.sm() as s, s.begin():
            revoke_token(s, user_id, token_id)

    def revoke_all(self, user_id: int) -> int:
        """Revoke every token and admin session of the user (an operator's sign-out-everywhere)."""
        with self.drive.sm() as s, s.begin():
            return revoke_others(s, user_id, None)

    def change_password(self, user_id: int, old: str, new: str, address: str, keep_token_id: int | None) -> int:
        """Check ``old`` (throttled like a sign-in from ``address``: a stolen token must not
        become a way to guess the password) and set ``new``; every other token and session
        of the user is revoked, the one in ``keep_token_id`` kept."""
        with self.drive.sm() as s:
            email = s.get(User, user_id).email
        keys, gated = self._login_keys(email, address)
        self.throttle.attempt(keys, gated)

        def run(s):
            return change_password(s, self.drive.hasher, user_id, old, new, keep_token_id)
        n = self.drive.tx(run, attempts=1)
        self._signed_in(keys)
        return n

    def sign_in(self, email: str, password: str, address: str, hours: float) -> tuple[User, bytes]:
        """A browser's sign-in: the right email and password (throttled exactly as
        :meth:`login`) open a server-side session of ``hours``; returns the user and the
        session's digest, which the cookie carries."""
        keys, gated = self._login_keys(email, address)
        self.throttle.attempt(keys, gated)
        with self.drive.sm() as s, s.begin():
            user = authenticate(s, self.drive.hasher, email, password)
            digest = open_session(s, user.id, None, hours)
            s.expunge(user)
        self._signed_in(keys)
        return user, digest

    def open_session(self, user_id: int, parent_id: int | None, hours: float) -> bytes:
        with self.drive.sm() as s, s.begin():
            return open_session(s, user_id, parent_id, hours)

    def session_user(self, digest: bytes) -> User | None:
        with self.drive.sm() as s:
            user = session_user(s, digest)
            if user is not None:
                s.expunge(user)
            return user

    def close_session(self, digest: bytes) -> None:
        with self.drive.sm() as s, s.begin():
            close_session(s, digest)
