"""What WebDAV keeps beside the tree: dead properties (PROPPATCH) and locks (LOCK), both in
the database so every worker and every server sees the same ones."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, Timestamp
from .nodes import NodePath


class DavProp(Base):
    """A dead property of a node: its name in Clark notation (``{ns}local``) and its value
    as the XML the client sent. It follows the node through moves and the trash."""

    __tablename__ = "dav_props"

    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True)
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class DavLock(Base):
    """A WebDAV lock on ``root``: the locked resource's URL in the id namespace (the ids of
    the node and its ancestors, so a lock taken through a share is seen by the owner too).
    ``expires_at`` NULL is an infinite lock."""

    __tablename__ = "dav_locks"

    token: Mapped[str] = mapped_column(String(100), primary_key=True)
    root: Mapped[str] = mapped_column(NodePath, index=True)
    user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    principal: Mapped[str] = mapped_column(String(255), default="")
    scope: Mapped[str] = mapped_column(String(10))  # exclusive | shared
    kind: Mapped[str] = mapped_column(String(10), default="write")
    depth: Mapped[str] = mapped_column(String(10))  # "0" | "infinity"
    timeout: Mapped[int] = mapped_column(BigInteger)  # seconds asked for; -1 = infinite
    owner: Mapped[str] = mapped_column(Text, default="")  # the client's <owner> XML
    expires_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True, index=True)
