"""The metadata the maintenance jobs read, as SQLAlchemy Core selects over :mod:`storage.models`.

The jobs never hold SQL text: each extract here is a ``Select`` whose result columns are named
as the job's DataFrame schema names them. The jobs' context runs it through the engine (rows to
Arrow) or compiles it with the engine's dialect, binds inlined, for Spark's JDBC reader
(:func:`to_sql`). States are the enums of :mod:`storage.states`, so no state literal is written
twice.
"""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from .models import Block, FileVersion, JobRun, Node, Pack, TrafficDaily, UploadPin, UploadSession, User, VersionBlock
from .states import NodeKind, PackState, UploadState


def to_sql(select: sa.Select, dialect: Dialect) -> str:
    """``select`` as one SQL string for ``dialect``, its bound values written inline (the form
    a JDBC reader takes as a subquery)."""
    return str(select.compile(dialect=dialect, compile_kwargs={"literal_binds": True}))


def partition_bounds(table: str, column: str) -> sa.Select:
    """The lowest and highest value of ``table.column``: the range a partitioned read splits."""
    col = Pack.metadata.tables[table].c[column]
    return sa.select(sa.func.min(col), sa.func.max(col))


# ---- packs -----------------------------------------------------------------------------------

def packs(*columns: str, states: tuple[PackState, ...] = (PackState.SEALED,)) -> sa.Select:
    """``columns`` of the packs in one of ``states`` (sealed ones by default)."""
    where = Pack.state == states[0] if len(states) == 1 else Pack.state.in_(states)
    return sa.select(*(getattr(Pack, c) for c in columns)).where(where)


def packs_not_deleted(*columns: str) -> sa.Select:
    """``columns`` of every pack whose file still exists (all but ``deleted``)."""
    return sa.select(*(getattr(Pack, c) for c in columns)).where(Pack.state != PackState.DELETED)


# ---- blocks and refs -------------------------------------------------------------------------

def blocks(*columns: str) -> sa.Select:
    """``columns`` of every block in the index."""
    return sa.select(*(getattr(Block, c) for c in columns))


def refs(*columns: str) -> sa.Select:
    """``columns`` of every ref (``version_blocks`` row)."""
    return sa.select(*(getattr(VersionBlock, c) for c in columns))


def referenced_blocks() -> sa.Select:
    """Each block id some version refers to, once."""
    return sa.select(VersionBlock.block_id).distinct()


def pinned_blocks(*, distinct: bool = False) -> sa.Select:
    """The block ids an active upload session pins (GC must keep them)."""
    q = (sa.select(UploadPin.block_id).join(UploadSession, UploadSession.id == UploadPin.session_id)
         .where(UploadSession.state == UploadState.ACTIVE))
    return q.distinct() if distinct else q


# ---- files, users, sessions ------------------------------------------------------------------

def versions(*columns: str) -> sa.Select:
    """``columns`` of every file version."""
    return sa.select(*(getattr(FileVersion, c) for c in columns))


def version_owners(*columns: str) -> sa.Select:
    """Every file version's ``owner_id`` (its node's owner) with its ``columns``."""
    return (sa.select(Node.owner_id, *(getattr(FileVersion, c) for c in columns))
            .join(Node, Node.id == FileVersion.node_id))


def current_files() -> sa.Select:
    """Each file's owner, its current version's size, and ``trashed`` (1 if in the trash, else 0)."""
    trashed = sa.case((Node.deleted_at.is_(None), 0), else_=1).label("trashed")
    return (sa.select(Node.owner_id, FileVersion.size, trashed)
            .join(FileVersion, FileVersion.id == Node.current_version_id)
            .where(Node.kind == NodeKind.FILE))


def users(*columns: str) -> sa.Select:
    """``columns`` of every user."""
    return sa.select(*(getattr(User, c) for c in columns))


def active_reservations() -> sa.Select:
    """What each active upload session holds in its user's ``pending_bytes``."""
    return (sa.select(UploadSession.user_id, UploadSession.reserved_bytes)
            .where(UploadSession.state == UploadState.ACTIVE))


# ---- the report's history ----------------------------------------------------------------------

def job_runs_since(since: dt.datetime) -> sa.Select:
    """The job runs started at or after ``since``, stats as stored (JSON text)."""
    return (sa.select(JobRun.id, JobRun.job, JobRun.status, JobRun.started_at, JobRun.finished_at, JobRun.stats)
            .where(JobRun.started_at >= since))


def traffic_since(day: dt.date) -> sa.Select:
    """The per-user traffic of each day from ``day`` on, the day as text (``YYYY-MM-DD``)."""
    return (sa.select(sa.cast(TrafficDaily.day, sa.String).label("day"), TrafficDaily.user_id,
                      TrafficDaily.uploads, TrafficDaily.downloads, TrafficDaily.bytes_in, TrafficDaily.bytes_out)
            .where(TrafficDaily.day >= day))
