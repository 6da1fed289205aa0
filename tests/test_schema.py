"""The schema: migrations against sql/ scripts, reversibility, adopting an original database,
and the database-enforced rules (one active row per name, byte-exact names)."""

from __future__ import annotations

import re
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from hutch.settings import DatabaseSettings
from hutch.store import migrate
from hutch.store.db import create_db_engine
from hutch.store.schema import coin, profile, safe, safe_key
from tests.databases import BACKENDS, fresh_database, unavailable

SQL = Path(__file__).resolve().parent.parent / "sql"
SCRIPTS = {
    "sqlite": "hutch.sqlite3.sql",
    "mariadb": "hutch.mariadb.sql",
    "postgresql": "hutch.postgresql.sql",
}


@pytest.fixture(params=BACKENDS)
def backend(request) -> str:
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    return request.param


@pytest.fixture
def new_engine(backend, tmp_path):
    """Make engines on fresh databases of ``backend``; disposed and dropped afterwards."""
    with ExitStack() as stack:

        def make() -> sa.Engine:
            url = stack.enter_context(fresh_database(backend, tmp_path))
            engine = create_db_engine(DatabaseSettings(url=url))
            stack.callback(engine.dispose)
            return engine

        yield make


def _norm(value) -> str | None:
    """SQL text compared loosely: case, spaces, quotes and outer parentheses aside."""
    if value is None:
        return None
    return re.sub(r"[\s`\"()]", "", str(value)).lower()


def snapshot(engine: sa.Engine) -> dict:
    """Everything inspect() tells about the schema, in comparable form."""
    inspector = sa.inspect(engine)
    tables = {}
    for name in sorted(inspector.get_table_names()):
        columns = [
            (
                column["name"],
                _norm(column["type"].compile(dialect=engine.dialect)),
                column["nullable"],
                column.get("autoincrement"),
                _norm(column.get("default")),
                _norm((column.get("computed") or {}).get("sqltext")),
            )
            for column in inspector.get_columns(name)
        ]
        foreign_keys = sorted(
            (
                key["name"] or "",
                tuple(key["constrained_columns"]),
                key["referred_table"],
                tuple(key["referred_columns"]),
                (key.get("options") or {}).get("ondelete", "").upper(),
            )
            for key in inspector.get_foreign_keys(name)
        )
        indexes = sorted(
            (
                index["name"],
                tuple(index["column_names"]),
                bool(index["unique"]),
                {k: _norm(v) for k, v in index.get("dialect_options", {}).items() if "where" in k},
            )
            for index in inspector.get_indexes(name)
        )
        options = {
            key: value
            for key, value in inspector.get_table_options(name).items()
            if key in ("mysql_engine", "mariadb_engine", "mysql_default charset",
                       "mariadb_default charset", "mysql_collate", "mariadb_collate")
        }  # fmt: skip
        tables[name] = {
            "columns": columns,
            "primary_key": inspector.get_pk_constraint(name)["constrained_columns"],
            "foreign_keys": foreign_keys,
            "indexes": indexes,
            "options": options,
        }
    return tables


def run_script(engine: sa.Engine, backend: str) -> None:
    """Apply sql/<script> the way its header says, through the driver."""
    script = (SQL / SCRIPTS[backend]).read_text(encoding="utf-8")
    raw = engine.raw_connection()
    try:
        driver = raw.driver_connection
        if backend == "sqlite":
            driver.executescript(script)
        elif backend == "postgresql":
            driver.autocommit = True
            driver.execute(script)
        else:
            code = "\n".join(line for line in script.splitlines() if not line.startswith("--"))
            with driver.cursor() as cursor:
                for statement in filter(None, (s.strip() for s in code.split(";\n"))):
                    cursor.execute(statement.rstrip(";"))
            driver.commit()
    finally:
        raw.invalidate()  # do not hand a driver connection with changed modes back to the pool


