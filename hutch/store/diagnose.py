"""One line for an operator when the database cannot be used at start (README: exit 2).

Names what is wrong and what to do, never the password: the URL is rendered with
it hidden, and the drivers' messages (quoted) do not carry it.
"""

from __future__ import annotations

import re

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, NoSuchModuleError

# Driver modules SQLAlchemy may import for a URL; a missing one is a configuration problem.
DRIVERS = frozenset({"psycopg", "psycopg2", "pymysql", "MySQLdb", "mariadb", "mysql",
                     "pg8000", "asyncpg", "aiomysql", "aiosqlite", "oracledb", "pyodbc"})
_MYSQL_LOGIN = {1044, 1045, 1698}
_MYSQL_UNKNOWN_DATABASE = 1049
_MYSQL_UNREACHABLE = {2002, 2003, 2005, 2006, 2013}
_PG_LOGIN = ("password authentication failed", "role \"", "no password supplied",
             "authentication failed", "no pg_hba.conf entry")
_PG_UNREACHABLE = ("connection refused", "could not translate host name", "timeout expired",
                   "no route to host", "name or service not known", "network is unreachable")


def _where(url: str) -> str:
    try:
        parsed = make_url(url)
    except ArgumentError:
        return "the database"
    if parsed.get_backend_name() == "sqlite":
        return f"the SQLite file {parsed.database}"
    host = parsed.host or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    user = f"user {parsed.username!r} on " if parsed.username else ""
    return f"{user}{host}{port}/{parsed.database or ''}"


def _said(exc: BaseException) -> str:
    """The driver's own words on one line, shortened."""
    text = " ".join(str(exc).split())
    return text if len(text) <= 200 else text[:197] + "..."


def explain(exc: BaseException, url: str) -> str:
    """``database.url: <what is wrong>; <what to do>`` for an error met while connecting."""
    where = _where(url)
    if isinstance(exc, NoSuchModuleError):
        return (f"database.url: unknown database kind ({_said(exc)}); use sqlite:///FILE, "
                "mysql+pymysql://... or postgresql+psycopg://...")
    if isinstance(exc, ArgumentError):
        return ("database.url: not a database URL; use sqlite:///FILE, "
                "mysql+pymysql://USER:PASSWORD@HOST/DB or postgresql+psycopg://USER@HOST/DB")
    if isinstance(exc, ImportError):
        return (f"database.url: its driver {exc.name!r} is not installed; use "
                "mysql+pymysql://... or postgresql+psycopg://... (installed with Hutch)")
    orig = exc.orig if isinstance(exc, DBAPIError) else exc
    said = _said(orig)
    lowered = said.lower()
    code = orig.args[0] if getattr(orig, "args", None) and isinstance(orig.args[0], int) else None
    if "unable to open database file" in lowered:
        return (f"database.url: cannot open {where} (its folder is missing or not writable, "
                "or the file is gone); a new installation creates it with 'hutch init'")
    if code in _MYSQL_LOGIN or any(marker in lowered for marker in _PG_LOGIN):
        return (f"database.url: {where} refused the login (wrong user or password, or the "
                f"user lacks rights on the database): {said}")
    if code == _MYSQL_UNKNOWN_DATABASE or re.search(r'database "[^"]*" does not exist', said):
        return (f"database.url: the database does not exist ({where}); create it and its "
                f"user first (README, 'Configuration'): {said}")
    if code in _MYSQL_UNREACHABLE or any(marker in lowered for marker in _PG_UNREACHABLE):
        return f"database.url: cannot reach the database server ({where}): {said}"
    return f"database.url: cannot use {where}: {said}"
