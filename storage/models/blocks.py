from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Integer, SmallInteger, String
from sqlalchemy.orm import Mapped, mapped_column

from ..states import PackState
from .base import Base, BlockId, Timestamp, utcnow


class Pack(Base):
    """A pack file. ``open``: being written, or written but not yet committed (a crash leaves
    it so; GC reclaims it after the grace period). ``sealed``: committed and readable.
    ``retiring``: superseded by compaction, deleted after the grace period. ``deleted``: gone."""

    __tablename__ = "packs"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # uuid hex
    url: Mapped[str] = mapped_column(String(1024))
    tier: Mapped[str] = mapped_column(String(8))  # a Tier
    state: Mapped[str] = mapped_column(String(10), default=PackState.OPEN, index=True)
    size: Mapped[int] = mapped_column(BigInteger, default=0)
    live_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    sealed_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    last_read_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    checksum: Mapped[str | None] = mapped_column(String(64), nullable=True)  # crc32c of the file
    # When the pack started retiring: its file is deleted a grace period after this.
    retired_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class Block(Base):
    __tablename__ = "blocks"

    id: Mapped[bytes] = mapped_column(BlockId, primary_key=True)  # SHA-256 of the raw bytes
    size: Mapped[int] = mapped_column(Integer)
    stored_size: Mapped[int] = mapped_column(Integer)
    codec: Mapped[int] = mapped_column(SmallInteger)
    pack_id: Mapped[str] = mapped_column(ForeignKey("packs.id"), index=True)
    offset_in_pack: Mapped[int] = mapped_column(BigInteger)
    refcount: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    gc_marked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True, index=True)