def test_sql_scripts_match_the_migrations(backend, new_engine):
    migrated, scripted = new_engine(), new_engine()
    migrate.upgrade(migrated)
    run_script(scripted, backend)
    expected = snapshot(migrated)
    got = snapshot(scripted)
    assert list(got) == list(expected)
    for table in expected:
        assert got[table] == expected[table], table
    assert migrate.is_current(scripted)
    migrate.upgrade(scripted)  # nothing to do
    assert snapshot(scripted) == expected


def test_upgrade_is_idempotent_and_downgrade_reverses_it(new_engine):
    engine = new_engine()
    migrate.upgrade(engine, "0001")
    original = snapshot(engine)
    assert migrate.current_revision(engine) == "0001"
    migrate.upgrade(engine)
    head = snapshot(engine)
    migrate.upgrade(engine)
    assert snapshot(engine) == head
    assert migrate.current_revision(engine) == migrate.head_revision() == "0002"

    # MariaDB commits DDL as it goes: a 0002 cut short before its last step must re-run.
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '0001'"))
        conn.execute(sa.text("DROP TABLE h_dpop_jti"))
    migrate.upgrade(engine)
    assert snapshot(engine) == head

    migrate.downgrade(engine, "0001")
    assert snapshot(engine) == original
    migrate.downgrade(engine, "base")
    assert migrate.current_revision(engine) is None
    assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
    migrate.upgrade(engine)
    assert snapshot(engine) == head


def test_replicas_starting_together_migrate_once(new_engine):
    engine = new_engine()
    with ThreadPoolExecutor(max_workers=4) as pool:
        for future in [pool.submit(migrate.upgrade, engine) for _ in range(4)]:
            future.result()
    assert migrate.is_current(engine)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("SELECT version_num FROM alembic_version").all() == [("0002",)]


# --- an original database, as the C server leaves it ------------------------------------

T0 = 1_700_000_000


def _stamp(backend: str, row_id: int):
    """The original's timestamp writes (HUTCH-API.md §14.2): integers on SQLite."""
    if backend == "sqlite":
        return sa.literal(T0 + row_id, sa.Integer)
    function = sa.func.from_unixtime if backend == "mariadb" else sa.func.to_timestamp
    return function(T0 + row_id)


def _fill_original(conn: sa.Connection, backend: str) -> None:
    rows = {
        "h_profile": [  # hp_id, hp_sub, hp_deleted
            (1, "alice", 0),
            (2, "bob", 1),
            (3, "bob", 0),  # bob deleted his profile, then made a new one
            (4, "carol", 0),
            (5, "carol", 0),  # a race made two: the original showed the first
            (6, "dave", 1),
        ],
        "h_safe": [  # hs_id, hp_id, hs_name, hs_deleted
            (10, 1, "wallet", 1),
            (11, 1, "wallet", 0),  # deleted, then re-created under the same name
            (12, 1, "dup", 0),
            (13, 1, "dup", 0),  # invisible duplicate
            (14, 2, "old", 0),  # under a deleted profile
            (15, 3, "bobsafe", 0),
            (16, 5, "shadow", 0),  # under the invisible duplicate profile
            (17, 4, "carolsafe", 0),
        ],
        "h_key": [  # hk_id, hs_id, hk_name, hk_deleted
            (20, 11, "k1", 0),
            (21, 11, "k0", 1),
            (22, 10, "k1", 0),  # in a deleted safe
            (23, 13, "k1", 0),  # in the invisible duplicate safe
            (24, 12, "k1", 0),
        ],
        "h_coin": [  # hc_id, hs_id, hc_name, hc_deleted
            (30, 11, "pin", 0),
            (31, 11, "pin", 0),  # two active coins with one name
            (32, 11, "gone", 1),
            (39, 11, "gone", 0),
            (33, 10, "pin", 0),
            (34, 14, "c", 0),
            (35, 12, "c", 0),
            (36, 13, "c", 0),
            (37, 16, "c", 0),
            (38, 15, "c", 0),
        ],
    }
    layouts = {
        "h_profile": ("hp_id", "hp_sub", "hp_deleted", "hp_last_updated", "hp_name"),
        "h_safe": ("hs_id", "hp_id", "hs_name", "hs_deleted", "hs_last_updated",
                   "hs_display_name"),
        "h_key": ("hk_id", "hs_id", "hk_name", "hk_deleted", "hk_last_updated", "hk_data"),
        "h_coin": ("hc_id", "hs_id", "hc_name", "hc_deleted", "hc_last_updated", "hc_data"),
    }  # fmt: skip
    for name, layout in layouts.items():
        table = sa.table(name, *(sa.column(column) for column in layout))
        for row in rows[name]:
            values = dict(zip(layout, (*row, _stamp(backend, row[0]), f"v{row[0]}"), strict=True))
            conn.execute(sa.insert(table).values(values))


