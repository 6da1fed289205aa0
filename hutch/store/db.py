"""Engines per backend, and the two kinds of transaction services use."""

from __future__ import annotations

import fcntl
import os
import sqlite3
import threading
from collections import namedtuple
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext, suppress
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import StaticPool
from sqlalchemy.sql import Executable, Select

from hutch.settings import DatabaseSettings

# Strict mode on (HUTCH-API.md §13.9): over-long values are refused, never truncated.
MYSQL_SQL_MODE = (
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"
    "NO_ENGINE_SUBSTITUTION"
)
SQLITE_BUSY_MS = 10_000
_MYSQL_IN_TRANS = 1  # SERVER_STATUS_IN_TRANS in the server's status flags
_PG_IDLE = 0  # libpq's PQTRANS_IDLE


class DatabaseFileChanged(Exception):
    """The SQLite file at the configured path is gone, or is another file now."""

    def __init__(self, path: str):
        super().__init__(f"database file {path} was removed or replaced")
        self.path = path


def _file_identity(path: str) -> tuple[int, int]:
    found = os.stat(path)
    return found.st_dev, found.st_ino


def create_db_engine(settings: DatabaseSettings, *, must_exist: bool = False) -> Engine:
    """An engine tuned for its backend: SQLite WAL + durable commits, strict MariaDB.

    ``must_exist``: a missing SQLite file is an error instead of a new empty
    database (the server's engine; ``hutch init`` creates the file).
    """
    url = make_url(settings.url)
    backend = url.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, settings, must_exist)
    kwargs: dict = {
        "pool_size": settings.pool_size,
        "max_overflow": settings.pool_size,
        "pool_recycle": 1800,
        "pool_timeout": 10,
    }
    if backend in ("mysql", "mariadb"):
        if "charset" not in url.query:
            url = url.update_query_dict({"charset": "utf8mb4"})
        kwargs["connect_args"] = {
            "init_command": f"SET time_zone = '+00:00', sql_mode = '{MYSQL_SQL_MODE}'",
            "connect_timeout": 5,
            # A stalled server must give 503 soon, not hold a worker thread for long.
            "read_timeout": 15,
            "write_timeout": 15,
        }
    elif backend == "postgresql":
        kwargs["connect_args"] = {
            "connect_timeout": 5,
            # Dead peers are noticed by TCP keepalives; slow statements are cut off.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "tcp_user_timeout": 15000,
            "options": "-c statement_timeout=15000",
        }
    engine = create_engine(url, hide_parameters=True, isolation_level="AUTOCOMMIT",
                           pool_reset_on_return=None, **kwargs)
    _explicit_transactions(engine)
    return engine


def _explicit_transactions(engine: Engine) -> None:
    """MariaDB and PostgreSQL connections in autocommit mode, transactions begun explicitly.

    A read is one statement, so it needs no transaction: it costs one round trip
    instead of two (the SELECT, then the ROLLBACK the pool sent when the connection came
    back; ~20 % of a profile GET's time on MariaDB). Writers begin a transaction (the
    ``begin`` hook below, and ``Database.writing``) and end it with COMMIT or ROLLBACK,
    so the pool resets nothing; a connection that still comes back inside a transaction
    (an error path) is rolled back then, from a flag the driver keeps locally.
    """
    mysql = engine.dialect.name != "postgresql"
    begin = "START TRANSACTION" if mysql else "BEGIN"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        if mysql:  # fewer gap locks than REPEATABLE READ, and what the original used
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED")

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        if not conn.get_execution_options().get("hutch_readonly", False):
            conn.exec_driver_sql(begin)

    @event.listens_for(engine, "reset")
    def _on_reset(dbapi_conn, _record, state):
        if state.terminate_only or state.transaction_was_reset:
            return
        if mysql:
            in_transaction = bool(dbapi_conn.server_status & _MYSQL_IN_TRANS)
        else:
            in_transaction = dbapi_conn.info.transaction_status != _PG_IDLE
        if in_transaction:
            dbapi_conn.rollback()


