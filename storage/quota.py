"""The quota: what a user is charged for, and the one place that charges it.

A user's quota covers every byte they make the server keep:

- ``users.used_bytes``: the charge of every version kept of the files they own, live, in the
  trash, or old (kept by the retention policy that ``gc`` runs, see :func:`plan_thinning`);
- ``users.pending_bytes``: what their unfinished uploads hold, a tus upload's declared length
  from its creation and each block of a block session until it is committed; each upload
  session records its share in ``upload_sessions.reserved_bytes`` and gives it back once.

A version is charged ``version_charge(size, nblocks) = max(size, (nblocks - 1) * floor)``. A
file cut by the server's chunker has blocks of at least ``chunk_min`` (bar the last), so it
pays its size; one sent as a million one-byte blocks pays for the rows and pack records it
makes the server keep. Cross-user dedup saves disk, never quota: the charge depends only on
the version, not on who else stores the same blocks.

Every door (PUT, tus, the block API, batches, copy, restore) goes through :func:`charge`,
:func:`reserve` and :func:`release`: one guarded UPDATE each, so two concurrent requests can
never both take the last free bytes (``used + pending + delta <= quota`` is checked in the
statement that changes the row).
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import sqlalchemy as sa
from sqlalchemy.orm import Session

from .blockindex import drop_refs
from .db import execute_core
from .errors import QuotaExceeded
from .models import FileVersion, Node, UploadSession, User, VersionBlock
from .states import UploadState

BLOCK_FLOOR = 4096  # the default of quota.block_floor_bytes


def version_charge(size: int, nblocks: int | None, floor: int = BLOCK_FLOOR) -> int:
    """What keeping one version costs its owner."""
    return max(size, (max(nblocks or 1, 1) - 1) * floor)


def block_charge(size: int, floor: int = BLOCK_FLOOR) -> int:
    """What one uncommitted block holds in its sender's pending bytes."""
    return max(size, floor)


def charge_sql(floor: int = BLOCK_FLOOR):
    """:func:`version_charge` of a ``file_versions`` row as an SQL expression (every engine)."""
    over = (sa.func.coalesce(FileVersion.nblocks, 1) - 1) * floor
    return sa.case((FileVersion.size >= over, FileVersion.size), else_=over)


@dataclass(frozen=True)
class Usage:
    """A user's quota, split by what holds it. ``current + old_versions + trash`` is what
    ``used`` should be (``fsck`` and ``reconcile`` check it)."""

    quota: int
    used: int          # as recorded (users.used_bytes)
    pending: int       # as recorded (users.pending_bytes)
    current: int       # current versions of live files
    old_versions: int  # older versions of live files
    trash: int         # every version of files in the trash

    def as_dict(self) -> dict:
        return {"current_bytes": self.current, "old_versions_bytes": self.old_versions,
                "trash_bytes": self.trash, "pending_bytes": self.pending}


def usage(s: Session, user_id: int, floor: int = BLOCK_FLOOR) -> Usage:
    row = s.execute(sa.select(User.quota_bytes, User.used_bytes, User.pending_bytes)
                    .where(User.id == user_id)).one()
    kind = sa.case((Node.deleted_at.is_not(None), "trash"),
                   (Node.current_version_id == FileVersion.id, "current"), else_="old")
    split = dict(s.execute(sa.select(kind, sa.func.sum(charge_sql(floor)))
                           .join(Node, Node.id == FileVersion.node_id)
                           .where(Node.owner_id == user_id).group_by(kind)).all())
    return Usage(row.quota_bytes, row.used_bytes, row.pending_bytes, int(split.get("current") or 0),
                 int(split.get("old") or 0), int(split.get("trash") or 0))


