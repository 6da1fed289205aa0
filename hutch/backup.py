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
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import quote

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, Table, create_engine, func, inspect, select, text
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
BATCH_BYTES = 8 * 1024 * 1024


class BackupError(Exception):
    """Why a backup or restore was refused or failed, in one line for the operator."""


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
def _database_errors(what: str) -> Iterator[None]:
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
    with _database_errors("cannot read the database"), _snapshot(settings, path.parent) as conn:
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
        for leftover in (copy, Path(f"{copy}-journal")):
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
              "tables": [{"name": table.name, "columns": [column.name for column in table.c]}
                         for table in tables()]})
        for table in tables():
            line({"table": table.name})
            counts[table.name] = 0
            # yield_per: a server-side cursor (PostgreSQL, MariaDB), never a whole table.
            rows = conn.execution_options(yield_per=BATCH_ROWS).execute(
                select(table).order_by(*table.primary_key.columns))
            for row in rows:
                progress.add(1, line(list(row)))
                counts[table.name] += 1
        out.write(json.dumps({"rows": counts, "sha256": digest.hexdigest()}).encode() + b"\n")
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
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    folder = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(folder)  # the rename itself survives a power cut
    finally:
        os.close(folder)


# -- reading a backup file ---------------------------------------------------------------


class BackupFile:
    """A backup file read line by line, every check made as it goes (see ``rows``)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.header: dict[str, Any] = {}
        self.counts: dict[str, int] = {}

    def _fail(self, why: str) -> BackupError:
        return BackupError(f"{self.path}: {why}")

    @contextmanager
    def _lines(self) -> Iterator[Iterator[bytes]]:
        try:
            with gzip.open(self.path, "rb") as stream:
                yield stream
        except FileNotFoundError:
            raise self._fail("no such file") from None
        except IsADirectoryError:
            raise self._fail("is a folder, not a backup file") from None
        except PermissionError:
            raise self._fail("permission denied") from None
        except EOFError:
            raise self._fail("truncated (the file ends early)") from None
        except (gzip.BadGzipFile, zlib.error) as exc:
            if not self.header:
                raise self._fail("not a Hutch backup") from None
            raise self._fail(f"corrupted ({exc})") from None

    def _header(self, line: bytes) -> dict[str, Any]:
        try:
            header = json.loads(line)
        except ValueError:
            header = None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise self._fail("not a Hutch backup")
        if not isinstance(header.get("version"), int) or header["version"] > VERSION:
            raise self._fail(f"backup format {header.get('version')} is newer than this Hutch "
                             f"reads ({VERSION}): restore it with a newer Hutch")
        head = migrate.head_revision()
        if header.get("revision") != head:
            raise self._fail(f"holds schema revision {header.get('revision')}, this Hutch's is "
                             f"{head}: restore it with the Hutch that made it, then upgrade")
        expected = [{"name": table.name, "columns": [column.name for column in table.c]}
                    for table in tables()]
        if header.get("tables") != expected:
            raise self._fail("its tables differ from this Hutch's schema")
        return header

    def check_header(self) -> dict[str, Any]:
        with self._lines() as lines:
            self.header = self._header(next(iter(lines), b""))
        return self.header

    def rows(self, parse: bool = True, progress: Progress | None = None
             ) -> Iterator[tuple[str, list | None]]:
        """``(table, values)`` for every row; at the end the checksum and the row counts
        are checked, so a consumer must not keep what it did until the loop is done."""
        digest = hashlib.sha256()
        counts: dict[str, int] = {}
        columns = {table.name: len(table.c) for table in tables()}
        table = trailer = None
        with self._lines() as lines:
            for number, line in enumerate(lines):
                if not line.endswith(b"\n"):
                    raise self._fail("truncated (the last line is cut)")
                if trailer is not None:
                    raise self._fail("corrupted (data after the trailer)")
                if number == 0:
                    self.header = self._header(line)
                    digest.update(line)
                    continue
                if line.startswith(b"["):
                    if table is None:
                        raise self._fail("corrupted (a row before any table)")
                    digest.update(line)
                    counts[table] += 1
                    if progress is not None:
                        progress.add(1, len(line))
                    values = json.loads(line) if parse else None
                    if values is not None and len(values) != columns[table]:
                        raise self._fail(f"corrupted (a {table} row of {len(values)} values)")
                    yield table, values
                    continue
                try:
                    document = json.loads(line)
                except ValueError:
                    raise self._fail("corrupted (a line is not JSON)") from None
                if isinstance(document, dict) and document.get("table") in columns:
                    table = document["table"]
                    counts[table] = 0
                    digest.update(line)
                elif isinstance(document, dict) and "sha256" in document:
                    trailer = document
                else:
                    raise self._fail("corrupted (an unknown line)")
        if not self.header:
            raise self._fail("not a Hutch backup")
        if trailer is None:
            raise self._fail("truncated (no trailer)")
        if trailer["sha256"] != digest.hexdigest():
            raise self._fail("corrupted (checksum mismatch)")
        if trailer.get("rows") != counts:
            raise self._fail("corrupted (row counts differ from the trailer)")
        self.counts = counts


def decode(value: Any) -> Any:
    """A value as the database takes it back."""
    if isinstance(value, dict):
        return base64.b64decode(value["b64"])
    return value


# -- restore ---------------------------------------------------------------------------


def restore(settings: DatabaseSettings, path: Path, progress: Progress | None = None) -> str:
    """Load a backup into an empty database; nothing is written unless all of it loads."""
    progress = progress or Progress("restore")
    source = BackupFile(path)
    source.check_header()
    for _ in source.rows(parse=False):  # the whole file is sound before anything is written
        pass
    revision = source.header["revision"]
    with _database_errors("cannot write the database"):
        engine = _target_engine(settings)
        try:
            _prepare_target(engine, revision)
            with engine.begin() as conn:
                _refuse_rows(conn)
                _load(conn, source, progress)
        finally:
            engine.dispose()
    progress.done()
    total = sum(source.counts.values())
    made = f"made {source.header.get('created_at')} on {source.header.get('source')}"
    return f"restored {total} rows from {path} (schema {revision}, {made})"


def _target_engine(settings: DatabaseSettings):
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        if not database.exists():
            database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Ciphertext only, but private like everything else Hutch writes.
            os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
    return create_db_engine(settings)


def _prepare_target(engine, revision: str) -> None:
    present = set(inspect(engine).get_table_names())
    if not present:
        migrate.upgrade(engine, revision)  # an empty database: hutch init's schema
        return
    with engine.connect() as conn:
        _refuse_rows(conn)
    current = migrate.current_revision(engine)
    if current != revision:
        raise BackupError(f"the target database schema is at {current or 'no revision'}, the "
                          f"backup's is {revision}: run 'hutch db upgrade' or use an empty "
                          "database")


def _refuse_rows(conn: Connection) -> None:
    present = set(inspect(conn).get_table_names())
    for table in tables():
        if table.name in present and conn.execute(select(1).select_from(table).limit(1)).first():
            raise BackupError(f"the target database is not empty ({table.name} has rows): "
                              "restore only into an empty database")


def _load(conn: Connection, source: BackupFile, progress: Progress) -> None:
    known = {table.name: table for table in tables()}
    batch: list[dict[str, Any]] = []
    size = 0
    current: Table | None = None

    def flush() -> None:
        nonlocal size
        if batch:
            conn.execute(current.insert(), batch)
            batch.clear()
            size = 0

    for name, values in source.rows(progress=progress):
        if current is None or current.name != name:
            flush()
            current = known[name]
        batch.append({column.key: decode(value) for column, value in zip(
            current.c, values, strict=True)})
        size += sum(len(value) for value in values if isinstance(value, str))
        if len(batch) >= BATCH_ROWS or size >= BATCH_BYTES:
            flush()
    flush()
    for table in tables():
        found = conn.execute(select(func.count()).select_from(table)).scalar()
        if found != source.counts.get(table.name, 0):
            raise BackupError(f"{table.name}: {found} rows loaded, the backup holds "
                              f"{source.counts.get(table.name, 0)}; nothing was kept")
    if conn.dialect.name == "postgresql":
        # Rows came with their ids: move each SERIAL sequence past the highest one.
        for table in tables():
            column = table.autoincrement_column
            if column is not None:
                highest = select(func.max(column)).scalar_subquery()
                conn.execute(select(func.setval(
                    func.pg_get_serial_sequence(table.name, column.name),
                    func.coalesce(highest, 0) + 1, False)))