def _make_myisam_latin1(conn: sa.Connection) -> None:
    """What the original gets on a MariaDB whose defaults are MyISAM and latin1: MyISAM
    parses FOREIGN KEY clauses and drops them, and makes no index for them."""
    for table, column in (("h_coin", "hs_id"), ("h_key", "hs_id"), ("h_safe", "hp_id")):
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP FOREIGN KEY {table}_ibfk_1")
        conn.exec_driver_sql(f"ALTER TABLE {table} DROP INDEX {column}")
    for table in ("h_coin", "h_key", "h_safe", "h_profile"):
        conn.exec_driver_sql(f"ALTER TABLE {table} ENGINE=MyISAM")
        conn.exec_driver_sql(f"ALTER TABLE {table} CONVERT TO CHARACTER SET latin1")


def _rows(conn: sa.Connection, table: sa.Table, *names: str) -> list[tuple]:
    columns = [table.c[name] for name in names]
    return [tuple(row) for row in conn.execute(sa.select(*columns).order_by(columns[0]))]


def _kept(*rows: tuple) -> list[tuple]:
    """Rows as _fill_original wrote them: then the value 'v<id>' and the stamp T0 + id."""
    return [(*row, f"v{row[0]}", T0 + row[0]) for row in rows]


@pytest.mark.parametrize("flavour", ["0001", "myisam"])
def test_an_original_database_keeps_exactly_its_visible_data(backend, new_engine, flavour):
    if flavour == "myisam" and backend != "mariadb":
        pytest.skip("MyISAM is a MariaDB storage engine")
    engine = new_engine()
    migrate.upgrade(engine, "0001")
    with engine.begin() as conn:
        conn.exec_driver_sql("DELETE FROM alembic_version")  # the C server never made one
        if flavour == "myisam":
            _make_myisam_latin1(conn)
        _fill_original(conn, backend)
        if flavour == "myisam":  # no foreign keys: an orphan coin in a missing safe
            conn.exec_driver_sql(
                "INSERT INTO h_coin (hc_id, hs_id, hc_name, hc_deleted) VALUES (40, 99, 'c', 0)"
            )
    assert migrate.current_revision(engine) is None

    migrate.upgrade(engine)

    with engine.connect() as conn:
        assert _rows(conn, profile, "hp_id", "hp_sub", "hp_name", "hp_last_updated") == _kept(
            (1, "alice"), (3, "bob"), (4, "carol")
        )
        assert _rows(
            conn, safe, "hs_id", "hp_id", "hs_name", "hs_display_name", "hs_last_updated"
        ) == _kept((11, 1, "wallet"), (12, 1, "dup"), (15, 3, "bobsafe"), (17, 4, "carolsafe"))
        assert _rows(conn, safe_key, "hk_id", "hs_id", "hk_name", "hk_data", "hk_last_updated") == (
            _kept((20, 11, "k1"), (24, 12, "k1"))
        )
        assert _rows(conn, coin, "hc_id", "hs_id", "hc_name", "hc_data", "hc_last_updated") == (
            _kept((30, 11, "pin"), (35, 12, "c"), (38, 15, "c"), (39, 11, "gone"))
        )
        if backend == "sqlite":  # still the original's integer epochs
            kinds = conn.exec_driver_sql("SELECT DISTINCT typeof(hc_last_updated) FROM h_coin")
            assert set(kinds.scalars()) == {"integer"}
    if flavour == "myisam":
        inspector = sa.inspect(engine)
        for table in ("h_profile", "h_safe", "h_key", "h_coin"):
            assert inspector.get_table_options(table)["mysql_engine"] == "InnoDB"
        assert [key["name"] for key in inspector.get_foreign_keys("h_coin")] == ["h_coin_ibfk_1"]
        with pytest.raises(IntegrityError), engine.begin() as conn:
            conn.execute(sa.insert(coin).values(hs_id=99, hc_name="orphan", hc_deleted=0))


