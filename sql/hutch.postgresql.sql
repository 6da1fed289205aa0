-- Hutch database schema for PostgreSQL, fresh install.
--
-- Matches alembic revision 0002 (hutch/migrations/versions/0002_hutch_integrity.py):
-- the original tables (HUTCH-API.md §14.1) plus the Hutch integrity additions, and the
-- alembic_version row, so `hutch db upgrade` on this database has nothing to do.
-- `hutch init` / `hutch db upgrade` give the same result; this script is for those who
-- prefer plain SQL. Apply it to a new, empty database, as the user Hutch connects as:
--
--     psql -v ON_ERROR_STOP=1 -d hutch -f sql/hutch.postgresql.sql

BEGIN;

CREATE TABLE h_profile (
  hp_id SERIAL PRIMARY KEY,
  hp_sub VARCHAR(128) NOT NULL,
  hp_name VARCHAR(256),
  hp_message VARCHAR(512),
  hp_picture TEXT,
  hp_sign_kid VARCHAR(128),
  hp_deleted SMALLINT DEFAULT 0,
  hp_last_updated TIMESTAMPTZ
);
CREATE INDEX i_hp_username ON h_profile (hp_sub);
-- One active profile per sub (deleted rows do not count).
CREATE UNIQUE INDEX u_hp_sub_active ON h_profile (hp_sub) WHERE hp_deleted = 0;

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
);
CREATE INDEX i_hs_profile_name ON h_safe (hp_id, hs_name);
CREATE UNIQUE INDEX u_hs_name_active ON h_safe (hp_id, hs_name) WHERE hs_deleted = 0;

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
);
CREATE INDEX i_hk_safe_name ON h_key (hs_id, hk_name);
CREATE UNIQUE INDEX u_hk_name_active ON h_key (hs_id, hk_name) WHERE hk_deleted = 0;

CREATE TABLE h_coin (
  hc_id SERIAL PRIMARY KEY,
  hs_id INTEGER NOT NULL,
  hc_name VARCHAR(128) NOT NULL,
  hc_data TEXT,
  hc_deleted SMALLINT DEFAULT 0,
  hc_last_updated TIMESTAMPTZ,
  FOREIGN KEY(hs_id) REFERENCES h_safe(hs_id) ON DELETE CASCADE
);
CREATE INDEX i_hc_safe_name ON h_coin (hs_id, hc_name);
CREATE UNIQUE INDEX u_hc_name_active ON h_coin (hs_id, hc_name) WHERE hc_deleted = 0;

-- DPoP proof ids already seen, for replay refusal (RFC 9449 §11.1).
CREATE TABLE h_dpop_jti (
  hdj_id VARCHAR(64) PRIMARY KEY,
  hdj_expires_at BIGINT NOT NULL
);
CREATE INDEX i_hdj_expires_at ON h_dpop_jti (hdj_expires_at);

CREATE TABLE alembic_version (
  version_num VARCHAR(32) NOT NULL,
  CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num) VALUES ('0002');

COMMIT;
