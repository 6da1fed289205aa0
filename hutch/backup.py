"""``hutch backup`` and ``hutch restore``: one portable file for any of the three backends.

The file (format version 1) is a gzip stream of JSON lines, ASCII only (``\\uXXXX``
escapes), so it is binary-safe and readable with ``zcat``:

1. a header: ``{"format": "hutch-backup", "version": 1, "revision": "0002",
   "created_at": "2026-12-04T18:00:00Z", "source": "sqlite",
   "tables": [{"name": "h_profile", "columns": ["hp_id", ...]}, ...]}``;
2. for each table, parents first: ``{"table": "h_profile"}``, then one JSON array per
   row, its values in the header's column order: integers, text as strings, TIMESTAMP
   columns as integer epoch seconds (UTC), bytes as ``{"b64": "..."}``, null;
3. a trailer: ``{"rows": {"h_profile": 3, ...}, "sha256": "..."}``, the SHA-256 of every
   byte before it (uncompressed), so a corrupted or truncated file is refused whole.

Every table of ``hutch.store.schema.metadata`` is kept, with every column the schema
names (MariaDB's generated "active name" columns are derived, not stored here), except
``h_dpop_jti``: DPoP proof ids expire within minutes and only guard the server that saw
them. A database holding a table or column this code does not know is refused rather
than copied in part.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Table, create_engine, inspect, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from hutch.settings import DatabaseSettings
from hutch.store import migrate
from hutch.store.db import SQLITE_BUSY_MS, create_db_engine
from hutch.store.schema import metadata

FORMAT = "hutch-backup"
VERSION = 1
SKIPPED = frozenset({"h_dpop_jti"})  # transient: see the module docstring
# Rows fetched per round trip (server-side cursors), and inserted per statement.
BATCH_ROWS = 500
BATCH_BYTES = 4 * 1024 * 1024


class BackupError(Exception):
    """Why a backup or restore was refused or failed, in one line for the operator."""


def layout() -> list[dict[str, Any]]:
    """The header's table list: this code's tables and columns, in file order."""
    return [{"name": table.name, "columns": [column.name for column in table.c]}
            for table in tables()]


def tables() -> list[Table]:
    """The tables a backup holds, parents before children (foreign keys)."""
    return [table for table in metadata.sorted_tables if table.name not in SKIPPED]


class Progress:
    """Rows and bytes so far, redrawn on stderr at most twice a second, only on a terminal."""

    def __init__(self, verb: str, stream=None):
        self.stream = stream or sys.stderr
        self.on = self.stream.isatty()
        self.verb, self.rows, self.bytes, self._shown = verb, 0, 0, 0.0

    def add(self, rows: int, size: int) -> None:
        self.rows += rows
        self.bytes += size
        if self.on and time.monotonic() - self._shown >= 0.5:
            self._show("")

    def done(self) -> None:
        if self.on:
            self._show("\n")

    def _show(self, end: str) -> None:
        self._shown = time.monotonic()
        print(f"\r{self.verb}: {self.rows} rows, {self.bytes / 1048576:.1f} MiB", end=end,
              file=self.stream, flush=True)


@contextmanager
def database_errors(what: str) -> Iterator[None]:
    """A database error as a one-line ``BackupError``: the driver's class and first line."""
    try:
        yield
    except DBAPIError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if str(exc.orig).strip() else ""
        raise BackupError(f"{what}: {type(exc.orig).__name__}: {reason}") from None


# -- backup ---------------------------------------------------------------------------


def backup(settings: DatabaseSettings, path: Path, progress: Progress | None = None) -> str:
    """Write a consistent snapshot of the database to ``path``; a one-line summary."""
    progress = progress or Progress("backup")
    path = Path(path)
    if not path.parent.is_dir():
        raise BackupError(f"{path.parent}: no such folder")
    url = make_url(settings.url)
    with database_errors("cannot read the database"), _snapshot(settings, path.parent) as conn:
        revision = MigrationContext.configure(conn).get_current_revision()
        if revision != migrate.head_revision():
            raise BackupError(f"the database schema is at {revision or 'no revision'}, this "
                              f"Hutch's is {migrate.head_revision()}: run 'hutch db upgrade'")
        _refuse_unknown(conn)
        with _atomic(path) as raw:
            counts = _write(conn, raw, revision, url.get_backend_name(), progress)
    progress.done()
    total = sum(counts.values())
    return f"backup written to {path}: {total} rows, schema {revision}"


