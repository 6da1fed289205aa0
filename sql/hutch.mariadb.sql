-- Hutch database schema for MariaDB (tested with 10.11), fresh install.
--
-- Matches alembic revision 0002 (hutch/migrations/versions/0002_hutch_integrity.py):
-- the original tables (HUTCH-API.md §14.1) plus the Hutch integrity additions, and the
-- alembic_version row, so `hutch db upgrade` on this database has nothing to do.
-- `hutch init` / `hutch db upgrade` give the same result; this script is for those who
-- prefer plain SQL. Apply it to a new, empty database:
--
--     mariadb -u hutch -p hutch < sql/hutch.mariadb.sql
--
-- MariaDB commits each CREATE TABLE on its own: if this fails half way, drop the
-- database and start again. Tables are InnoDB + utf8mb4; the sub and the names use
-- utf8mb4_nopad_bin, so 'alice', 'Alice' and 'alice ' are three different users
-- (byte-exact matching, HUTCH-API.md §13.8). On MySQL 8 write utf8mb4_0900_bin instead.
-- The *_active_* columns are the name while the row is active and NULL once deleted;
-- their unique indexes allow one active row per name (MariaDB has no partial indexes).

CREATE TABLE h_profile (
  hp_id INT(11) NOT NULL AUTO_INCREMENT,
  hp_sub VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  hp_name VARCHAR(256) DEFAULT NULL,
  hp_message VARCHAR(512) DEFAULT NULL,
  hp_picture MEDIUMBLOB DEFAULT NULL,
  hp_sign_kid VARCHAR(128) DEFAULT NULL,
  hp_deleted TINYINT DEFAULT 0,
  hp_last_updated TIMESTAMP NULL DEFAULT NULL,
  hp_active_sub VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin
    AS (CASE WHEN hp_deleted = 0 THEN hp_sub END) STORED,
  PRIMARY KEY (hp_id),
  UNIQUE KEY u_hp_sub_active (hp_active_sub),
  KEY i_hp_username (hp_sub)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE h_safe (
  hs_id INT(11) NOT NULL AUTO_INCREMENT,
  hp_id INT(11) NOT NULL,
  hs_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  hs_display_name VARCHAR(512) DEFAULT NULL,
  hs_enc_type VARCHAR(128) DEFAULT NULL,
  hs_alg_type VARCHAR(128) DEFAULT NULL,
  hs_deleted TINYINT DEFAULT 0,
  hs_last_updated TIMESTAMP NULL DEFAULT NULL,
  hs_active_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin
    AS (CASE WHEN hs_deleted = 0 THEN hs_name END) STORED,
  PRIMARY KEY (hs_id),
  UNIQUE KEY u_hs_name_active (hp_id, hs_active_name),
  KEY i_hs_profile_name (hp_id, hs_name),
  CONSTRAINT h_safe_ibfk_1 FOREIGN KEY (hp_id) REFERENCES h_profile (hp_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE h_key (
  hk_id INT(11) NOT NULL AUTO_INCREMENT,
  hs_id INT(11) NOT NULL,
  hk_type VARCHAR(128) DEFAULT NULL,
  hk_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  hk_display_name VARCHAR(512) DEFAULT NULL,
  hk_data MEDIUMBLOB DEFAULT NULL,
  hk_deleted TINYINT DEFAULT 0,
  hk_last_updated TIMESTAMP NULL DEFAULT NULL,
  hk_active_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin
    AS (CASE WHEN hk_deleted = 0 THEN hk_name END) STORED,
  PRIMARY KEY (hk_id),
  UNIQUE KEY u_hk_name_active (hs_id, hk_active_name),
  KEY i_hk_safe_name (hs_id, hk_name),
  CONSTRAINT h_key_ibfk_1 FOREIGN KEY (hs_id) REFERENCES h_safe (hs_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE h_coin (
  hc_id INT(11) NOT NULL AUTO_INCREMENT,
  hs_id INT(11) NOT NULL,
  hc_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  hc_data MEDIUMBLOB DEFAULT NULL,
  hc_deleted TINYINT DEFAULT 0,
  hc_last_updated TIMESTAMP NULL DEFAULT NULL,
  hc_active_name VARCHAR(128) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin
    AS (CASE WHEN hc_deleted = 0 THEN hc_name END) STORED,
  PRIMARY KEY (hc_id),
  UNIQUE KEY u_hc_name_active (hs_id, hc_active_name),
  KEY i_hc_safe_name (hs_id, hc_name),
  CONSTRAINT h_coin_ibfk_1 FOREIGN KEY (hs_id) REFERENCES h_safe (hs_id) ON DELETE CASCADE
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

-- DPoP proof ids already seen, for replay refusal (RFC 9449 §11.1).
CREATE TABLE h_dpop_jti (
  hdj_id VARCHAR(64) CHARACTER SET utf8mb4 COLLATE utf8mb4_nopad_bin NOT NULL,
  hdj_expires_at BIGINT NOT NULL,
  PRIMARY KEY (hdj_id),
  KEY i_hdj_expires_at (hdj_expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;

CREATE TABLE alembic_version (
  version_num VARCHAR(32) NOT NULL,
  CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO alembic_version (version_num) VALUES ('0002');
