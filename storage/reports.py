"""Report snapshots: what the ``report`` job saves and what the admin API, the dashboard and
``blockdrive report`` read. One JSON shape for all three (:func:`snapshot_json`), so they
cannot disagree.

A snapshot is a ``report_snapshots`` row (headline figures as JSON, the bounded detail lists
as JSON) with its ``report_users`` (top users) and ``report_tiers`` rows, written in one
transaction after its Parquet copy is durable on the block backend.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Iterable

import sqlalchemy as sa
from sqlalchemy.orm import Session, sessionmaker

from .clock import now
from .models import ReportSnapshot, ReportTier, ReportUser

USER_FIELDS = ("user_id", "email", "files", "logical_bytes", "trash_bytes", "all_versions_bytes", "used_bytes",
               "quota_bytes")
TIER_FIELDS = ("tier", "packs", "pack_bytes", "stored_bytes", "retiring_packs", "retiring_bytes")


def save_snapshot(sm: sessionmaker[Session], headline: dict, top_users: Iterable[dict], tiers: Iterable[dict],
                  detail: dict, *, taken_at: dt.datetime | None = None, parquet_url: str | None = None,
                  job_run_id: int | None = None) -> int:
    with sm() as s, s.begin():
        snap = ReportSnapshot(taken_at=taken_at or now(), headline=json.dumps(headline, sort_keys=True),
                              detail=json.dumps(detail, sort_keys=True, default=str), parquet_url=parquet_url,
                              job_run_id=job_run_id)
        s.add(snap)
        s.flush()
        for rank, u in enumerate(top_users, 1):
            s.add(ReportUser(snapshot_id=snap.id, rank=rank, **{k: u[k] for k in USER_FIELDS}))
        for t in tiers:
            s.add(ReportTier(snapshot_id=snap.id, **{k: t[k] for k in TIER_FIELDS}))
        return snap.id


def _iso(t: dt.datetime) -> str:
    return t.isoformat() + "Z"


def snapshot_json(s: Session, snap: ReportSnapshot) -> dict:
    users = s.execute(sa.select(ReportUser).where(ReportUser.snapshot_id == snap.id)
                      .order_by(ReportUser.rank)).scalars()
    tiers = s.execute(sa.select(ReportTier).where(ReportTier.snapshot_id == snap.id)
                      .order_by(ReportTier.tier)).scalars()
    detail = json.loads(snap.detail or "{}")
    return {"id": snap.id, "taken_at": _iso(snap.taken_at), "job_run_id": snap.job_run_id,
            "parquet_url": snap.parquet_url, "headline": json.loads(snap.headline),
            "tiers": [{k: getattr(t, k) for k in TIER_FIELDS} for t in tiers],
            "top_users": [{"rank": u.rank, **{k: getattr(u, k) for k in USER_FIELDS}} for u in users],
            "traffic": detail.get("traffic", []), "jobs": detail.get("jobs", []),
            "job_summary": detail.get("job_summary", [])}


def latest(sm: sessionmaker[Session]) -> dict | None:
    """The newest snapshot in full, or None before the first report run."""
    with sm() as s:
        snap = s.execute(sa.select(ReportSnapshot).order_by(ReportSnapshot.taken_at.desc(),
                                                            ReportSnapshot.id.desc()).limit(1)).scalar()
        return snapshot_json(s, snap) if snap is not None else None


def history(sm: sessionmaker[Session], since: dt.datetime | None = None, limit: int = 1000) -> list[dict]:
    """Headlines and tier splits of the snapshots taken at or after ``since``, oldest first:
    the series the trend charts plot."""
    with sm() as s:
        q = sa.select(ReportSnapshot).order_by(ReportSnapshot.taken_at.desc(), ReportSnapshot.id.desc()).limit(limit)
        if since is not None:
            q = q.where(ReportSnapshot.taken_at >= since)
        snaps = list(s.execute(q).scalars())[::-1]
        tiers: dict[int, list] = {}
        if snaps:
            for t in s.execute(sa.select(ReportTier).where(ReportTier.snapshot_id.in_([x.id for x in snaps]))
                               .order_by(ReportTier.tier)).scalars():
                tiers.setdefault(t.snapshot_id, []).append({k: getattr(t, k) for k in TIER_FIELDS})
        return [{"id": x.id, "taken_at": _iso(x.taken_at), "headline": json.loads(x.headline),
                 "tiers": tiers.get(x.id, [])} for x in snaps]


# ---- admin access ---------------------------------------------------------------------------

def admin_for_token_hash(sm: sessionmaker[Session], digest: bytes):
    """The admin user owning the live API token whose SHA-256 is ``digest``, else None. The
    dashboard's session keeps only this digest, so revoking the token (or the admin flag)
    ends the session at its next request."""
    from .models import ApiToken, User
    with sm() as s:
        row = s.execute(sa.select(User, ApiToken).join(ApiToken, ApiToken.user_id == User.id)
                        .where(ApiToken.token_hash == digest)).first()
    if row is None or not row.User.is_admin:
        return None
    if row.ApiToken.expires_at is not None and row.ApiToken.expires_at < now():
        return None
    return row.User