def _sqlite_engine(url, settings: DatabaseSettings, must_exist: bool) -> Engine:
    memory = url.database in (None, "", ":memory:")
    kwargs: dict = {"connect_args": {"check_same_thread": False, "timeout": SQLITE_BUSY_MS / 1000}}
    if must_exist and not memory:
        # mode=rw: if the file disappears, connections fail (503) instead of quietly
        # creating an empty database that would keep answering after the file is back.
        target = "file:" + quote(str(Path(url.database).absolute())) + "?mode=rw"
        kwargs["creator"] = lambda: sqlite3.connect(
            target, uri=True, check_same_thread=False, timeout=SQLITE_BUSY_MS / 1000)
    if memory:
        kwargs["poolclass"] = StaticPool
    else:
        kwargs["pool_size"] = settings.pool_size
        kwargs["max_overflow"] = settings.pool_size
    # hide_parameters: bound values (ciphertext, subs) never reach a log or an error text.
    engine = create_engine(url, hide_parameters=True, **kwargs)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        # Manage transactions ourselves so writers take the lock up front (BEGIN IMMEDIATE):
        # a deferred transaction upgrading to a write can fail at once with SQLITE_BUSY.
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        if not memory:
            cursor.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit answered 200 survives a power cut (WAL is synced at each commit).
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection):
        # Reads are single statements: SQLite runs each as its own consistent snapshot,
        # so they need no BEGIN (and no COMMIT).
        if not conn.get_execution_options().get("hutch_readonly", False):
            conn.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class WriterQueue:
    """SQLite writers wait in line: one per process (a lock), one across worker
    processes (``flock`` on a file beside the database).

    SQLite alone makes a writer that finds the database locked sleep and retry
    (1 ms, growing to 100 ms), so concurrent writes stalled for tens of milliseconds
    and p99 reached hundreds. Queued writers wake as soon as the lock is free.
    SQLite's own locking still guards the data; this only orders the waiting.
    """

    def __init__(self, database_file: str | None):
        self._lock = threading.Lock()
        self._path = f"{database_file}-writers" if database_file else None
        self._fd: int | None = None
        self._pid = 0

    def _file(self) -> int | None:
        # flock belongs to an open file: each forked worker opens its own (and closes
        # the copy of its parent's, which would otherwise stay open for nothing).
        if self._path is not None and self._pid != os.getpid():
            self._pid = os.getpid()
            if self._fd is not None:
                os.close(self._fd)
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:  # a read-only folder: in-process queueing only
                self._fd = None
        return self._fd

    @contextmanager
    def turn(self) -> Iterator[None]:
        with self._lock:
            fd = self._file()
            if fd is None:
                yield
                return
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)


class Query:
    """A statement compiled once for one dialect, to run straight on a DBAPI cursor.

    SQLAlchemy builds and compiles it, and converts values with the columns' own
    processors; what is skipped is its per-execution machinery (a Connection,
    an execution context, Row objects: ~100 µs a statement, more than the query).
    A SELECT's rows are named tuples with the selected columns' keys.
    """

    def __init__(self, statement: Executable, dialect):
        compiled = statement.compile(dialect=dialect)
        binds = compiled.binds
        if any(bind.expanding for bind in binds.values()):
            raise ValueError("IN (list) parameters are not supported here")
        self.sql = compiled.string
        self._defaults = {name: bind.value for name, bind in binds.items()}
        self._bind_processors = [
            (name, processor) for name, bind in binds.items()
            if (processor := bind.type.dialect_impl(dialect).bind_processor(dialect))
        ]
        self._order = tuple(compiled.positiontup) if dialect.positional else None
        columns = list(statement.selected_columns) if isinstance(statement, Select) else []
        self._row = namedtuple("Row", [column.key for column in columns])  # noqa: PYI024
        self._result_processors = [
            column.type.dialect_impl(dialect).result_processor(dialect, None)
            for column in columns
        ]

    def parameters(self, params: dict[str, Any]) -> tuple | dict[str, Any]:
        values = {**self._defaults, **params}
        for name, processor in self._bind_processors:
            values[name] = processor(values[name])
        if self._order is None:
            return values
        return tuple(values[name] for name in self._order)

    def rows(self, fetched: list[tuple]) -> list[tuple]:
        make, processors = self._row._make, self._result_processors
        if not any(processors):
            return [make(row) for row in fetched]
        return [make([value if convert is None else convert(value)
                      for convert, value in zip(processors, row, strict=True)])
                for row in fetched]


