from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, types
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, Timestamp, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(String(255))
    plan: Mapped[str] = mapped_column(String(16), default="free")  # free | premium
    quota_bytes: Mapped[int] = mapped_column(BigInteger)
    used_bytes: Mapped[int] = mapped_column(BigInteger, default=0)
    is_admin: Mapped[bool] = mapped_column(Boolean, default=False)
    # The user's root folder; no foreign key, since nodes refer back to users.
    root_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Nodes the user owns below their root, live and trashed, kept in the transaction that
    # creates or purges them (limits.max_nodes_per_user); fsck recounts it.
    node_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    # Open tus reservations and uncommitted block-session bytes: promised, not yet kept, but
    # counted against the quota so that no door can take more than the quota at once.
    pending_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    # Set by an admin: a disabled account signs in by no door (storage.useradmin).
    disabled_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True, default=None)
    # Set when an admin deletes the account (disabled at the same moment): its files wait in its
    # trash for gc, which removes the row once nothing of the account is left.
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True, default=None, index=True)


class ApiToken(Base):
    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    # SHA-256 of the token: a database leak does not leak usable tokens.
    token_hash: Mapped[bytes] = mapped_column(types.BINARY(32), unique=True)
    name: Mapped[str] = mapped_column(String(100), default="")
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    # api (a bearer token) | session (an /admin cookie: its secret never leaves the server,
    # so it cannot be used as a bearer token). Rows from before kinds existed are api tokens.
    kind: Mapped[str] = mapped_column(String(16), default="api", server_default="api")
    # The token an admin session was opened with: logging that token out ends the session too.
    parent_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