@contextmanager
def _snapshot(settings: DatabaseSettings, scratch: Path) -> Iterator[Connection]:
    """A connection that sees one consistent moment of the database, read only."""
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite":
        with _sqlite_copy(url.database, scratch) as copy:
            engine = create_engine(f"sqlite:///{copy}")
            try:
                with engine.connect() as conn:
                    yield conn
            finally:
                engine.dispose()
        return
    engine = create_db_engine(settings)
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ",
                                              postgresql_readonly=True)
                conn.execute(text("SELECT 1"))  # the snapshot is taken at the first statement
            else:
                # InnoDB: the snapshot is taken now, not at the first read of each table.
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
                conn.exec_driver_sql("START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
            yield conn
            conn.rollback()
    finally:
        engine.dispose()


@contextmanager
def _sqlite_copy(database: str | None, scratch: Path) -> Iterator[Path]:
    """SQLite's online backup API into a private file beside the output, removed after.

    One ``backup()`` step copies every page under one read transaction: writers go
    on (WAL) and the copy is the database as of that moment.
    """
    if database in (None, "", ":memory:") or not Path(database).is_file():
        raise BackupError(f"database file {database} does not exist")
    copy = scratch / f".hutch-backup-{os.getpid()}-{time.time_ns()}.db"
    os.close(os.open(copy, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    try:
        # mode=rw: never create an empty database where the real one is missing.
        source_uri = "file:" + quote(str(Path(database).absolute())) + "?mode=rw"
        try:
            source = sqlite3.connect(source_uri, uri=True, timeout=SQLITE_BUSY_MS / 1000)
            target = sqlite3.connect(copy)
            try:
                source.backup(target)
            finally:
                target.close()
                source.close()
        except sqlite3.Error as exc:
            raise BackupError(f"cannot read the database {database}: {exc}") from None
        yield copy
    finally:
        for leftover in [copy, *(Path(f"{copy}-{end}") for end in ("journal", "wal", "shm"))]:
            leftover.unlink(missing_ok=True)


def _refuse_unknown(conn: Connection) -> None:
    """Refuse a database with tables or stored columns the schema does not name."""
    inspector = inspect(conn)
    known = {table.name: table for table in metadata.sorted_tables}
    for name in inspector.get_table_names():
        if name == "alembic_version" or name in SKIPPED:
            continue
        if name not in known:
            raise BackupError(f"table {name} is not part of Hutch's schema: it would not "
                              "be backed up")
        extra = [column["name"] for column in inspector.get_columns(name)
                 if column["name"] not in known[name].c and not column.get("computed")]
        if extra:
            raise BackupError(f"{name}.{extra[0]} is not part of Hutch's schema: it would "
                              "not be backed up")


def _json_value(value: Any) -> Any:
    if isinstance(value, bytes | bytearray | memoryview):
        return {"b64": base64.b64encode(bytes(value)).decode("ascii")}
    raise TypeError(f"cannot store a {type(value).__name__} in a backup")


def _write(conn: Connection, raw: BinaryIO, revision: str, source: str,
           progress: Progress) -> dict[str, int]:
    digest = hashlib.sha256()
    counts: dict[str, int] = {}
    with gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=6, mtime=0) as out:
        def line(document: Any) -> int:
            data = json.dumps(document, separators=(",", ":"), default=_json_value).encode()
            data += b"\n"
            digest.update(data)
            out.write(data)
            return len(data)

        line({"format": FORMAT, "version": VERSION, "revision": revision,
              "created_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), "source": source,
              "tables": layout()})
        for table in tables():
            line({"table": table.name})
            counts[table.name] = 0
            # yield_per: a server-side cursor (PostgreSQL, MariaDB), never a whole table.
            rows = conn.execution_options(yield_per=BATCH_ROWS).execute(
                select(table).order_by(*table.primary_key.columns))
            for row in rows:
                progress.add(1, line(list(row)))
                counts[table.name] += 1
        trailer = {"rows": counts, "sha256": digest.hexdigest()}
        out.write(json.dumps(trailer, separators=(",", ":")).encode() + b"\n")
    return counts


@contextmanager
def _atomic(path: Path) -> Iterator[BinaryIO]:
    """A new file at ``path``, private (0600) from its creation, in place only when whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}-{time.time_ns()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as exc:
        raise BackupError(f"cannot write {path}: {exc.strerror}") from None
    try:
        with os.fdopen(fd, "wb") as raw:
            yield raw
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
    except OSError as exc:  # a full disk, FILE a folder: one line, no partial file
        temporary.unlink(missing_ok=True)
        raise BackupError(f"cannot write {path}: {exc.strerror or exc}") from None
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)
