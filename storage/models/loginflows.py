"""Nextcloud's Login Flow v2 in progress: an app waiting for its user to sign in in a browser."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import String, types
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, Timestamp


class LoginFlow(Base):
    """One flow, from the app's start to its successful poll (then the row is deleted).

    Both secrets are kept only as SHA-256 digests: ``login_hash`` of the id in the browser's
    URL, ``poll_hash`` of the token the app polls with. Once granted, ``app_password`` holds
    the new API token until the app's first poll takes it, deleting the row (see
    :mod:`storage.loginflows` for why it is kept this way)."""

    __tablename__ = "login_flows"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    login_hash: Mapped[bytes] = mapped_column(types.BINARY(32), unique=True)
    poll_hash: Mapped[bytes] = mapped_column(types.BINARY(32), unique=True)
    user_agent: Mapped[str] = mapped_column(String(255), default="")
    # The starting client's address: how many flows one address may hold open is bounded.
    address: Mapped[str] = mapped_column(String(45), default="", index=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp)
    expires_at: Mapped[dt.datetime] = mapped_column(Timestamp, index=True)
    login_name: Mapped[str | None] = mapped_column(String(320), nullable=True)
    app_password: Mapped[str | None] = mapped_column(String(255), nullable=True)
