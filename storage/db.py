"""Engines, sessions and schema migrations (Alembic) for SQLite and MySQL/MariaDB."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import create_engine, event, inspect, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from .config import mask_url
from .errors import ConfigError, RetryLater

MIGRATIONS = Path(__file__).parent / "migrations"
# MySQL/MariaDB error numbers of a transaction that lost a race and may simply run again.
RETRYABLE_MYSQL_ERRORS = (1213, 1205)  # deadlock victim, lock wait timeout

T = TypeVar("T")


def make_engine(url: str, connect_timeout: int = 10) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {mask_url(url)!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):
            # WAL lets readers run beside the writer; FULL sync makes every commit durable;
            # autocommit is switched off in the driver so SQLAlchemy's BEGIN is the one used.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=FULL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.close()

        @event.listens_for(engine, "begin")
        def _sqlite_begin(conn):
            # IMMEDIATE takes the write lock up front, so two writers queue instead of failing
            # with "database is locked" halfway through a transaction. A session that only
            # reads (read_only_sessions) begins DEFERRED and reads beside the writer (WAL).
            conn.exec_driver_sql("BEGIN" if conn.get_execution_options().get(READ_ONLY) else "BEGIN IMMEDIATE")

        @event.listens_for(engine, "before_cursor_execute")
        def _sqlite_read_only(conn, _cursor, statement, _params, _context, _many):
            if conn.get_execution_options().get(READ_ONLY):
                verb = statement.lstrip().split(None, 1)[0].upper()
                if verb not in ("BEGIN", "SELECT", "WITH"):
                    raise ReadOnlySession(f"a read-only session was asked to run {verb}")

        return engine
    if backend == "mysql":
        if parsed.get_driver_name() != "pymysql":
            raise ConfigError("MySQL URLs must use the pymysql driver: mysql+pymysql://user:pw@host/db")
        return create_engine(
            url, pool_pre_ping=True, pool_recycle=1800, isolation_level="READ COMMITTED",
            connect_args={"connect_timeout": connect_timeout, "read_timeout": 300,
                          "write_timeout": 300, "charset": "utf8mb4"},
        )
    raise ConfigError(f"unsupported database {backend!r}: use sqlite:/// or mysql+pymysql://")


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


READ_ONLY = "blockdrive_read_only"


class ReadOnlySession(RuntimeError):
    """A statement that writes, sent through a session of :func:`read_only_sessions`."""


def read_only_sessions(sm: sessionmaker[Session]) -> sessionmaker[Session]:
    """Sessions on ``sm``'s engine for transactions that only read. On SQLite they begin
    DEFERRED instead of IMMEDIATE, so they do not queue behind the writer for its lock (in WAL
    mode a reader sees the last commit and never blocks one), and a write through one raises
    :class:`ReadOnlySession`; elsewhere they are plain sessions."""
    return sessionmaker(sm.kw["bind"].execution_options(**{READ_ONLY: True}), expire_on_commit=False)


def _alembic_config(engine: Engine):
    from alembic.config import Config as AlembicConfig
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> str:
    """Create or upgrade the schema to the newest revision; returns that revision."""
    from alembic import command
    try:
        with engine.begin() as conn:
            cfg = _alembic_config(engine)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")
    except OperationalError as exc:
        raise ConfigError(f"cannot reach the database {mask_url(str(engine.url))}: {exc.orig}") from None
    return head_revision()


def head_revision() -> str:
    from alembic.script import ScriptDirectory
    return ScriptDirectory.from_config(_alembic_config(None)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    from alembic.runtime.migration import MigrationContext
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def check_ready(engine: Engine) -> None:
    """Raise ConfigError unless the database answers and its schema is current."""
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        rev = current_revision(engine)
    except SQLAlchemyError as exc:
        raise ConfigError(f"cannot reach the database {mask_url(str(engine.url))}: "
                          f"{getattr(exc, 'orig', exc)}") from None
    head = head_revision()
    if rev != head:
        raise ConfigError(f"database schema is at {rev or 'nothing'}, expected {head}: "
                          "run `blockdrive init`")


def table_names(engine: Engine) -> list[str]:
    return inspect(engine).get_table_names()


@contextlib.contextmanager
def transaction(sm: sessionmaker[Session]) -> Iterator[Session]:
    """One unit of work: commit on success, roll back on any error."""
    with sm() as session, session.begin():
        yield session


def run_tx(sm: sessionmaker[Session], fn: Callable[[Session], T], attempts: int = 4) -> T:
    """Run ``fn`` in one transaction, retrying on the races a retry resolves: a concurrent
    insert of the same row (a unique-key clash), a deadlock victim, a lock wait timeout.
    The last attempt's error is raised as is; ``attempts=1`` runs ``fn`` once."""
    for attempt in range(attempts):
        try:
            with sm() as s, s.begin():
                return fn(s)
        except IntegrityError:
            if attempt == attempts - 1:
                raise
        except OperationalError as exc:
            code = getattr(exc.orig, "args", [None])[0]
            if code not in RETRYABLE_MYSQL_ERRORS or attempt == attempts - 1:
                raise
    raise RetryLater("too much contention; retry")