class Database:
    """Owns the engine; services open exactly one transaction per operation."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.backend = engine.dialect.name
        self._writers: WriterQueue | None = None
        self._begin = "BEGIN" if self.backend == "postgresql" else "START TRANSACTION"
        self._queries: dict[Select, Query] = {}
        self._file: str | None = None
        self._identity: tuple[int, int] | None = None
        if self.backend == "sqlite":
            name = engine.url.database
            if name not in (None, "", ":memory:"):
                self._file = str(Path(name).absolute())
                with suppress(OSError):
                    self._identity = _file_identity(self._file)
            self._writers = WriterQueue(self._file)

    def check_file(self) -> None:
        """On SQLite, raise ``DatabaseFileChanged`` unless the database path still names
        the file this server opened (the first it saw there).

        SQLite keeps reading and writing a file that was deleted or renamed away, so
        after ``rm hutch.db*`` writes were answered 200 and were gone with the process.
        One ``stat`` of the path costs ~2 µs; reads check once, writes again just
        before COMMIT (a file replaced meanwhile rolls the transaction back).
        """
        if self._file is None:
            return
        try:
            identity = _file_identity(self._file)
        except OSError:
            raise DatabaseFileChanged(self._file) from None
        if self._identity is None:
            self._identity = identity
        elif identity != self._identity:
            raise DatabaseFileChanged(self._file)

    def _query(self, statement: Executable) -> Query:
        query = self._queries.get(statement)
        if query is None:
            query = self._queries[statement] = Query(statement, self.engine.dialect)
        return query

    def _error(self, exc: Exception, raw, sql: str | None, args) -> DBAPIError:
        """A DBAPI error as SQLAlchemy's execute would raise it (OperationalError → 503,
        IntegrityError → a duplicate); a lost connection renews the pool first, like
        SQLAlchemy does, since the other pooled connections predate the cut too."""
        dialect = self.engine.dialect
        lost = raw is not None and dialect.is_disconnect(exc, raw.dbapi_connection, None)
        if lost:
            self.engine.pool._invalidate(raw, exc)  # noqa: SLF001
        return DBAPIError.instance(sql, args, exc, dialect.loaded_dbapi.Error,
                                   hide_parameters=True, dialect=dialect,
                                   connection_invalidated=lost)

    @contextmanager
    def _dbapi(self):
        """A pooled DBAPI connection and a cursor; DBAPI errors come out translated."""
        dbapi_error = self.engine.dialect.loaded_dbapi.Error
        try:
            raw = self.engine.raw_connection()
        except dbapi_error as exc:
            raise self._error(exc, None, None, None) from exc
        try:
            self.check_file()
            cursor = raw.cursor()
            try:
                yield raw, cursor
            finally:
                cursor.close()
        except dbapi_error as exc:
            raise self._error(exc, raw, None, None) from exc
        finally:
            raw.close()

    def select(self, statement: Select, params: dict[str, Any]) -> list[tuple]:
        """All rows of a read-only SELECT built once at import (see ``Query``)."""
        query = self._query(statement)
        with self._dbapi() as (_raw, cursor):
            cursor.execute(query.sql, query.parameters(params))
            fetched = cursor.fetchall()
        return query.rows(fetched)

    @contextmanager
    def writing(self) -> Iterator[Callable[[Executable, dict[str, Any]], int]]:
        """One write transaction on a DBAPI cursor: yields ``run(statement, params)``,
        which answers the affected row count. Committed at the end, rolled back on
        any exception; on SQLite it takes the writer lock up front (BEGIN IMMEDIATE)."""
        sqlite = self.backend == "sqlite"
        queue = self._writers.turn() if self._writers is not None else nullcontext()
        with queue, self._dbapi() as (raw, cursor):
            def run(statement: Executable, params: dict[str, Any]) -> int:
                query = self._query(statement)
                cursor.execute(query.sql, query.parameters(params))
                return cursor.rowcount

            cursor.execute("BEGIN IMMEDIATE" if sqlite else self._begin)
            try:
                yield run
                self.check_file()
            except BaseException:
                with suppress(Exception):  # a dead connection cannot roll back
                    if not sqlite:
                        raw.rollback()
                    elif raw.dbapi_connection.in_transaction:
                        cursor.execute("ROLLBACK")
                raise
            if sqlite:
                cursor.execute("COMMIT")
            else:
                raw.commit()

    def write_one(self, statement: Executable, params: dict[str, Any]) -> int:
        """One write statement in a transaction of its own; answers the affected rows.

        On MariaDB and PostgreSQL the statement runs alone in autocommit mode, which
        makes it atomic by itself: one round trip instead of three (BEGIN, it, COMMIT).
        """
        if self.backend == "sqlite":
            with self.writing() as run:
                return run(statement, params)
        query = self._query(statement)
        with self._dbapi() as (_raw, cursor):
            cursor.execute(query.sql, query.parameters(params))
            return cursor.rowcount

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A connection for one read-only statement (no explicit transaction on SQLite)."""
        with self.engine.connect() as conn:
            self.check_file()
            yield conn.execution_options(hutch_readonly=True)

    @contextmanager
    def write(self) -> Iterator[Connection]:
        # preserve_rowcount: services decide 403/404 from INSERT ... SELECT row counts,
        # which SQLAlchemy 2.1 otherwise leaves at -1 on psycopg.
        queue = self._writers.turn() if self._writers is not None else nullcontext()
        with queue, self.engine.connect() as conn:
            conn = conn.execution_options(preserve_rowcount=True)
            with conn.begin():
                yield conn
                self.check_file()

    def dispose(self) -> None:
        self.engine.dispose()
