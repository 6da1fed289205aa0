"""Hutch integrity: purge invisible rows, byte-exact names, one active row per name, DPoP table.

(a) Purge what no request can reach any more (HUTCH-API.md §13.13): deleted
    profiles, safes, keys and coins, and everything under a deleted parent.
(b) Drop invisible duplicates among active rows, keeping the lowest id (the
    row the original showed) and the rows under it.
(c) MariaDB/MySQL: InnoDB, utf8mb4, binary collation for ``hp_sub`` and the
    names, so matching is byte-exact (§13.8).
(d) The database refuses a second active row with one name (§13.15): partial
    unique indexes on SQLite/PostgreSQL, unique indexes over STORED generated
    "active name" columns (NULL once deleted) on MariaDB.
(e) Lookup indexes for the queries of §14.3.
(f) ``h_dpop_jti``, the DPoP replay cache (RFC 9449 §11.1).

MariaDB DDL is not transactional, so every step first checks whether it is
already done: a run cut short can simply be run again.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from typing import NamedTuple

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None
# What this migration deletes: ``hutch db upgrade`` reads it and says to back up first.
removes_data = ("the rows of deleted profiles, safes, keys and coins (their ciphertext) "
                "and invisible duplicate rows")


class _Named(NamedTuple):
    table: str
    id: str
    parent: str | None
    name: str
    deleted: str
    updated: str
    active: str  # MariaDB: generated column, the name while active, else NULL
    unique: str
    lookup: str | None


_NAMED = (
    _Named("h_profile", "hp_id", None, "hp_sub", "hp_deleted", "hp_last_updated",
           "hp_active_sub", "u_hp_sub_active", None),
    _Named("h_safe", "hs_id", "hp_id", "hs_name", "hs_deleted", "hs_last_updated",
           "hs_active_name", "u_hs_name_active", "i_hs_profile_name"),
    _Named("h_key", "hk_id", "hs_id", "hk_name", "hk_deleted", "hk_last_updated",
           "hk_active_name", "u_hk_name_active", "i_hk_safe_name"),
    _Named("h_coin", "hc_id", "hs_id", "hc_name", "hc_deleted", "hc_last_updated",
           "hc_active_name", "u_hc_name_active", "i_hc_safe_name"),
)  # fmt: skip
_PROFILE, _SAFE, _KEY, _COIN = _NAMED

# MariaDB names the index InnoDB makes for an unnamed foreign key after its column,
# and the constraint <table>_ibfk_1.
_FOREIGN_KEYS = (
    ("h_safe", "hp_id", "h_profile", "h_safe_ibfk_1"),
    ("h_key", "hs_id", "h_safe", "h_key_ibfk_1"),
    ("h_coin", "hs_id", "h_safe", "h_coin_ibfk_1"),
)

# Byte-exact first; the NO PAD ones also tell 'alice' from 'alice '.
_BINARY_COLLATIONS = ("utf8mb4_nopad_bin", "utf8mb4_0900_bin", "utf8mb4_bin")

_DPOP_TABLE = {
    "sqlite": "CREATE TABLE h_dpop_jti (\n"
    "  hdj_id VARCHAR(64) NOT NULL PRIMARY KEY,\n"
    "  hdj_expires_at BIGINT NOT NULL\n)",
    "postgresql": "CREATE TABLE h_dpop_jti (\n"
    "  hdj_id VARCHAR(64) PRIMARY KEY,\n"
    "  hdj_expires_at BIGINT NOT NULL\n)",
    "mysql": "CREATE TABLE h_dpop_jti (\n"
    "  hdj_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE {collation} NOT NULL PRIMARY KEY,\n"
    "  hdj_expires_at BIGINT NOT NULL\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
}

_CHUNK = 500


def _is_mysql(bind: sa.Connection) -> bool:
    return bind.dialect.name in ("mysql", "mariadb")


def _table(named: _Named) -> sa.TableClause:
    names = (named.id, named.parent, named.name, named.deleted)
    return sa.table(named.table, *(sa.column(name) for name in names if name))


def _indexes(bind: sa.Connection, table: str) -> set[str]:
    return {index["name"] for index in sa.inspect(bind).get_indexes(table)}


def _columns(bind: sa.Connection, table: str) -> set[str]:
    return {column["name"] for column in sa.inspect(bind).get_columns(table)}


def upgrade() -> None:
    bind = op.get_bind()
    mysql = _is_mysql(bind)
    _purge_invisible(bind)
    collation = _binary_collation(bind) if mysql else ""
    if mysql:
        _convert_mysql_tables(bind, collation)
    for named in _NAMED:
        if named.lookup and named.lookup not in _indexes(bind, named.table):
            op.create_index(named.lookup, named.table, [named.parent, named.name])
    if mysql:
        _restore_mysql_foreign_keys(bind)
    for named in _NAMED:
        _delete_duplicates(bind, named)
    _purge_invisible(bind)  # what hung under the duplicates
    for named in _NAMED:
        _unique_active_index(bind, named, collation)
    if "h_dpop_jti" not in sa.inspect(bind).get_table_names():
        op.execute(_DPOP_TABLE["mysql" if mysql else bind.dialect.name].format(collation=collation))
    if "i_hdj_expires_at" not in _indexes(bind, "h_dpop_jti"):
        op.create_index("i_hdj_expires_at", "h_dpop_jti", ["hdj_expires_at"])


def _purge_invisible(bind: sa.Connection) -> None:
    """Delete every row the original would not show: only ``*_deleted = 0`` rows under
    active parents stay. Children first, so nothing relies on ON DELETE CASCADE."""
    profile, safe, key, coin = (_table(named) for named in _NAMED)
    active_profiles = sa.select(profile.c.hp_id).where(profile.c.hp_deleted == 0)
    active_safes = sa.select(safe.c.hs_id).where(
        safe.c.hs_deleted == 0, safe.c.hp_id.in_(active_profiles)
    )
    for table, named in ((coin, _COIN), (key, _KEY)):
        bind.execute(
            sa.delete(table).where(
                sa.or_(
                    sa.func.coalesce(table.c[named.deleted], 1) != 0,
                    table.c.hs_id.not_in(active_safes),
                )
            )
        )
    bind.execute(
        sa.delete(safe).where(
            sa.or_(
                sa.func.coalesce(safe.c.hs_deleted, 1) != 0,
                safe.c.hp_id.not_in(active_profiles),
            )
        )
    )
    bind.execute(sa.delete(profile).where(sa.func.coalesce(profile.c.hp_deleted, 1) != 0))


def _delete_duplicates(bind: sa.Connection, named: _Named) -> None:
    """Among active rows sharing a name (and parent), keep the lowest id."""
    table = _table(named)
    row, other = table.alias("p"), table.alias("q")
    same = [
        other.c[named.deleted] == 0,
        other.c[named.name] == row.c[named.name],
        other.c[named.id] < row.c[named.id],
    ]
    if named.parent:
        same.append(other.c[named.parent] == row.c[named.parent])
    shadowed = sa.select(row.c[named.id]).where(row.c[named.deleted] == 0, sa.exists().where(*same))
    ids = list(bind.execute(shadowed).scalars())
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start : start + _CHUNK]
        bind.execute(sa.delete(table).where(table.c[named.id].in_(chunk)))


def _binary_collation(bind: sa.Connection) -> str:
    available = set(
        bind.execute(
            sa.text(
                "SELECT COLLATION_NAME FROM information_schema.COLLATIONS "
                "WHERE CHARACTER_SET_NAME = 'utf8mb4'"
            )
        ).scalars()
    )
    return next(name for name in _BINARY_COLLATIONS if name in available)


def _name_type(collation: str) -> str:
    return f"VARCHAR(128) CHARACTER SET utf8mb4 COLLATE {collation}"


def _convert_mysql_tables(bind: sa.Connection, collation: str) -> None:
    engines = dict(
        bind.execute(
            sa.text(
                "SELECT TABLE_NAME, ENGINE FROM information_schema.TABLES "
                "WHERE TABLE_SCHEMA = DATABASE()"
            )
        ).all()
    )
    names = dict(
        bind.execute(
            sa.text(
                "SELECT TABLE_NAME, COLLATION_NAME FROM information_schema.COLUMNS "
                "WHERE TABLE_SCHEMA = DATABASE() "
                "AND COLUMN_NAME IN ('hp_sub', 'hs_name', 'hk_name', 'hc_name')"
            )
        ).all()
    )
    for named in _NAMED:
        if engines.get(named.table) != "InnoDB":
            op.execute(f"ALTER TABLE {named.table} ENGINE=InnoDB")
        if names.get(named.table) == collation:
            # Converted by an earlier run that stopped half way: converting again would
            # also reset the collation of the active-name column made after this step.
            continue
        op.execute(f"ALTER TABLE {named.table} CONVERT TO CHARACTER SET utf8mb4")
        # TIMESTAMP NULL DEFAULT NULL: older servers made the first TIMESTAMP column
        # NOT NULL DEFAULT CURRENT_TIMESTAMP ON UPDATE CURRENT_TIMESTAMP.
        op.execute(
            f"ALTER TABLE {named.table} MODIFY {named.name} {_name_type(collation)} NOT NULL, "
            f"MODIFY {named.updated} TIMESTAMP NULL DEFAULT NULL"
        )


def _restore_mysql_foreign_keys(bind: sa.Connection) -> None:
    """MyISAM discards FOREIGN KEY clauses: an original MyISAM database gets them now
    (orphans are gone after the purge)."""
    for child, column, parent, name in _FOREIGN_KEYS:
        keys = sa.inspect(bind).get_foreign_keys(child)
        if not any(key["constrained_columns"] == [column] for key in keys):
            op.execute(
                f"ALTER TABLE {child} ADD CONSTRAINT {name} FOREIGN KEY ({column}) "
                f"REFERENCES {parent} ({column}) ON DELETE CASCADE"
            )


def _unique_active_index(bind: sa.Connection, named: _Named, collation: str) -> None:
    if named.unique in _indexes(bind, named.table):
        return
    parent = [named.parent] if named.parent else []
    if not _is_mysql(bind):
        where = sa.text(f"{named.deleted} = 0")
        op.create_index(
            named.unique,
            named.table,
            [*parent, named.name],
            unique=True,
            sqlite_where=where,
            postgresql_where=where,
        )
        return
    # No partial indexes on MariaDB: index a STORED column that is NULL once deleted
    # (a unique index admits any number of NULLs).
    if named.active not in _columns(bind, named.table):
        op.execute(
            f"ALTER TABLE {named.table} ADD COLUMN {named.active} {_name_type(collation)} "
            f"AS (CASE WHEN {named.deleted} = 0 THEN {named.name} END) STORED"
        )
    op.create_index(named.unique, named.table, [*parent, named.active], unique=True)


def downgrade() -> None:
    # Only the DDL is reversed. The purged rows (deleted data, invisible duplicates) are
    # gone for good, and MariaDB tables stay InnoDB/utf8mb4: the original's engine and
    # charset were server defaults nobody recorded.
    bind = op.get_bind()
    mysql = _is_mysql(bind)
    op.drop_table("h_dpop_jti")
    if mysql:
        # A foreign key needs an index led by its column; put back the one InnoDB makes
        # for the original DDL before dropping ours.
        for child, column, _parent, _name in _FOREIGN_KEYS:
            op.create_index(column, child, [column])
    for named in _NAMED:
        op.drop_index(named.unique, table_name=named.table)
        if named.lookup:
            op.drop_index(named.lookup, table_name=named.table)
    if mysql:
        for named in _NAMED:
            op.execute(
                f"ALTER TABLE {named.table} DROP COLUMN {named.active}, "
                f"MODIFY {named.name} VARCHAR(128) NOT NULL"
            )
