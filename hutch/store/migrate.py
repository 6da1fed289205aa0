"""Schema migrations (alembic, ``hutch/migrations``), run in code under a cross-replica lock.

Give these functions the engine from ``hutch.store.db.create_db_engine``: its
SQLite connections emit ``BEGIN IMMEDIATE``, which is the lock on that backend.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import OperationalError

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"
# How long a replica waits for another one's migration before giving up.
LOCK_TIMEOUT = 600
# pg_advisory_lock key (advisory locks are per database); any fixed 64-bit number.
_PG_LOCK_KEY = 0x4875_7463_686D_6967  # "Hutchmig"
_POLL = 0.5


class MigrationError(Exception):
    """The migration lock could not be taken, or the result is inconsistent."""


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS).replace("%", "%%"))
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision stamped in the database; None for an empty or original (C) one."""
    with engine.connect() as conn:
        conn = conn.execution_options(hutch_readonly=True)
        return MigrationContext.configure(conn).get_current_revision()


def is_current(engine: Engine) -> bool:
    return current_revision(engine) == head_revision()


@dataclass(frozen=True)
class Step:
    """A migration not yet applied."""

    revision: str
    summary: str
    #: what it deletes, from the migration module's ``removes_data``; None when nothing
    removes_data: str | None


def pending(engine: Engine) -> list[Step]:
    """The migrations ``upgrade`` would apply, oldest first."""
    current = current_revision(engine)
    script = ScriptDirectory.from_config(_config())
    steps = [Step(s.revision, next(iter((s.doc or "").strip().splitlines()), ""),
                  getattr(s.module, "removes_data", None))
             for s in script.iterate_revisions("head", current or "base")]
    return steps[::-1]


def holds_data(engine: Engine) -> bool:
    """Whether the database has Hutch's tables (a fresh one has nothing to lose)."""
    with engine.connect() as conn:
        return inspect(conn).has_table("h_profile")


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply pending migrations; N replicas may call this at once, one does the work."""
    _run(engine, lambda config: command.upgrade(config, revision))


def downgrade(engine: Engine, revision: str) -> None:
    """Reverse migrations down to ``revision`` ("base" drops every table)."""
    _run(engine, lambda config: command.downgrade(config, revision))


def _run(engine: Engine, step: Callable[[Config], None]) -> None:
    if engine.dialect.name == "sqlite":
        _run_sqlite(engine, step)
        return
    with engine.connect() as conn, _server_lock(conn):
        # One transaction: all or nothing on PostgreSQL; MariaDB commits each DDL
        # statement anyway (the migrations are written to be re-runnable).
        with conn.begin():
            step(_config(conn))


@contextmanager
def _server_lock(conn: Connection) -> Iterator[None]:
    """A session-level lock: pg_advisory_lock / GET_LOCK, released at the end."""
    if conn.dialect.name == "postgresql":
        acquire = text("SELECT pg_try_advisory_lock(:key)").bindparams(key=_PG_LOCK_KEY)
        release = text("SELECT pg_advisory_unlock(:key)").bindparams(key=_PG_LOCK_KEY)
    else:
        # GET_LOCK names are server-wide: include the database (names are at most 64 chars).
        database = conn.execute(text("SELECT DATABASE()")).scalar() or ""
        name = f"hutch.migrate.{database}"[:64]
        acquire = text("SELECT GET_LOCK(:name, 1)").bindparams(name=name)
        release = text("SELECT RELEASE_LOCK(:name)").bindparams(name=name)
    deadline = time.monotonic() + LOCK_TIMEOUT
    while not conn.execute(acquire).scalar():
        conn.commit()
        if time.monotonic() > deadline:
            raise MigrationError(f"another process held the migration lock for {LOCK_TIMEOUT}s")
        time.sleep(_POLL)
    conn.commit()  # the lock belongs to the session, not to this transaction
    try:
        yield
    finally:
        conn.execute(release)
        conn.commit()


def _run_sqlite(engine: Engine, step: Callable[[Config], None]) -> None:
    """Migrate inside one BEGIN IMMEDIATE transaction: it holds SQLite's write lock, so
    a second process waits (busy_timeout, then retries here) and then finds it done."""
    deadline = time.monotonic() + LOCK_TIMEOUT
    while True:
        with engine.connect() as conn:
            raw = conn.connection.driver_connection
            # Batch migrations rebuild tables; with enforcement on, dropping the old
            # h_safe would cascade-delete every key and coin. Checked before commit instead.
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                try:
                    transaction = conn.begin()
                except OperationalError as exc:
                    if "locked" not in str(exc) or time.monotonic() > deadline:
                        raise
                    continue
                with transaction:
                    step(_config(conn))
                    broken = conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise MigrationError(f"foreign keys broken by the migration: {broken[:5]}")
                return
            finally:
                raw.execute("PRAGMA foreign_keys=ON")
