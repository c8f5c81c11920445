"""WebDAV locks in the database, for WsgiDAV: :class:`DbLockStorage` is a lock storage with
the interface and the semantics of WsgiDAV's in-memory ``LockStorageDict`` (same lock dicts,
same timeouts), over :mod:`storage.davstate`, so a lock taken through one worker of one
server holds in every other; :class:`DbLockManager` is WsgiDAV's ``LockManager`` with its
conflict check and the new lock's insert made one step across processes.

Why a ``LockManager`` subclass: ``LockManager.acquire`` checks for conflicting locks and then
asks the storage to create the new one, guarded only by a lock inside the process. Two
workers asking for conflicting exclusive locks at the same moment would both pass the check.
:meth:`DbLockManager.acquire` runs WsgiDAV's own check and create in one database transaction
that first holds the row of the tree's root node (:func:`storage.davstate.hold_tree`): a
second acquirer in the same tree waits there, and its check then sees the first lock. The
rules stay WsgiDAV's, written once; the row is one that exists for every tree, and locking it
serialises only lock-taking in that tree (and waits at most for a write in flight there).

Wiring: WsgiDAV builds a plain ``LockManager`` from its ``lock_storage`` setting, so set
``lock_storage: False`` and give each provider the manager after adding it::

    provider.set_lock_manager(DbLockManager(DbLockStorage(drive)))
"""

from __future__ import annotations

import contextlib
import datetime as dt
import threading
from typing import Callable, Iterator, TypeVar

from sqlalchemy.orm import Session
from wsgidav import util
from wsgidav.dav_error import HTTP_FORBIDDEN, DAVError
from wsgidav.lock_man.lock_manager import LockManager, generate_lock_token, normalize_lock_root, validate_lock
from wsgidav.lock_man.lock_storage import LockStorageDict

from storage import davstate
from storage.clock import now

T = TypeVar("T")


def epoch(t: dt.datetime | None) -> float:
    """A naive UTC datetime as seconds since the epoch; -1 for None (never)."""
    return -1.0 if t is None else t.replace(tzinfo=dt.UTC).timestamp()


def lock_dict(rec: davstate.LockRecord) -> dict:
    """A stored lock as the dict WsgiDAV's lock storages hand out."""
    return {"root": rec.root, "type": rec.kind, "scope": rec.scope, "depth": rec.depth,
            "owner": rec.owner.encode("utf-8"), "timeout": float(rec.timeout), "principal": rec.principal,
            "token": rec.token, "expire": epoch(rec.expires_at)}


def granted(timeout) -> int:
    """The lifetime WsgiDAV's LockStorageDict grants for ``timeout`` seconds asked: its
    default for None; its maximum for an infinite (-1) or a longer one, so a lock left by a
    client that went away ends some day."""
    if timeout is None:
        return LockStorageDict.LOCK_TIME_OUT_DEFAULT
    timeout = int(timeout)
    if timeout < 0 or timeout > LockStorageDict.LOCK_TIME_OUT_MAX:
        return LockStorageDict.LOCK_TIME_OUT_MAX
    return timeout