# --- rules the database enforces --------------------------------------------------------


def _insert(conn: sa.Connection, table: sa.Table, **values) -> int:
    deleted = next(column for column in table.c if column.name.endswith("_deleted"))
    values.setdefault(deleted.name, 0)
    return conn.execute(sa.insert(table).values(values)).inserted_primary_key[0]


def test_one_active_row_per_name(new_engine):
    engine = new_engine()
    migrate.upgrade(engine)
    with engine.begin() as conn:
        alice = _insert(conn, profile, hp_sub="alice", hp_last_updated=T0)
        bob = _insert(conn, profile, hp_sub="bob")
        wallet = _insert(conn, safe, hp_id=alice, hs_name="wallet")
        _insert(conn, safe, hp_id=bob, hs_name="wallet")  # another profile: fine
        _insert(conn, safe_key, hs_id=wallet, hk_name="k")
        _insert(conn, coin, hs_id=wallet, hc_name="c")
    cases = [
        (profile, "hp_sub", "alice", {}),
        (safe, "hs_name", "wallet", {"hp_id": alice}),
        (safe_key, "hk_name", "k", {"hs_id": wallet}),
        (coin, "hc_name", "c", {"hs_id": wallet}),
    ]
    for table, name_column, name, parent in cases:
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _insert(conn, table, **{name_column: name}, **parent)
        deleted = next(column for column in table.c if column.name.endswith("_deleted"))
        with engine.begin() as conn:
            # Soft-delete, then re-create: old and new rows live side by side (§8).
            conn.execute(sa.update(table).where(table.c[name_column] == name).values({deleted: 1}))
            _insert(conn, table, **{name_column: name, deleted.name: 1}, **parent)
            _insert(conn, table, **{name_column: name}, **parent)
        with engine.connect() as conn:
            counts = conn.execute(
                sa.select(deleted, sa.func.count())
                .where(table.c[name_column] == name, *[table.c[k] == v for k, v in parent.items()])
                .group_by(deleted)
                .order_by(deleted)
            ).all()
        assert counts == [(0, 1), (1, 2)], table.name


def test_subs_and_names_match_byte_exactly(new_engine):
    """HUTCH-API.md §13.8: MariaDB's default collation would make these one profile."""
    engine = new_engine()
    migrate.upgrade(engine)
    subs = ["alice", "Alice", "alice ", "alicé", "ß", "ss"]
    with engine.begin() as conn:
        ids = [_insert(conn, profile, hp_sub=sub) for sub in subs]
        for name in ("Safe", "safe", "safe "):
            _insert(conn, safe, hp_id=ids[0], hs_name=name)
    with engine.connect() as conn:
        for sub, profile_id in zip(subs, ids, strict=True):
            found = conn.execute(sa.select(profile.c.hp_id).where(profile.c.hp_sub == sub))
            assert found.scalars().all() == [profile_id], repr(sub)
        found = conn.execute(sa.select(safe.c.hs_name).where(safe.c.hs_name == "safe"))
        assert found.scalars().all() == ["safe"]
