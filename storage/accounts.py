"""Users, passwords and API tokens."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from .clock import now
from .errors import Conflict, InvalidInput, Unauthorized
from .models import ApiToken, Node, User

TOKEN_BYTES = 32  # 256 random bits


class PasswordHasher:
    """scrypt (hashlib, OpenSSL) in a self-describing string: ``scrypt$N$r$p$salt$hash``."""

    def __init__(self, n: int = 2**17, r: int = 8, p: int = 1):
        self.n, self.r, self.p = n, r, p

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

    @staticmethod
    def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
        return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p,
                              maxmem=2 * 128 * n * r * p + 1024 * 1024, dklen=32)


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def normalize_email(email: str) -> str:
    email = (email or "").strip()
    local, at, domain = email.rpartition("@")
    if not at or not local or "." not in domain or len(email) > 320 or any(c.isspace() for c in email):
        raise InvalidInput(f"not an email address: {email!r}")
    # Case-insensitive in practice everywhere people type them: one account per address.
    return email.lower()


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
    return user


def issue_token(s: Session, user_id: int, name: str = "") -> str:
    token = "bd_" + secrets.token_urlsafe(TOKEN_BYTES)
    s.add(ApiToken(user_id=user_id, token_hash=token_hash(token), name=name[:100], created_at=now()))
    return token


def user_for_token(s: Session, token: str) -> User:
    row = s.execute(sa.select(User, ApiToken).join(ApiToken, ApiToken.user_id == User.id)
                    .where(ApiToken.token_hash == token_hash(token or ""))).first()
    if row is None or (row.ApiToken.expires_at is not None and row.ApiToken.expires_at < now()):
        raise Unauthorized("invalid or expired token")
    return row.User


def authenticate(s: Session, hasher: PasswordHasher, email: str, password: str) -> User:
    try:
        email = normalize_email(email)
    except InvalidInput:
        raise Unauthorized("wrong email or password") from None
    user = s.execute(sa.select(User).where(User.email == email)).scalar_one_or_none()
    # Hash even for an unknown user, so response time does not reveal who has an account.
    encoded = user.password_hash if user else _DUMMY.setdefault(hasher.n, hasher.hash("x" * 16))
    ok = hasher.verify(password or "", encoded)
    if user is None or not ok:
        raise Unauthorized("wrong email or password")
    return user


_DUMMY: dict[int, str] = {}
