"""The original Hutch schema, adopted as is where it already exists (HUTCH-API.md §14.1).

A database made by the C server has these tables but no ``alembic_version``:
only the missing tables (and the ``i_hp_username`` index) are created, so its
rows and types are kept untouched. MariaDB tables get no engine or charset
clause, like the original's; 0002 converts them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Parents first. The DDL is the original's, column for column, per backend.
_SQLITE = {
    "h_profile": """
        CREATE TABLE h_profile (
          hp_id INTEGER PRIMARY KEY AUTOINCREMENT,
          hp_sub TEXT NOT NULL,
          hp_name TEXT,
          hp_message TEXT,
          hp_picture TEXT,
          hp_sign_kid TEXT,
          hp_deleted INTEGER DEFAULT 0,
          hp_last_updated TIMESTAMP
        )""",
    "h_safe": """
        CREATE TABLE h_safe (
          hs_id INTEGER PRIMARY KEY AUTOINCREMENT,
          hp_id INTEGER NOT NULL,
          hs_name TEXT NOT NULL,
          hs_display_name TEXT,
          hs_enc_type TEXT,
          hs_alg_type TEXT,
          hs_deleted INTEGER DEFAULT 0,
          hs_last_updated TIMESTAMP,
          FOREIGN KEY(hp_id) REFERENCES h_profile(hp_id) ON DELETE CASCADE
        )""",
    "h_key": """
        CREATE TABLE h_key (
          hk_id INTEGER PRIMARY KEY AUTOINCREMENT,
          hs_id INTEGER NOT NULL,
          hk_type TEXT,
          hk_name TEXT NOT NULL,
          hk_display_name TEXT,
          hk_data TEXT,
          hk_deleted INTEGER DEFAULT 0,
          hk_last_updated TIMESTAMP,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
    "h_coin": """
        CREATE TABLE h_coin (
          hc_id INTEGER PRIMARY KEY AUTOINCREMENT,
          hs_id INTEGER NOT NULL,
          hc_name TEXT NOT NULL,
          hc_data TEXT,
          hc_deleted INTEGER DEFAULT 0,
          hc_last_updated TIMESTAMP,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
}

_MARIADB = {
    "h_profile": """
        CREATE TABLE h_profile (
          hp_id INT(11) PRIMARY KEY AUTO_INCREMENT,
          hp_sub VARCHAR(128) NOT NULL,
          hp_name VARCHAR(256),
          hp_message VARCHAR(512),
          hp_picture MEDIUMBLOB,
          hp_sign_kid VARCHAR(128),
          hp_deleted TINYINT DEFAULT 0,
          hp_last_updated TIMESTAMP
        )""",
    "h_safe": """
        CREATE TABLE h_safe (
          hs_id INT(11) PRIMARY KEY AUTO_INCREMENT,
          hp_id INT(11) NOT NULL,
          hs_name VARCHAR(128) NOT NULL,
          hs_display_name VARCHAR(512),
          hs_enc_type VARCHAR(128),
          hs_alg_type VARCHAR(128),
          hs_deleted TINYINT DEFAULT 0,
          hs_last_updated TIMESTAMP,
          FOREIGN KEY(hp_id) REFERENCES h_profile(hp_id) ON DELETE CASCADE
        )""",
    "h_key": """
        CREATE TABLE h_key (
          hk_id INT(11) PRIMARY KEY AUTO_INCREMENT,
          hs_id INT(11) NOT NULL,
          hk_type VARCHAR(128),
          hk_name VARCHAR(128) NOT NULL,
          hk_display_name VARCHAR(512),
          hk_data MEDIUMBLOB,
          hk_deleted TINYINT DEFAULT 0,
          hk_last_updated TIMESTAMP,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
    "h_coin": """
        CREATE TABLE h_coin (
          hc_id INT(11) PRIMARY KEY AUTO_INCREMENT,
          hs_id INT(11) NOT NULL,
          hc_name VARCHAR(128) NOT NULL,
          hc_data MEDIUMBLOB,
          hc_deleted TINYINT DEFAULT 0,
          hc_last_updated TIMESTAMP,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
}

_POSTGRESQL = {
    "h_profile": """
        CREATE TABLE h_profile (
          hp_id SERIAL PRIMARY KEY,
          hp_sub VARCHAR(128) NOT NULL,
          hp_name VARCHAR(256),
          hp_message VARCHAR(512),
          hp_picture TEXT,
          hp_sign_kid VARCHAR(128),
          hp_deleted SMALLINT DEFAULT 0,
          hp_last_updated TIMESTAMPTZ
        )""",
    "h_safe": """
        CREATE TABLE h_safe (
          hs_id SERIAL PRIMARY KEY,
          hp_id INTEGER NOT NULL,
          hs_name VARCHAR(128) NOT NULL,
          hs_display_name VARCHAR(512),
          hs_enc_type VARCHAR(128),
          hs_alg_type VARCHAR(128),
          hs_deleted SMALLINT DEFAULT 0,
          hs_last_updated TIMESTAMPTZ,
          FOREIGN KEY(hp_id) REFERENCES h_profile(hp_id) ON DELETE CASCADE
        )""",
    "h_key": """
        CREATE TABLE h_key (
          hk_id SERIAL PRIMARY KEY,
          hs_id INTEGER NOT NULL,
          hk_type VARCHAR(128),
          hk_name VARCHAR(128) NOT NULL,
          hk_display_name VARCHAR(512),
          hk_data TEXT,
          hk_deleted SMALLINT DEFAULT 0,
          hk_last_updated TIMESTAMPTZ,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
    "h_coin": """
        CREATE TABLE h_coin (
          hc_id SERIAL PRIMARY KEY,
          hs_id INTEGER NOT NULL,
          hc_name VARCHAR(128) NOT NULL,
          hc_data TEXT,
          hc_deleted SMALLINT DEFAULT 0,
          hc_last_updated TIMESTAMPTZ,
          FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
        )""",
}

_DDL = {"sqlite": _SQLITE, "mysql": _MARIADB, "mariadb": _MARIADB, "postgresql": _POSTGRESQL}


def upgrade() -> None:
    bind = op.get_bind()
    existing = set(sa.inspect(bind).get_table_names())
    for table, ddl in _DDL[bind.dialect.name].items():
        if table not in existing:
            op.execute(ddl)
    indexes = {index["name"] for index in sa.inspect(bind).get_indexes("h_profile")}
    if "i_hp_username" not in indexes:
        op.execute("CREATE INDEX i_hp_username ON h_profile (hp_sub)")


def downgrade() -> None:
    # Back to an empty database: this drops every profile, safe, key and coin.
    for table in ("h_coin", "h_key", "h_safe", "h_profile"):
        op.execute(f"DROP TABLE {table}")
