"""hutch/store/db.py: statements run on DBAPI cursors keep SQLAlchemy's guarantees."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import DBAPIError, IntegrityError

from hutch.store import profiles
from hutch.store.db import Query


def _params(sub: str, name: str) -> dict:
    return {"sub": sub, "v_hp_name": name, "v_hp_message": None, "v_hp_picture": None,
            "v_hp_sign_kid": None, "v_hp_last_updated": 1_700_000_000}


def test_a_failed_write_leaves_nothing_and_the_next_write_works(app):
    db = app.extensions["hutch"].db
    with pytest.raises(RuntimeError), db.writing() as run:
        assert run(profiles._INSERT, _params("store-a", "half")) == 1
        raise RuntimeError("the service changed its mind")
    assert profiles.find(db, "store-a") is None
    with db.writing() as run:
        run(profiles._INSERT, _params("store-a", "whole"))
    found = profiles.find(db, "store-a")
    assert found["name"] == "whole" and found["last_updated"] == 1_700_000_000


def test_a_constraint_failure_is_sqlalchemys_integrity_error_and_rolls_back(app):
    db = app.extensions["hutch"].db
    with db.writing() as run:
        run(profiles._INSERT, _params("store-b", "first"))
    with pytest.raises(IntegrityError), db.writing() as run:
        run(profiles._UPDATE, {**_params("store-b", "changed")})
        run(profiles._INSERT, _params("store-b", "second"))  # one active profile per sub
    assert profiles.find(db, "store-b")["name"] == "first"  # the UPDATE went too


def test_rowcounts_are_rows_matched(app):
    db = app.extensions["hutch"].db
    with db.writing() as run:
        run(profiles._INSERT, _params("store-c", "same"))
    with db.writing() as run:
        # MariaDB counts changed rows unless told otherwise: the same values still match.
        assert run(profiles._UPDATE, _params("store-c", "same")) == 1
        assert run(profiles._UPDATE, _params("store-nobody", "x")) == 0


def test_a_broken_statement_is_an_sqlalchemy_error_without_its_parameters(app):
    db = app.extensions["hutch"].db
    from sqlalchemy import column, select, table

    missing = select(column("x")).select_from(table("h_no_such_table")).where(
        column("x") == "secret-value")
    with pytest.raises(DBAPIError) as raised:
        db.select(missing, {})
    assert "secret-value" not in str(raised.value)
    assert profiles.find(db, "nobody") is None  # the pool still serves


def test_in_list_parameters_are_refused_when_the_query_is_built(app):
    from sqlalchemy import bindparam, select

    from hutch.store.schema import profile

    statement = select(profile.c.hp_id).where(profile.c.hp_sub.in_(bindparam("subs",
                                                                            expanding=True)))
    with pytest.raises(ValueError, match="IN"):
        Query(statement, app.extensions["hutch"].db.engine.dialect)
