"""``hutch restore``: a backup file (format in ``hutch.backup``) into an empty database.

The file is read twice: once to check it whole (kind, format version, schema
revision, checksum, row counts), without parsing rows, before the target is touched;
then to load it in one transaction, checked again before the commit. Rows keep
their ids; PostgreSQL's sequences are moved past them (SQLite's AUTOINCREMENT and
MariaDB's AUTO_INCREMENT follow inserted ids by themselves).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, Table, func, inspect, select
from sqlalchemy.engine import make_url

from hutch.backup import (
    BATCH_BYTES,
    BATCH_ROWS,
    FORMAT,
    VERSION,
    BackupError,
    Progress,
    database_errors,
    layout,
    tables,
)
from hutch.settings import DatabaseSettings
from hutch.store import migrate
from hutch.store.db import create_db_engine


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
        if header.get("tables") != layout():
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


def restore(settings: DatabaseSettings, path: Path, progress: Progress | None = None) -> str:
    """Load a backup into an empty database; nothing is written unless all of it loads."""
    progress = progress or Progress("restore")
    source = BackupFile(path)
    source.check_header()
    # The whole file is read and checked before anything is written.
    checking = Progress("restore: checking")
    for _ in source.rows(parse=False, progress=checking):
        pass
    checking.done()
    revision = source.header["revision"]
    with database_errors("cannot write the database"):
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


def _target_engine(settings: DatabaseSettings) -> Engine:
    url = make_url(settings.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        database = Path(url.database)
        if not database.exists():
            try:
                database.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Ciphertext only, but private like everything else Hutch writes.
                os.close(os.open(database, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise BackupError(f"cannot create {database}: {exc.strerror}") from None
    return create_db_engine(settings)


def _prepare_target(engine: Engine, revision: str) -> None:
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
        row_size = sum(len(value) for value in values if isinstance(value, str))
        if size + row_size > BATCH_BYTES:
            # A large row goes alone: one statement must fit MariaDB's max_allowed_packet.
            flush()
        batch.append({column.key: decode(value) for column, value in zip(
            current.c, values, strict=True)})
        size += row_size
        if len(batch) >= BATCH_ROWS:
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