def counted_usage(s: Session, user_id: int, floor: int = BLOCK_FLOOR) -> tuple[int, int]:
    """``(used, pending)`` recounted from the truth: the versions the user's files keep and
    the reservations of their active upload sessions."""
    used = s.execute(sa.select(sa.func.coalesce(sa.func.sum(charge_sql(floor)), 0))
                     .join(Node, Node.id == FileVersion.node_id).where(Node.owner_id == user_id)).scalar_one()
    pending = s.execute(sa.select(sa.func.coalesce(sa.func.sum(UploadSession.reserved_bytes), 0))
                        .where(UploadSession.user_id == user_id, UploadSession.state == UploadState.ACTIVE)).scalar_one()
    return int(used), int(pending)


def refuse(s: Session, user_id: int, needed: int, floor: int = BLOCK_FLOOR):
    """Raise the QuotaExceeded a charge of ``needed`` bytes to ``user_id`` meets, with their split."""
    u = usage(s, user_id, floor)
    raise QuotaExceeded(used=u.used, quota=u.quota, needed=needed, pending=u.pending,
                        old_versions=u.old_versions, trash=u.trash)


def charge(s: Session, user_id: int, delta: int, release: int = 0, floor: int = BLOCK_FLOOR) -> None:
    """Add ``delta`` to the user's used bytes (negative frees) and give back ``release`` of
    their pending bytes, in one guarded UPDATE: it fails with :class:`QuotaExceeded` (and
    changes nothing) when what the user holds would grow past their quota. A change that does
    not grow the total (a reservation turned into the version it promised) always succeeds,
    even for a user already over quota (a plan lowered under their usage)."""
    if delta == 0 and release == 0:
        return
    params = {"uid": user_id, "delta": delta}
    if release:
        params["release"] = release
    if delta - release > 0:
        params["grows"] = delta - release
    if execute_core(s, _charge_stmt(bool(release), delta - release > 0), params).rowcount == 0:
        refuse(s, user_id, delta - release, floor)


@functools.cache
def _charge_stmt(release: bool, grows: bool):
    """The UPDATE of :func:`charge`, built once per shape: building one costs more than
    running it. Parameters ``uid``, ``delta``, and ``release`` and ``grows`` when used."""
    values: dict = {"used_bytes": User.used_bytes + sa.bindparam("delta")}
    if release:
        n = sa.bindparam("release")
        values["pending_bytes"] = sa.case((User.pending_bytes > n, User.pending_bytes - n), else_=0)
    stmt = sa.update(User).where(User.id == sa.bindparam("uid")).values(**values)
    if grows:
        stmt = stmt.where(User.used_bytes + User.pending_bytes + sa.bindparam("grows") <= User.quota_bytes)
    return stmt.execution_options(synchronize_session=False)


def settle(s: Session, owner_id: int, delta: int, holder_id: int, reserved: int,
           floor: int = BLOCK_FLOOR) -> None:
    """Charge a new version to the folder's owner and release the reservation its uploader
    held for it (the uploader may be an editor of the owner's folder)."""
    if holder_id == owner_id:
        charge(s, owner_id, delta, release=reserved, floor=floor)
    else:
        charge(s, owner_id, delta, floor=floor)
        release(s, holder_id, reserved)


def reserve(s: Session, user_id: int, n: int, floor: int = BLOCK_FLOOR) -> None:
    """Hold ``n`` pending bytes, or raise :class:`QuotaExceeded` if they do not fit."""
    if n <= 0:
        return
    stmt = (sa.update(User).where(User.id == user_id,
                                  User.used_bytes + User.pending_bytes + n <= User.quota_bytes)
            .values(pending_bytes=User.pending_bytes + n).execution_options(synchronize_session=False))
    if s.execute(stmt).rowcount == 0:
        refuse(s, user_id, n, floor)


def release(s: Session, user_id: int, n: int) -> None:
    """Give back ``n`` pending bytes (never below zero: a drift is repaired by reconcile)."""
    if n <= 0:
        return
    s.execute(sa.update(User).where(User.id == user_id)
              .values(pending_bytes=sa.case((User.pending_bytes > n, User.pending_bytes - n), else_=0))
              .execution_options(synchronize_session=False))


