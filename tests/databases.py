"""Test databases: SQLite always; MariaDB and PostgreSQL when their servers answer.

Server URLs come from HUTCH_TEST_MARIADB_URL / HUTCH_TEST_POSTGRES_URL (defaults:
the CI machines' servers). Each use gets a fresh, uniquely named database that is
dropped afterwards, so runs never see each other's rows.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

BACKENDS = ("sqlite", "mariadb", "postgresql")
SERVER_URLS = {
    "mariadb": os.environ.get("HUTCH_TEST_MARIADB_URL", "mysql+pymysql://root@127.0.0.1:3306/test"),
    "postgresql": os.environ.get(
        "HUTCH_TEST_POSTGRES_URL", "postgresql+psycopg://root@127.0.0.1:5432/test"
    ),
}


@cache
def unavailable(backend: str) -> str | None:
    """None when the backend can be used, else the reason to skip."""
    if backend == "sqlite":
        return None
    url = SERVER_URLS[backend]
    try:
        engine = create_engine(url, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
    except Exception as exc:  # noqa: BLE001 - any failure means "not here"
        return f"{backend} server not reachable at {make_url(url).render_as_string()}: " + (
            str(exc).splitlines()[0][:200]
        )
    return None


@contextmanager
def fresh_database(backend: str, tmp_path: Path) -> Iterator[str]:
    """Yield the URL of a new empty database on ``backend``; drop it afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_path / ('hutch-' + secrets.token_hex(4) + '.db')}"
        return
    name = "hutch_t_" + secrets.token_hex(6)
    server = make_url(SERVER_URLS[backend])
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        if backend == "mariadb":
            conn.execute(text(f"CREATE DATABASE {name} CHARACTER SET utf8mb4"))
        else:
            conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            if backend == "postgresql":
                conn.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :n AND pid <> pg_backend_pid()"
                    ),
                    {"n": name},
                )
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
        admin.dispose()
