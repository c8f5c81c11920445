from __future__ import annotations

import datetime as dt

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint, types
from sqlalchemy.dialects import mysql
from sqlalchemy.orm import Mapped, mapped_column

from .base import Base, BigId, BlockId, Timestamp, utcnow

#: Longest stored path. ASCII on MySQL so the whole column fits InnoDB's 3,072-byte index key;
#: ``limits.max_depth`` stops trees well before ids this long fill it.
PATH_MAX = 3072
NodePath = String(PATH_MAX).with_variant(mysql.VARCHAR(PATH_MAX, charset="ascii", collation="ascii_bin"),
                                         "mysql", "mariadb")
#: A node's name. Compared code point by code point on every engine: MySQL's default
#: collations would make ``Report`` equal ``report`` and ``café`` equal ``cafe`` in the
#: unique key, where SQLite tells them apart. Case is compared by ``live_fold`` instead.
NodeName = String(255).with_variant(mysql.VARCHAR(255, charset="utf8mb4", collation="utf8mb4_bin"),
                                    "mysql", "mariadb")
#: :func:`storage.names.fold_key` of a name: 64 hex digits.
FoldKey = String(64).with_variant(mysql.VARCHAR(64, charset="ascii", collation="ascii_bin"), "mysql", "mariadb")


class Node(Base):
    """A file or a folder. ``live_name`` equals ``name`` while the node is live and is NULL in
    the trash: the unique key on (parent_id, live_name) keeps live names unique within a
    folder on every engine (NULLs never collide), with no partial index needed.

    ``live_fold`` is :func:`storage.names.fold_key` of the live name, NULL in the trash: its
    unique key keeps two live names equal under case folding out of one folder. It is also
    NULL on a live node whose name clashed that way with an older sibling's before the rule
    (both stay; fsck reports them), and on a root."""

    __tablename__ = "nodes"
    __table_args__ = (
        UniqueConstraint("parent_id", "live_name"),
        Index("uq_nodes_parent_id_live_fold", "parent_id", "live_fold", unique=True),
        Index("ix_nodes_owner_deleted", "owner_id", "deleted_at"),
        Index("ix_nodes_path", "path"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("nodes.id"), nullable=True)
    kind: Mapped[str] = mapped_column(String(8))  # a NodeKind
    name: Mapped[str] = mapped_column(NodeName)
    live_name: Mapped[str | None] = mapped_column(NodeName, nullable=True)
    live_fold: Mapped[str | None] = mapped_column(FoldKey, nullable=True)
    current_version_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    deleted_at: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)
    # The node the user deleted that took this one to the trash (itself for the top one):
    # restoring that node restores exactly what went with it.
    trashed_with: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # NULL only on rows written by code that predates paths; fsck reports them
    path: Mapped[str | None] = mapped_column(NodePath, nullable=True)
    # How many times this node or anything below it has changed: a folder's WebDAV etag is
    # its id and this count (a count, not a time: two changes within a clock tick differ)
    changes: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class FileVersion(Base):
    __tablename__ = "file_versions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("nodes.id"), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    sha256: Mapped[bytes] = mapped_column(types.BINARY(32))
    created_at: Mapped[dt.datetime] = mapped_column(Timestamp, default=utcnow)
    created_by: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # Its number of blocks as written, so the quota charge (storage.quota.version_charge) needs
    # no join; dedup_scan may later point its refs at an identical file's blocks without
    # changing what its owner is charged.
    nblocks: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    # The file's modification time as the uploading client gave it (X-OC-Mtime); NULL when it
    # gave none, and the version's created_at stands for it
    mtime: Mapped[dt.datetime | None] = mapped_column(Timestamp, nullable=True)


class VersionBlock(Base):
    """A ref: the ``seq``-th block of a version, starting at byte ``offset`` of the file."""

    __tablename__ = "version_blocks"

    version_id: Mapped[int] = mapped_column(ForeignKey("file_versions.id", ondelete="CASCADE"),
                                            primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    block_id: Mapped[bytes] = mapped_column(BlockId, index=True)
    offset: Mapped[int] = mapped_column(BigInteger)
