"""Admin reports: per-day traffic records the API keeps, and the snapshots the ``report`` job
writes (one row per run, plus its detail rows), so trends can be plotted over time."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Date, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, Timestamp, utcnow


class TrafficDaily(Base):
    """Uploads and downloads per UTC day and user, upserted by the API after each transfer
    (storage/traffic.py). ``user_id`` is the user the traffic is charged to: the caller, or
    the owner of the node for a public-link download. No foreign key: a hot counter row
    should not take locks on ``users``."""

    __tablename__ = "traffic_daily"

    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    uploads: Mapped[int] = mapped_column(BigInteger, default=0)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_in: Mapped[int] = mapped_column(BigInteger, default=0)
    bytes_out: Mapped[int] = mapped_column(BigInteger, default=0)


class ReportSnapshot(Base):
    """One run of the ``report`` job. ``headline`` is the JSON object of headline figures;
    ``detail`` the JSON of the bounded lists (traffic per day, recent job runs);
    ``parquet_url`` where the full Parquet copy lives on the block backend."""

    __tablename__ = "report_snapshots"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    taken_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, index=True)
    job_run_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    headline: Mapped[str] = mapped_column(Text)
    detail: Mapped[str] = mapped_column(Text, default="{}")
    parquet_url: Mapped[str | None] = mapped_column(String(1024), nullable=True)


class ReportUser(Base):
    """A snapshot's top users by logical bytes (every user is in the Parquet copy)."""

    __tablename__ = "report_users"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("report_snapshots.id", ondelete="CASCADE"),
                                             primary_key=True)
    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    rank: Mapped[int] = mapped_column(Integer)
    email: Mapped[str] = mapped_column(String(320))
    files: Mapped[int] = mapped_column(BigInteger)
    logical_bytes: Mapped[int] = mapped_column(BigInteger)
    trash_bytes: Mapped[int] = mapped_column(BigInteger)
    all_versions_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger)
    quota_bytes: Mapped[int] = mapped_column(BigInteger)


class ReportTier(Base):
    """A snapshot's packs per tier (local | hdfs | s3)."""

    __tablename__ = "report_tiers"

    snapshot_id: Mapped[int] = mapped_column(ForeignKey("report_snapshots.id", ondelete="CASCADE"),
                                             primary_key=True)
    tier: Mapped[str] = mapped_column(String(8), primary_key=True)
    packs: Mapped[int] = mapped_column(BigInteger)
    pack_bytes: Mapped[int] = mapped_column(BigInteger)
    stored_bytes: Mapped[int] = mapped_column(BigInteger)
    retiring_packs: Mapped[int] = mapped_column(BigInteger)
    retiring_bytes: Mapped[int] = mapped_column(BigInteger)