class DbLockStorage:
    """WsgiDAV's lock storage interface over :mod:`storage.davstate` on ``drive``'s database.
    Lock roots are roots of the id namespace (``/.ids/1/5/9``). ``user_id_of`` maps a
    principal (WsgiDAV's user name) to the user id stored beside the lock (None: not known)."""

    LOCK_TIME_OUT_DEFAULT = LockStorageDict.LOCK_TIME_OUT_DEFAULT
    LOCK_TIME_OUT_MAX = LockStorageDict.LOCK_TIME_OUT_MAX

    def __init__(self, drive, user_id_of: Callable[[str], int | None] | None = None):
        self.drive = drive
        self.user_id_of = user_id_of or (lambda principal: None)
        self.bound = threading.local()  # the session of a transaction held by this thread

    def __repr__(self):
        return self.__class__.__name__

    def run(self, fn: Callable[[Session], T]) -> T:
        """``fn`` in the transaction this thread holds (see :meth:`serialised`), else in one
        of its own."""
        s = getattr(self.bound, "session", None)
        return fn(s) if s is not None else self.drive.tx(fn)

    def serialised(self, url: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with every call of this storage from this thread in one transaction
        that holds the lock-taking of ``url``'s tree (:func:`storage.davstate.hold_tree`);
        expired locks in that tree are deleted on the way. Retried whole on a deadlock."""
        def run(s: Session) -> T:
            davstate.hold_tree(s, url)
            davstate.purge_expired_locks(s, within=davstate.tree_root(url))
            with self.bind(s):
                return fn()
        return self.drive.tx(run)

    @contextlib.contextmanager
    def bind(self, s: Session) -> Iterator[None]:
        """Within the block, this thread's calls of this storage run in ``s``."""
        self.bound.session = s
        try:
            yield
        finally:
            self.bound.session = None

    # ---- WsgiDAV's lock storage interface ---------------------------------------------

    def open(self):
        """Nothing to open: every call uses a session of the drive's engine."""

    def close(self):
        """Nothing to close: the drive owns its engine."""

    def cleanup(self):
        """Delete every expired lock."""
        self.run(davstate.purge_expired_locks)

    def clear(self):
        """Delete every lock."""
        self.run(davstate.delete_all_locks)

    def get(self, token):
        """The lock dict of ``token``; None if it does not exist or has expired."""
        rec = self.run(lambda s: davstate.get_lock(s, token))
        return None if rec is None else lock_dict(rec)

    def create(self, path, lock):
        """Store ``lock`` (a dict without token or expire) on ``path``; as LockStorageDict does,
        the dict is completed in place (normalized root, granted timeout, expire, token) and
        returned."""
        assert lock.get("token") is None
        assert lock.get("expire") is None, "Use timeout instead of expire"
        assert path and "/" in path
        lock["root"] = normalize_lock_root(path)
        timeout = granted(lock.get("timeout"))
        lock["timeout"] = float(timeout)
        validate_lock(lock)
        t = now()
        expires_at = davstate.expiry(timeout, t)
        token = generate_lock_token()
        user_id = self.user_id_of(lock["principal"])

        def run(s: Session):
            return davstate.create_lock(
                s, token=token, root=lock["root"], user_id=user_id,
                principal=lock["principal"], scope=lock["scope"], depth=lock["depth"], timeout=timeout,
                owner=lock["owner"].decode("utf-8"), expires_at=expires_at, kind=lock["type"])
        rec = self.run(run)
        lock["expire"] = epoch(rec.expires_at)
        lock["token"] = token
        return lock

    def refresh(self, token, *, timeout):
        """Give the live lock ``token`` a new lifetime (granted as :meth:`create` does) and
        return its dict; ValueError if it does not exist or has expired."""
        assert timeout == -1 or timeout > 0
        seconds = granted(timeout)
        rec = self.run(lambda s: davstate.refresh_lock(s, token, timeout=seconds,
                                                       expires_at=davstate.expiry(seconds)))
        if rec is None:
            raise ValueError(f"no such lock: {token}")
        return lock_dict(rec)

    def delete(self, token):
        """Delete the lock ``token``: True if it was live, False if it did not exist or had
        expired."""
        return self.run(lambda s: davstate.delete_lock(s, token))

    def get_lock_list(self, path, *, include_root, include_children, token_only):
        """The live locks on ``path`` (``include_root``) and/or on every path below it
        (``include_children``): their dicts, or their tokens with ``token_only``."""
        assert util.is_str(path)
        assert path and path.startswith("/")
        assert include_root or include_children
        recs = self.run(lambda s: davstate.locks_at(s, normalize_lock_root(path), on_root=include_root,
                                                    descendants=include_children))
        return [r.token for r in recs] if token_only else [lock_dict(r) for r in recs]

    # ---- beyond the interface -------------------------------------------------------------

    def may_conflict(self, url: str, *, children: bool) -> bool:
        """Whether any live lock is on ``url``, on a path above it or (with ``children``)
        below it: one query that answers "nothing can conflict" for most writes."""
        return bool(self.run(lambda s: davstate.locks_at(s, normalize_lock_root(url), ancestors=True,
                                                         descendants=children)))


class DbLockManager(LockManager):
    """WsgiDAV's LockManager over a :class:`DbLockStorage`, whose :meth:`acquire` is atomic
    across processes and whose :meth:`check_write_permission` costs one query when nothing
    is locked nearby. Every rule is WsgiDAV's."""

    def acquire(self, *, url, lock_type, lock_scope, lock_depth, lock_owner, timeout, principal, token_list):
        """LockManager.acquire (check for conflicts, then create), as one transaction that
        holds the tree's lock-taking (see the module's docstring). A URL outside the id
        namespace (a virtual folder) cannot be locked: 403, as WsgiDAV answers a resource
        that prevents locking."""
        try:
            davstate.root_ids(normalize_lock_root(url))
        except ValueError:
            raise DAVError(HTTP_FORBIDDEN, "this resource cannot be locked") from None
        # The process's own lock first, then the database: the order every other path of
        # LockManager takes them in (on SQLite a read opens a write transaction too, so the
        # other order could wait on itself).
        self._lock.acquire_write()
        try:
            return self.storage.serialised(normalize_lock_root(url), lambda: super(DbLockManager, self).acquire(
                url=url, lock_type=lock_type, lock_scope=lock_scope, lock_depth=lock_depth, lock_owner=lock_owner,
                timeout=timeout, principal=principal, token_list=token_list))
        finally:
            self._lock.release()

    def check_write_permission(self, *, url, depth, token_list, principal):
        """LockManager.check_write_permission, answered by one query when no lock is on
        ``url``, above it or (for depth infinity) below it."""
        if not self.storage.may_conflict(url, children=depth == "infinity"):
            return
        super().check_write_permission(url=url, depth=depth, token_list=token_list, principal=principal)
