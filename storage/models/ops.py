"""Operational tables: upload sessions and their pinned blocks, job runs, leader locks."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ..states import JobStatus, UploadKind, UploadState
from .base import Base, BigId, BlockId, Timestamp, utcnow


class UploadSession(Base):
    __tablename__ = "upload_sessions"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    parent_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    node_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    offset: Mapped[int] = mapped_column(BigInteger, default=0)
    length: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    state: Mapped[str] = mapped_column(String(10), default=UploadState.ACTIVE)  # an UploadState
    # an UploadKind: tus or chunked, a resumable upload of one file; blocks, delta-sync block uploads
    kind: Mapped[str] = mapped_column(String(8), default=UploadKind.TUS, server_default=UploadKind.TUS.value)
    meta: Mapped[str] = mapped_column(Text, default="{}")  # JSON: chunker tail, hash state, ...
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)
    # What this session holds in its user's pending_bytes: a tus upload's declared length, or
    # the charge of every block a block session pinned. Released once, when the session ends.
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UploadPin(Base):
    """A block an unfinished upload session holds: GC keeps it until the session ends."""

    __tablename__ = "upload_pins"

    session_id: Mapped[str] = mapped_column(ForeignKey("upload_sessions.id", ondelete="CASCADE"),
                                            primary_key=True)
    block_id: Mapped[bytes] = mapped_column(BlockId, primary_key=True, index=True)


class UploadChunk(Base):
    """The ``seq``-th block cut so far from a resumable upload, at byte ``offset``: the version
    the upload becomes, in order. Pinned through ``upload_pins`` until the session ends."""

    __tablename__ = "upload_chunks"

    session_id: Mapped[str] = mapped_column(ForeignKey("upload_sessions.id", ondelete="CASCADE"),
                                            primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_id: Mapped[bytes] = mapped_column(BlockId)
    offset: Mapped[int] = mapped_column(BigInteger)
    size: Mapped[int] = mapped_column(Integer)


class RateLimit(Base):
    """Failed attempts against one key (a login email, a link) in the current window; shared
    by every server process through the database."""

    __tablename__ = "rate_limits"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer, default=0)
    window_start: Mapped[dt.datetime] = mapped_column(Timestamp)
    blocked_until: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class JobRun(Base):
    __tablename__ = "job_runs"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    job: Mapped[str] = mapped_column(String(40), index=True)
    started_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    status: Mapped[str] = mapped_column(String(10), default=JobStatus.RUNNING)  # a JobStatus
    stats: Mapped[str] = mapped_column(Text, default="{}")


class Lock(Base):
    """A named lease (the scheduler's leadership): held by ``holder`` until ``expires_at``."""

    __tablename__ = "locks"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp)


class Server(Base):
    """An API server process: its heartbeat, written each time its readiness is checked
    (storage/servers.py)."""

    __tablename__ = "servers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    started_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    seen_at: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)
