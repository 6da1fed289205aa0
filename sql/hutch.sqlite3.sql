-- Hutch database schema for SQLite 3, fresh install.
--
-- Matches alembic revision 0002 (hutch/migrations/versions/0002_hutch_integrity.py):
-- the original tables (HUTCH-API.md §14.1) plus the Hutch integrity additions, and the
-- alembic_version row, so `hutch db upgrade` on this database has nothing to do.
-- `hutch init` / `hutch db upgrade` give the same result; this script is for those who
-- prefer plain SQL. Apply it to a new, empty database:
--
--     sqlite3 -bail /path/to/hutch.db < sql/hutch.sqlite3.sql
--
-- Timestamps hold integer epoch seconds in TIMESTAMP columns, as the original writes them.

BEGIN;

CREATE TABLE h_profile (
  hp_id INTEGER PRIMARY KEY AUTOINCREMENT,
  hp_sub TEXT NOT NULL,
  hp_name TEXT,
  hp_message TEXT,
  hp_picture TEXT,
  hp_sign_kid TEXT,
  hp_deleted INTEGER DEFAULT 0,
  hp_last_updated TIMESTAMP
);
CREATE INDEX i_hp_username ON h_profile (hp_sub);
-- One active profile per sub (deleted rows do not count).
CREATE UNIQUE INDEX u_hp_sub_active ON h_profile (hp_sub) WHERE hp_deleted = 0;

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
);
CREATE INDEX i_hs_profile_name ON h_safe (hp_id, hs_name);
CREATE UNIQUE INDEX u_hs_name_active ON h_safe (hp_id, hs_name) WHERE hs_deleted = 0;

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
);
CREATE INDEX i_hk_safe_name ON h_key (hs_id, hk_name);
CREATE UNIQUE INDEX u_hk_name_active ON h_key (hs_id, hk_name) WHERE hk_deleted = 0;

CREATE TABLE h_coin (
  hc_id INTEGER PRIMARY KEY AUTOINCREMENT,
  hs_id INTEGER NOT NULL,
  hc_name TEXT NOT NULL,
  hc_data TEXT,
  hc_deleted INTEGER DEFAULT 0,
  hc_last_updated TIMESTAMP,
  FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
);
CREATE INDEX i_hc_safe_name ON h_coin (hs_id, hc_name);
CREATE UNIQUE INDEX u_hc_name_active ON h_coin (hs_id, hc_name) WHERE hc_deleted = 0;

-- DPoP proof ids already seen, for replay refusal (RFC 9449 §11.1).
CREATE TABLE h_dpop_jti (
  hdj_id VARCHAR(64) NOT NULL PRIMARY KEY,
  hdj_expires_at BIGINT NOT NULL
);
CREATE INDEX i_hdj_expires_at ON h_dpop_jti (hdj_expires_at);

CREATE TABLE alembic_version (
  version_num VARCHAR(32) NOT NULL,
  CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num) VALUES ('0002');

COMMIT;
