"""Engines, sessions and schema migrations (Alembic) for SQLite and MySQL/MariaDB."""

from __future__ import annotations

import contextlib
import fcntl
import functools
import logging
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Callable, Iterator, TypeVar

from sqlalchemy import bindparam, create_engine, event, inspect, select, text
from sqlalchemy.engine import CursorResult, Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.orm.util import identity_key
from sqlalchemy.sql.expression import Executable

from .config import mask_url
from .errors import ConfigError, RetryLater

MIGRATIONS = Path(__file__).parent / "migrations"
# MySQL/MariaDB error numbers of a transaction that lost a race and may simply run again.
RETRYABLE_MYSQL_ERRORS = (1213, 1205)  # deadlock victim, lock wait timeout

T = TypeVar("T")
M = TypeVar("M")
log = logging.getLogger(__name__)


SQLITE_WAIT_SECONDS = 30  # how long a writer waits for SQLite's write lock before "database is locked"
_GATE_HELD = "blockdrive_writer_gate"


class WriterGate:
    """SQLite's writers, of every thread and process, take turns on a lock that hands over at
    once.

    SQLite has one write lock per database. A connection that finds it taken polls for it,
    sleeping between tries (1, 2, 5, 10, ... up to 100 ms), so under many writers the lock is
    often free while every waiter sleeps: two server processes putting small files for 16
    clients kept the two cores a third idle. Here a write transaction first takes a lock of
    its process (a thread that waits on it wakes when the writer before it ends) and then an
    exclusive ``flock`` of a file beside the database (``<db>.writers``), which the kernel
    hands to the next process as soon as it is released. Only then does it ``BEGIN
    IMMEDIATE``, which finds SQLite's lock free unless a program without the gate holds it.

    It adds no failure of its own: a writer that cannot pass within
    :data:`SQLITE_WAIT_SECONDS` goes on to SQLite's own wait, as it would without the gate.
    The gate is held from ``BEGIN IMMEDIATE`` until the connection's commit or rollback has
    returned (the dialect's, which the pool's reset of a returned connection also calls), or
    the connection is checked in or invalidated. A process that dies lets go of the file's
    lock with it; a forked child starts with a gate of its own (locks and file opened afresh)."""

    SUFFIX = ".writers"
    POLL_SECONDS = 0.0005  # between tries for another process's file lock

    def __init__(self, path: Path, wait_seconds: float = SQLITE_WAIT_SECONDS):
        self.path, self.wait_seconds = path, wait_seconds
        self._reset()
        _GATES.add(self)

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._fd: int | None = None

    def _file(self) -> int:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        return self._fd

    def enter(self, info: dict) -> None:
        """Wait for this connection's turn (``info``: the pool's dict of the connection)."""
        if info.get(_GATE_HELD):
            return
        deadline = time.monotonic() + self.wait_seconds
        if not self._lock.acquire(timeout=self.wait_seconds):
            return
        try:
            fd = self._file()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self._lock.release()
                        return
                    time.sleep(self.POLL_SECONDS)
        except BaseException:
            self._lock.release()
            raise
        info[_GATE_HELD] = True

    def leave(self, info: dict) -> None:
        if info.pop(_GATE_HELD, False):
            try:
                fcntl.flock(self._file(), fcntl.LOCK_UN)
            finally:
                self._lock.release()

    def attach(self, engine: Engine) -> None:
        """Leave the gate whenever one of ``engine``'s connections ends its transaction."""
        dialect = engine.dialect
        for name in ("do_commit", "do_rollback"):
            def ended(dbapi_conn, _end=getattr(dialect, name)):
                try:
                    _end(dbapi_conn)
                finally:
                    self.leave(_info(dbapi_conn))
            setattr(dialect, name, ended)
        event.listen(engine.pool, "checkin", lambda _c, record: record is not None and self.leave(record.info))
        event.listen(engine.pool, "invalidate", lambda _c, record, _e: self.leave(record.info))


