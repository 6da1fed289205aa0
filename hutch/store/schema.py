"""SQLAlchemy Core tables mapped onto the original Hutch schema (HUTCH-API.md §14).

Column names and types are the original's so an existing database works
unchanged. The DDL itself lives in the migrations (and ``sql/``); these
definitions drive queries and the bind/result conversions per backend.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    TIMESTAMP,
    BigInteger,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    literal_column,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.functions import FunctionElement
from sqlalchemy.types import TypeDecorator, UserDefinedType

#: ``deleted == NOT_DELETED``: a literal 0 in the SQL, never a bound parameter. SQLite
#: can only use the partial unique indexes (``WHERE ..._deleted = 0``) when it sees the
#: 0 itself; with a parameter it re-plans the statement on every run (3× slower).
NOT_DELETED = literal_column("0", Integer)

# Queries only: the DDL (indexes, collations, partial unique indexes) lives in
# hutch/migrations and sql/; never create tables from this metadata.
metadata = MetaData()


class _SqliteTimestamp(UserDefinedType):
    """A column declared TIMESTAMP that holds a bare integer epoch (the original's SQLite)."""

    cache_ok = True

    def get_col_spec(self, **kw: Any) -> str:
        return "TIMESTAMP"


class Epoch(TypeDecorator):
    """Epoch seconds in Python; integer on SQLite, TIMESTAMP(TZ) on MariaDB/PostgreSQL (§14.2)."""

    impl = TIMESTAMP
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name == "sqlite":
            return dialect.type_descriptor(_SqliteTimestamp())
        if dialect.name == "postgresql":
            return dialect.type_descriptor(TIMESTAMP(timezone=True))
        return dialect.type_descriptor(mysql.TIMESTAMP())

    def process_bind_param(self, value: Any, dialect) -> Any:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return int(value)
        moment = datetime.fromtimestamp(int(value), UTC)
        # MariaDB sessions run with time_zone '+00:00' (see store.db), so naive UTC.
        return moment if dialect.name == "postgresql" else moment.replace(tzinfo=None)

    def process_result_value(self, value: Any, dialect) -> int | None:
        return to_epoch(value)

    def result_processor(self, dialect, coltype):
        # Lists convert thousands of values: hand SQLAlchemy the function itself
        # rather than its TypeDecorator wrapper, when the driver needs no conversion first.
        return _direct(self, dialect, coltype, to_epoch)

    def column_expression(self, colexpr):
        """Selected as epoch seconds by the database itself: PyMySQL parses a TIMESTAMP
        into a datetime in Python (~5 µs a row, half the cost of a 100-coin list)."""
        return EpochSeconds(colexpr)


class EpochSeconds(FunctionElement):
    """A TIMESTAMP column as integer epoch seconds, in each dialect's own SQL."""

    type = BigInteger()
    name = "epoch_seconds"
    inherit_cache = True


@compiles(EpochSeconds)
def _epoch_seconds_as_stored(element, compiler, **kw):  # SQLite keeps the integer itself
    return compiler.process(element.clauses, **kw)


@compiles(EpochSeconds, "mysql")
@compiles(EpochSeconds, "mariadb")
def _epoch_seconds_mysql(element, compiler, **kw):
    return f"UNIX_TIMESTAMP({compiler.process(element.clauses, **kw)})"


@compiles(EpochSeconds, "postgresql")
def _epoch_seconds_postgresql(element, compiler, **kw):
    return f"CAST(FLOOR(EXTRACT(EPOCH FROM {compiler.process(element.clauses, **kw)})) AS BIGINT)"


def to_epoch(value: Any) -> int | None:
    """Whatever a TIMESTAMP column gave back, as integer epoch seconds."""
    if value is None or value.__class__ is int:  # SQLite's usual case, first
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    text = str(value).strip()
    with suppress(ValueError):
        return int(float(text))
    try:
        return to_epoch(datetime.fromisoformat(text))
    except ValueError:
        return None


class BlobText(TypeDecorator):
    """Text in Python; MEDIUMBLOB (bytes) on MariaDB, TEXT elsewhere."""

    impl = Text
    cache_ok = True

    def load_dialect_impl(self, dialect):
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.MEDIUMBLOB())
        return dialect.type_descriptor(Text())

    def process_bind_param(self, value: Any, dialect) -> Any:
        if value is not None and dialect.name in ("mysql", "mariadb"):
            return value.encode("utf-8")
        return value

    def process_result_value(self, value: Any, dialect) -> str | None:
        return text_value(value)

    def result_processor(self, dialect, coltype):
        return _direct(self, dialect, coltype, text_value)


def text_value(value: Any) -> str | None:
    """A text column's value as str: MariaDB's MEDIUMBLOB (and old rows) give bytes."""
    if value is None or value.__class__ is str:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).decode("utf-8", errors="replace")
    return value


def _direct(decorator: TypeDecorator, dialect, coltype, convert):
    """``convert`` itself as the result processor, unless the underlying type has one."""
    if decorator.impl_instance.dialect_impl(dialect).result_processor(dialect, coltype) is None:
        return convert
    return TypeDecorator.result_processor(decorator, dialect, coltype)


def _text(length: int) -> Any:
    return String(length).with_variant(Text(), "sqlite")


profile = Table(
    "h_profile",
    metadata,
    Column("hp_id", Integer, primary_key=True, autoincrement=True),
    Column("hp_sub", _text(128), nullable=False),
    Column("hp_name", _text(256)),
    Column("hp_message", _text(512)),
    Column("hp_picture", BlobText()),
    Column("hp_sign_kid", _text(128)),
    Column("hp_deleted", Integer, default=0),
    Column("hp_last_updated", Epoch()),
)

safe = Table(
    "h_safe",
    metadata,
    Column("hs_id", Integer, primary_key=True, autoincrement=True),
    Column("hp_id", Integer, ForeignKey("h_profile.hp_id", ondelete="CASCADE"), nullable=False),
    Column("hs_name", _text(128), nullable=False),
    Column("hs_display_name", _text(512)),
    Column("hs_enc_type", _text(128)),
    Column("hs_alg_type", _text(128)),
    Column("hs_deleted", Integer, default=0),
    Column("hs_last_updated", Epoch()),
)

safe_key = Table(
    "h_key",
    metadata,
    Column("hk_id", Integer, primary_key=True, autoincrement=True),
    Column("hs_id", Integer, ForeignKey("h_safe.hs_id", ondelete="CASCADE"), nullable=False),
    Column("hk_type", _text(128)),
    Column("hk_name", _text(128), nullable=False),
    Column("hk_display_name", _text(512)),
    Column("hk_data", BlobText()),
    Column("hk_deleted", Integer, default=0),
    Column("hk_last_updated", Epoch()),
)

coin = Table(
    "h_coin",
    metadata,
    Column("hc_id", Integer, primary_key=True, autoincrement=True),
    Column("hs_id", Integer, ForeignKey("h_safe.hs_id", ondelete="CASCADE"), nullable=False),
    Column("hc_name", _text(128), nullable=False),
    Column("hc_data", BlobText()),
    Column("hc_deleted", Integer, default=0),
    Column("hc_last_updated", Epoch()),
)

# Added by Hutch (not in the original): DPoP proof ids seen, for replay refusal (RFC 9449 §11.1).
dpop_jti = Table(
    "h_dpop_jti",
    metadata,
    Column("hdj_id", String(64), primary_key=True),
    Column("hdj_expires_at", BigInteger, nullable=False),
    Index("i_hdj_expires_at", "hdj_expires_at"),
)
