from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint, types
from sqlalchemy.orm import Mapped, mapped_column

from ..states import Role
from .base import Base, BigId, Timestamp, utcnow


class Share(Base):
    """A grant of ``role`` on a node to another user, inherited by everything below it."""

    __tablename__ = "shares"
    __table_args__ = (UniqueConstraint("node_id", "grantee_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    grantee_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    role: Mapped[str] = mapped_column(String(8))  # a Role of SHARE_ROLES
    granted_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class Invitation(Base):
    """A share granted to an email address that has no account yet. It becomes a
    :class:`Share` when an account with that address is created, whichever way."""

    __tablename__ = "invitations"
    __table_args__ = (UniqueConstraint("node_id", "email"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    # Cascade: purging a node (storage.drive) takes its invitations with it.
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), index=True)
    email: Mapped[str] = mapped_column(String(320), index=True)  # normalised, as users.email
    role: Mapped[str] = mapped_column(String(8))  # viewer | editor
    granted_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)


class Link(Base):
    """A public link. Only the SHA-256 of its token is stored."""

    __tablename__ = "links"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    token_hash: Mapped[bytes] = mapped_column(types.BINARY(32), unique=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    role: Mapped[str] = mapped_column(String(8), default=Role.VIEWER)
    created_by: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    revoked_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