_GATES: weakref.WeakSet[WriterGate] = weakref.WeakSet()
os.register_at_fork(after_in_child=lambda: [g._reset() for g in list(_GATES)])


def _info(conn) -> dict:
    """The pool's per-connection dict of ``conn`` (none for the engine's first probe)."""
    try:
        return conn.info
    except NotImplementedError:
        return {}


#: Connections a process keeps open (``database.pool_size``). SQLAlchemy's default, 5, is fewer
#: than the requests a server thread pool runs at once: each request past the fifth opened a
#: connection of its own and closed it when done (about one connect per put with 16 in flight),
#: and a new connection costs its PRAGMAs, SQLite's schema read, or MariaDB's handshake.
POOL_SIZE = 16


def make_engine(url: str, connect_timeout: int = 10, pool_size: int = POOL_SIZE) -> Engine:
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(f"not a database URL: {mask_url(url)!r}") from None
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            Path(db).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": SQLITE_WAIT_SECONDS},
                               **({"pool_size": pool_size} if db and db != ":memory:" else {}))
        gate = WriterGate(Path(db).expanduser().with_name(Path(db).name + WriterGate.SUFFIX)) \
            if db and db != ":memory:" else None

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
            if conn.get_execution_options().get(READ_ONLY):
                conn.exec_driver_sql("BEGIN")
                return
            if gate is not None:
                gate.enter(conn.connection.info)  # the writers of every process queue here first
            try:
                conn.exec_driver_sql("BEGIN IMMEDIATE")
            except BaseException:
                if gate is not None:
                    gate.leave(conn.connection.info)
                raise

        if gate is not None:
            gate.attach(engine)

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
            url, pool_pre_ping=True, pool_recycle=1800, isolation_level="READ COMMITTED", pool_size=pool_size,
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


class ReplicaReads:
    """Transactions that only read, sent to a replica of the primary when that cannot make them
    stale, else to the primary.

    Before each read the primary's binary-log position is asked (``@@gtid_binlog_pos``, one
    cheap query) and the replica waits up to ``wait_ms`` until it has applied that much
    (``MASTER_GTID_WAIT``). A reader therefore sees at least everything committed before its
    read began, its own writes included. When no replica is configured, when it lags beyond
    the bound, or when it does not answer (then it is left alone for ``retry_seconds``), the
    read runs on the primary: a replica's trouble is never the reader's error.

    ``listeners`` are called with ``(target, reason)`` for every read: target ``replica`` or
    ``primary``, reason ``caught_up``, ``no_replica``, ``no_position`` (the primary has no
    binary-log position to wait for), ``lagging``, ``down`` or ``failed`` (the replica failed
    during the read, which then ran again on the primary). Only MariaDB
    primaries and replicas are supported (their GTIDs)."""

    def __init__(self, primary: sessionmaker[Session], replica_url: str = "", wait_ms: int = 50,
                 retry_seconds: float = 2.0):
        self.primary = read_only_sessions(primary)
        self.wait_seconds = max(wait_ms, 0) / 1000
        self.retry_seconds = retry_seconds
        self.listeners: list[Callable[[str, str], None]] = []
        self.engine: Engine | None = None
        self.replica: sessionmaker[Session] | None = None
        self._down_until = 0.0
        self._lock = threading.Lock()
        if replica_url:
            # a short connect timeout: a replica that hangs must cost a reader little before it is skipped
            self.engine = make_engine(replica_url, connect_timeout=2)
            if primary.kw["bind"].dialect.name != "mysql" or self.engine.dialect.name != "mysql":
                self.engine.dispose()
                raise ConfigError("database.replica_url needs MariaDB for both the primary and the replica "
                                  "(mysql+pymysql://...)")
            self.replica = read_only_sessions(make_sessionmaker(self.engine))

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()

    def run(self, fn: Callable[[sessionmaker[Session]], T]) -> T:
        """``fn(sessions)`` with read-only sessions on the replica when it has caught up with the
        primary, else on the primary. ``fn`` must only read: after a replica failure it runs
        again, on the primary."""
        if self.replica is None:
            return self._on_primary(fn, "no_replica")
        if time.monotonic() < self._down_until:
            return self._on_primary(fn, "down")
        with self.primary() as s:
            position = s.execute(text("SELECT @@gtid_binlog_pos")).scalar() or ""
        if not position:
            # no binary log on the primary (or nothing in it yet): nothing to wait for, so
            # nothing proves the replica current
            return self._on_primary(fn, "no_position")
        try:
            with self.replica() as s:
                reached = s.execute(text("SELECT MASTER_GTID_WAIT(:pos, :wait)"),
                                    {"pos": position, "wait": self.wait_seconds}).scalar()
        except DBAPIError as exc:
            self._mark_down(exc)
            return self._on_primary(fn, "down")
        if reached != 0:
            return self._on_primary(fn, "lagging")
        try:
            result = fn(self.replica)
        except DBAPIError as exc:
            self._mark_down(exc)
            return self._on_primary(fn, "failed")
        self._count("replica", "caught_up")
        return result

    def _on_primary(self, fn: Callable[[sessionmaker[Session]], T], reason: str) -> T:
        result = fn(self.primary)
        self._count("primary", reason)
        return result

    def _mark_down(self, exc: DBAPIError) -> None:
        with self._lock:
            first = time.monotonic() >= self._down_until
            self._down_until = time.monotonic() + self.retry_seconds
        if first:
            log.warning("database replica %s not answering (%s); reading from the primary for %.0f s",
                        mask_url(str(self.engine.url)), getattr(exc, "orig", exc), self.retry_seconds)

    def _count(self, target: str, reason: str) -> None:
        for listener in self.listeners:
            listener(target, reason)


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