def release_session(s: Session, sid: str) -> int:
    """Give back what session ``sid`` holds, once: its reserved_bytes go to zero in the same
    transaction. The caller holds the session's row lock or guards on its state."""
    row = s.execute(sa.select(UploadSession.user_id, UploadSession.reserved_bytes)
                    .where(UploadSession.id == sid)).first()
    if row is None or not row.reserved_bytes:
        return 0
    s.execute(sa.update(UploadSession).where(UploadSession.id == sid).values(reserved_bytes=0)
              .execution_options(synchronize_session=False))
    release(s, row.user_id, row.reserved_bytes)
    return row.reserved_bytes


def drop_versions(s: Session, owner_id: int, versions: Sequence[tuple[int, int, int | None]],
                  floor: int = BLOCK_FLOOR) -> int:
    """Delete versions ``(id, size, nblocks)`` of ``owner_id``'s files: their refs, their
    blocks' refcounts and their charge go in the caller's transaction. No node may point to
    them any more (the caller checked or cleared ``current_version_id``). The blocks stay for
    GC's mark and sweep. Returns the bytes freed."""
    vids = [v[0] for v in versions]
    counts: Counter = Counter()
    for i in range(0, len(vids), 500):
        part = vids[i:i + 500]
        for bid, n in s.execute(sa.select(VersionBlock.block_id, sa.func.count())
                                .where(VersionBlock.version_id.in_(part)).group_by(VersionBlock.block_id)):
            counts[bid] += n
        s.execute(sa.delete(VersionBlock).where(VersionBlock.version_id.in_(part)))
    drop_refs(s, counts)
    for i in range(0, len(vids), 500):
        s.execute(sa.delete(FileVersion).where(FileVersion.id.in_(vids[i:i + 500]))
                  .execution_options(synchronize_session=False))
    freed = sum(version_charge(size, n, floor) for _, size, n in versions)
    charge(s, owner_id, -freed)
    return freed


# ---- retention of old versions ---------------------------------------------------------------

@dataclass(frozen=True)
class Retention:
    """Nextcloud-style thinning: every version younger than ``keep_all``, then the newest of
    each hour up to ``hourly``, of each day up to ``daily``, of each week after that; none
    older than ``max_age`` (None: weekly ones are kept for ever)."""

    keep_all: dt.timedelta = dt.timedelta(days=1)
    hourly: dt.timedelta = dt.timedelta(days=2)
    daily: dt.timedelta = dt.timedelta(days=30)
    max_age: dt.timedelta | None = None

    @classmethod
    def from_config(cls, cfg: Mapping) -> "Retention":
        r = cfg["retention"]
        return cls(dt.timedelta(seconds=r["keep_all_seconds"]), dt.timedelta(seconds=r["hourly_seconds"]),
                   dt.timedelta(seconds=r["daily_seconds"]),
                   dt.timedelta(days=r["max_age_days"]) if r["max_age_days"] else None)


_EPOCH = dt.datetime(1970, 1, 5)  # a Monday: weeks start on Mondays


def plan_thinning(versions: Iterable[tuple[int, dt.datetime]], current_id: int | None,
                  at: dt.datetime, policy: Retention = Retention()) -> list[int]:
    """Of one file's versions ``(id, created_at)``, the ids the policy no longer keeps.
    Pure. The current version is never among them. Buckets are fixed calendar hours, days
    and weeks (not relative to ``at``), so a version kept by one run is not dropped by the
    next merely because time moved on, only once it enters a coarser bucket."""
    seen: set[tuple[str, int]] = set()
    drop = []
    for vid, created in sorted(versions, key=lambda v: (v[1], v[0]), reverse=True):  # newest first
        if vid == current_id:
            continue
        age = at - created
        secs = int((created - _EPOCH).total_seconds())
        if age < policy.keep_all:
            continue
        if policy.max_age is not None and age >= policy.max_age:
            drop.append(vid)
            continue
        if age < policy.hourly:
            bucket = ("h", secs // 3600)
        elif age < policy.daily:
            bucket = ("d", secs // 86400)
        else:
            bucket = ("w", secs // (7 * 86400))
        if bucket in seen:
            drop.append(vid)
        else:
            seen.add(bucket)
    return sorted(drop)
