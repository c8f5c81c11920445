"""Admin user management: find, inspect, create, change, disable, reset and delete accounts.

Every door (the admin API, the admin pages, ``blockdrive user ...``) calls :class:`UserAdmin`;
it checks the rules, owns the transactions and raises domain errors.

- A *disabled* account (``users.disabled_at``) signs in by no door: :mod:`storage.accounts`
  refuses its password, its tokens and app passwords and its browser sessions, and disabling
  revokes every token and session it had besides.
- A *deleted* account is disabled and marked ``deleted_at`` in one transaction; then its files
  go to its trash, one top-level entry per transaction. Nothing is purged at once: gc purges
  that trash under the usual ``trash.retention_days`` (``Drive.purge_expired_trash``), and
  :meth:`UserAdmin.remove_deleted` (a gc step) finishes an interrupted trashing, then removes
  the row once the account owns nothing but its root and holds no upload. Only then is the
  address free for a new account. Blocks are never touched here: purging drops refs and
  refcounts, and gc's mark and sweep reclaim the blocks later, as for any purge.
- An admin can neither disable nor delete themselves, and the last enabled admin keeps being
  one (no disable, delete or ``is_admin=False``).
"""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import re
import secrets
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.orm import Session

from . import accounts, quota
from .clock import now
from .errors import Conflict, Forbidden, InvalidInput, NotFound
from .models import ApiToken, DavProp, Link, Node, Share, UploadChunk, UploadPin, UploadSession, User
from .models.sharing import Invitation
from .states import UploadState

if TYPE_CHECKING:
    from .drive import Drive

PLANS = ("free", "premium")
PAGE_SIZE = 50
GENERATED_PASSWORD_BYTES = 12  # 16 characters of URL-safe base64
SIZE_UNITS = {"": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15,
              "ki": 2**10, "mi": 2**20, "gi": 2**30, "ti": 2**40, "pi": 2**50}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kmgtp]i?)?b?\s*$", re.IGNORECASE)


