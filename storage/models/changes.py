"""The change journal's tables (see :mod:`storage.changes`)."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Index, String, types
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, Timestamp, utcnow
from .nodes import NodePath


class Change(Base):
    """One change, in the journal of the user it belongs to (``user_id``): the owner of the
    tree that changed, or the user who gained or lost a share. The node's fields are those it
    had right after the change, so an entry reads the same whatever happens to the node later."""

    __tablename__ = "changes"
    # (user_id, node_id): a reader's grants are found among their journal's rows of the shared nodes
    __table_args__ = (Index("ix_changes_user_seq", "user_id", "seq"), Index("ix_changes_user_node", "user_id", "node_id"))

    seq: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # a ChangeKind
    node_id: Mapped[int] = mapped_column(BigInteger)
    node_kind: Mapped[str] = mapped_column(String(8))  # a NodeKind
    owner_id: Mapped[int] = mapped_column(BigInteger)
    name: Mapped[str] = mapped_column(String(255))
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    path: Mapped[str | None] = mapped_column(NodePath, nullable=True)  # the node's ancestors (storage.tree)
    version_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    size: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # of that version
    sha256: Mapped[bytes | None] = mapped_column(types.BINARY(32), nullable=True)
    mtime: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    old_parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)  # a move's origin
    old_name: Mapped[str | None] = mapped_column(String(255), nullable=True)
    old_path: Mapped[str | None] = mapped_column(NodePath, nullable=True)
    role: Mapped[str | None] = mapped_column(String(8), nullable=True)  # a share's role, on share entries
    at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow, index=True)


class ChangeHorizon(Base):
    """How far a user's journal has been pruned: every entry of ``user_id`` up to ``seq`` is
    gone, so a cursor behind it must start over."""

    __tablename__ = "change_horizons"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