def execute_core(s: Session, stmt: Executable, params: dict | list[dict] | None = None) -> CursorResult:
    """Run ``stmt``, a statement built once, in ``s``'s transaction as :meth:`Session.execute`
    would (pending objects are flushed first), but on its connection: the ORM's path costs more
    than the statement (a one-row UPDATE on SQLite: 0.19-0.28 ms through the session,
    0.07-0.10 ms on the connection). Only for statements no object in the session has to see
    the effect of (``synchronize_session=False`` or a plain table) and for selects of columns,
    not of ORM entities."""
    s.flush()
    return s.connection().execute(stmt, params)


@functools.cache
def _by_id(model) -> Executable:
    return select(model).where(model.id == bindparam("pk"))


def get_row(s: Session, model: type[M], pk: int) -> M | None:
    """``s.get(model, pk)`` for a model keyed by ``id``, at less cost when the row is not in
    the session yet (the case of almost every request): one select built once, where
    :meth:`Session.get` builds its lookup again for every miss (0.24 against 0.37 ms on
    SQLite). A row the session holds, loaded or expired, is still :meth:`Session.get`'s, so
    what comes back, and when it is read again, is what ``s.get`` gives."""
    if identity_key(model, pk) in s.identity_map:
        return s.get(model, pk)
    return s.execute(_by_id(model), {"pk": pk}).scalar_one_or_none()


def rows_by_id(s: Session, model: type[M], pks: list[int]) -> dict[int, M]:
    """:func:`get_row` of each of ``pks`` that exists, by id: a row the session holds is the
    session's, the others are read in one select per 500."""
    if len(pks) == 1:
        row = get_row(s, model, pks[0])
        return {} if row is None else {pks[0]: row}
    out = {pk: s.get(model, pk) for pk in pks if identity_key(model, pk) in s.identity_map}
    rest = [pk for pk in pks if pk not in out]
    for i in range(0, len(rest), 500):
        out.update((row.id, row) for row in s.execute(_by_ids(model), {"pks": rest[i:i + 500]}).scalars())
    return {pk: row for pk, row in out.items() if row is not None}


@functools.cache
def _by_ids(model) -> Executable:
    return select(model).where(model.id.in_(bindparam("pks", expanding=True)))


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