def parse_size(text: str | int) -> int:
    """Bytes from ``"20G"`` (decimal units, as the config's quotas), ``"512Mi"`` (binary) or a
    plain number of bytes."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 0:
            raise InvalidInput("a size cannot be negative", field="quota")
        return text
    m = _SIZE.match(str(text))
    if not m:
        raise InvalidInput(f"not a size: {text!r} (bytes, or e.g. 20G, 500M, 1Ti)", field="quota")
    return int(float(m.group(1)) * SIZE_UNITS[(m.group(2) or "").lower()])


def new_password() -> str:
    """A password for an admin to hand over once: 16 random URL-safe characters."""
    return secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)


@dataclasses.dataclass(frozen=True)
class UserSummary:
    id: int
    email: str
    plan: str
    quota_bytes: int
    used_bytes: int
    is_admin: bool
    created_at: dt.datetime
    disabled_at: dt.datetime | None
    deleted_at: dt.datetime | None

    @classmethod
    def of(cls, u: User) -> UserSummary:
        return cls(u.id, u.email, u.plan, u.quota_bytes, u.used_bytes, u.is_admin, u.created_at,
                   u.disabled_at, u.deleted_at)

    @property
    def status(self) -> str:
        return "deleted" if self.deleted_at else "disabled" if self.disabled_at else "active"

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        for k in ("created_at", "disabled_at", "deleted_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["status"] = self.status
        return d


@dataclasses.dataclass(frozen=True)
class UserDetails:
    user: UserSummary
    usage: quota.Usage
    nodes: int    # files and folders below the root, live and trashed
    tokens: int   # live API tokens and sessions

    def as_dict(self) -> dict:
        return {**self.user.as_dict(), "usage": {"used_bytes": self.usage.used, **self.usage.as_dict()},
                "node_count": self.nodes, "token_count": self.tokens}


def _cursor(email: str) -> str:
    return base64.urlsafe_b64encode(email.encode()).decode().rstrip("=")


def _uncursor(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("bad cursor", field="cursor") from None


def _like(q: str) -> str:
    return "%" + q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class UserAdmin:
    """The account operations an admin has, over ``drive``'s database."""

    def __init__(self, drive: Drive):
        self.drive = drive

    # ---- reading -------------------------------------------------------------------------

    def list(self, query: str = "", cursor: str | None = None,
             limit: int = PAGE_SIZE) -> tuple[list[UserSummary], str | None]:
        """Users whose email contains ``query`` (case-insensitive), by email, ``limit`` a page;
        returns them and the cursor of the next page (None on the last)."""
        limit = max(1, min(limit, 500))
        q = sa.select(User).order_by(User.email).limit(limit + 1)
        if query.strip():
            q = q.where(User.email.like(_like(query.strip().lower()), escape="\\"))
        if cursor:
            q = q.where(User.email > _uncursor(cursor))
        with self.drive.sm() as s:
            rows = [UserSummary.of(u) for u in s.execute(q).scalars()]
        more = len(rows) > limit
        rows = rows[:limit]
        return rows, (_cursor(rows[-1].email) if more else None)

    def find(self, ref: int | str) -> int:
        """The id of the user named by ``ref``: an id, or an email address."""
        if isinstance(ref, int) or str(ref).isdigit():
            with self.drive.sm() as s:
                if s.get(User, int(ref)) is None:
                    raise NotFound(f"user {ref} not found")
            return int(ref)
        return self.drive.user_by_email(str(ref)).id

    def show(self, user_id: int) -> UserDetails:
        with self.drive.sm() as s:
            u = self._get(s, user_id)
            nodes = s.execute(sa.select(sa.func.count()).select_from(Node)
                              .where(Node.owner_id == user_id, Node.parent_id.is_not(None))).scalar_one()
            tokens = s.execute(sa.select(sa.func.count()).select_from(ApiToken).where(
                ApiToken.user_id == user_id,
                sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now()))).scalar_one()
            return UserDetails(UserSummary.of(u), quota.usage(s, user_id, self.drive.floor), int(nodes), int(tokens))

    # ---- changing ------------------------------------------------------------------------

    def create(self, email: str, password: str, plan: str = "free", quota_bytes: int | None = None,
               is_admin: bool = False) -> UserSummary:
        """A new account (:func:`storage.accounts.create_user`); the plan's quota unless given."""
        plan = self._plan(plan)
        if quota_bytes is None:
            quota_bytes = self.drive.config["quota"][f"{plan}_bytes"]

        def run(s):
            return UserSummary.of(accounts.create_user(s, self.drive.hasher, email, password,
                                                       parse_size(quota_bytes), plan, is_admin))
        return self.drive.tx(run, attempts=1)

    def update(self, user_id: int, *, plan: str | None = None, quota_bytes: int | str | None = None,
               is_admin: bool | None = None) -> UserSummary:
        """Set the plan (and, unless ``quota_bytes`` is given too, that plan's quota), the quota,
        or the admin flag. A quota below what the user keeps is allowed: they can still read,
        delete and purge, and upload nothing until under it."""
        if plan is not None:
            plan = self._plan(plan)
        if quota_bytes is not None:
            quota_bytes = parse_size(quota_bytes)

        def run(s):
            u = self._get(s, user_id, lock=True)
            if plan is not None:
                u.plan = plan
                if quota_bytes is None:
                    u.quota_bytes = self.drive.config["quota"][f"{plan}_bytes"]
            if quota_bytes is not None:
                u.quota_bytes = quota_bytes
            if is_admin is not None and is_admin != u.is_admin:
                if not is_admin:
                    self._keep_an_admin(s, u)
                u.is_admin = is_admin
            return UserSummary.of(u)
        return self.drive.tx(run)

    def disable(self, user_id: int, acting_id: int | None = None) -> int:
        """Disable the account and revoke all its tokens and sessions (returns how many)."""
        def run(s):
            u = self._get(s, user_id, lock=True)
            self._may_lock_out(s, u, acting_id, "disable")
            if u.disabled_at is None:
                u.disabled_at = now()
            return accounts.revoke_others(s, u.id, None)
        return self.drive.tx(run)

    def enable(self, user_id: int) -> None:
        def run(s):
            u = self._get(s, user_id, lock=True)
            if u.deleted_at is not None:
                raise Conflict(f"{u.email} is deleted; it cannot be enabled again")
            u.disabled_at = None
        self.drive.tx(run)

    def reset_password(self, user_id: int, password: str | None = None) -> str | None:
        """Set ``password``, or a generated one (returned, to be shown once); every token and
        session of the user is revoked, as a password change does."""
        generated = None
        if not password:
            password = generated = new_password()
        if len(password) < 8:
            raise InvalidInput("password must be at least 8 characters", field="password")
        digest = self.drive.hasher.hash(password)  # outside the transaction: it takes a while

        def run(s):
            u = self._get(s, user_id, lock=True)
            if u.deleted_at is not None:
                raise Conflict(f"{u.email} is deleted")
            u.password_hash = digest
            accounts.revoke_others(s, u.id, None)
        self.drive.tx(run)
        return generated

    def delete(self, user_id: int, acting_id: int | None = None) -> int:
        """Disable the account, mark it deleted and move its files to its trash. Returns the
        number of top-level entries trashed; gc purges them and then removes the account."""
        def run(s):
            u = self._get(s, user_id, lock=True)
            self._may_lock_out(s, u, acting_id, "delete")
            t = now()
            u.disabled_at = u.disabled_at or t
            u.deleted_at = u.deleted_at or t
            accounts.revoke_others(s, u.id, None)
        self.drive.tx(run)
        return self._trash_all(user_id)

    def remove_deleted(self, limit: int = 100) -> dict:
        """gc's step for deleted accounts: trash whatever a cut-off :meth:`delete` left live,
        then remove each account that owns nothing but its root and holds no upload (its
        trash is purged by the usual trash retention first). Returns the figures."""
        with self.drive.sm() as s:
            ids = s.execute(sa.select(User.id).where(User.deleted_at.is_not(None)).order_by(User.id)
                            .limit(limit)).scalars().all()
        stats = {"deleted_users_waiting": 0, "deleted_users_removed": 0}
        for uid in ids:
            self._trash_all(uid)
            stats["deleted_users_removed" if self.drive.tx(lambda s, uid=uid: self._remove(s, uid))
                  else "deleted_users_waiting"] += 1
        return stats

    def count_deleted(self) -> int:
        """Deleted accounts not yet removed (what a gc dry run reports)."""
        with self.drive.sm() as s:
            return s.execute(sa.select(sa.func.count()).select_from(User)
                             .where(User.deleted_at.is_not(None))).scalar_one()

    # ---- inside ----------------------------------------------------------------------------

    def _trash_all(self, user_id: int) -> int:
        with self.drive.sm() as s:
            root = s.get(User, user_id).root_id
            ids = s.execute(sa.select(Node.id).where(Node.parent_id == root, Node.live_name.is_not(None))
                            .order_by(Node.id)).scalars().all()
        n = 0
        for nid in ids:
            try:
                self.drive.delete(user_id, nid)
                n += 1
            except NotFound:
                pass  # moved or trashed meanwhile
        return n

    @staticmethod
    def _remove(s: Session, user_id: int) -> bool:
        u = s.get(User, user_id, with_for_update=True)
        if u is None or u.deleted_at is None:
            return False
        left = s.execute(sa.select(sa.func.count()).select_from(Node)
                         .where(Node.owner_id == user_id, Node.id != u.root_id)).scalar_one()
        busy = s.execute(sa.select(sa.func.count()).select_from(UploadSession).where(
            UploadSession.user_id == user_id, sa.or_(
                UploadSession.state == UploadState.ACTIVE,
                UploadSession.id.in_(sa.select(UploadPin.session_id))))).scalar_one()
        if left or busy:
            return False
        sessions = sa.select(UploadSession.id).where(UploadSession.user_id == user_id)
        s.execute(sa.delete(UploadChunk).where(UploadChunk.session_id.in_(sessions)))
        s.execute(sa.delete(UploadSession).where(UploadSession.user_id == user_id))
        s.execute(sa.delete(Share).where(sa.or_(Share.grantee_id == user_id, Share.node_id == u.root_id)))
        s.execute(sa.delete(Link).where(Link.node_id == u.root_id))
        s.execute(sa.delete(Invitation).where(Invitation.node_id == u.root_id))
        s.execute(sa.delete(DavProp).where(DavProp.node_id == u.root_id))
        s.execute(sa.delete(ApiToken).where(ApiToken.user_id == user_id))
        u.root_id = None
        s.flush()
        s.execute(sa.delete(Node).where(Node.owner_id == user_id))
        s.execute(sa.delete(User).where(User.id == user_id))
        return True

    @staticmethod
    def _get(s: Session, user_id: int, lock: bool = False) -> User:
        u = s.get(User, user_id, with_for_update=lock)
        if u is None:
            raise NotFound(f"user {user_id} not found")
        return u

    @staticmethod
    def _plan(plan: str) -> str:
        if plan not in PLANS:
            raise InvalidInput(f"plan must be one of {', '.join(PLANS)}", field="plan")
        return plan

    def _may_lock_out(self, s: Session, u: User, acting_id: int | None, what: str) -> None:
        if acting_id is not None and u.id == acting_id:
            raise Forbidden(f"you cannot {what} your own account")
        if u.is_admin:
            self._keep_an_admin(s, u)

    @staticmethod
    def _keep_an_admin(s: Session, u: User) -> None:
        """Refuse when ``u`` is the last enabled admin (the other admins' rows are locked, so
        two admins cannot each take the other away at once)."""
        others = s.execute(sa.select(User.id).where(User.is_admin.is_(True), User.disabled_at.is_(None),
                                                    User.id != u.id).with_for_update()).all()
        if not others:
            raise Conflict(f"{u.email} is the last admin; make another admin first")
