"""Fixtures: a fake IdP, signing keys, a migrated database per backend, app and clients.

Every API test runs on each backend: SQLite always, MariaDB and PostgreSQL when
their servers answer (tests/databases.py), otherwise skipped with the reason.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlalchemy import delete

from hutch import create_app
from hutch.settings import load_settings
from hutch.signing import generate_jwks
from hutch.store import migrate
from hutch.store.db import DatabaseSettings, create_db_engine
from hutch.store.schema import coin, dpop_jti, profile, safe, safe_key
from tests.databases import BACKENDS, fresh_database, unavailable
from tests.helpers import ISSUER, Api, IdP


@pytest.fixture(scope="session")
def idp() -> IdP:
    return IdP()


@pytest.fixture(scope="session")
def key_files(tmp_path_factory, idp) -> dict[str, Path]:
    """The original CI's key layout: RS256 (kid RS256) then ES256 (kid ES256)."""
    folder = tmp_path_factory.mktemp("keys")
    keys = generate_jwks("RS256", "RS256")["keys"] + generate_jwks("ES256", "ES256")["keys"]
    sign = {"keys": keys}
    (folder / "sign.jwks").write_text(json.dumps(sign))
    (folder / "idp-public.jwks").write_text(json.dumps(idp.public_jwks))
    return {"sign": folder / "sign.jwks", "idp": folder / "idp-public.jwks", "dir": folder}


@pytest.fixture(scope="session", params=BACKENDS)
def database_url(request, tmp_path_factory):
    """One migrated database per backend for the session; tests clean up after themselves."""
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    with fresh_database(request.param, tmp_path_factory.mktemp(request.param)) as url:
        engine = create_db_engine(DatabaseSettings(url=url))
        migrate.upgrade(engine)
        engine.dispose()
        yield url


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    return json.dumps(str(value))


@pytest.fixture
def make_settings(tmp_path, key_files, database_url):
    """Write a TOML config like the original CI's (§9) with overrides, and load it."""

    def build(oidc: dict | None = None, **top):
        """``top`` values that are dicts become extra tables (``rate_limit={...}``)."""
        values = {
            "api_prefix": "api",
            "external_url": "http://localhost:4884/",
            "allow_origin": "*",
            "hutch_scope": "hutch",
            "sign_key": str(key_files["sign"]),
            "sign_exp": 600,
        }
        values.update(top)
        tables = {k: values.pop(k) for k in [k for k, v in values.items() if isinstance(v, dict)]}
        oidc_values = {"server_public_jwks": str(key_files["idp"]), "iss": ISSUER}
        oidc_values.update(oidc or {})
        lines = [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
        lines += ["[database]", f"url = {_toml(database_url)}", "[oidc]"]
        lines += [f"{k} = {_toml(v)}" for k, v in oidc_values.items() if v is not None]
        for name, table in tables.items():
            lines += [f"[{name}]"] + [f"{k} = {_toml(v)}" for k, v in table.items()
                                      if v is not None]
        path = tmp_path / "hutch.config"
        path.write_text("\n".join(lines) + "\n")
        return load_settings(path, environ={})

    return build


def _clean(engine) -> None:
    with engine.begin() as conn:
        for table in (coin, safe_key, safe, profile, dpop_jti):
            conn.execute(delete(table))


@pytest.fixture
def make_app(make_settings):
    apps = []

    def build(oidc: dict | None = None, **top):
        app = create_app(make_settings(oidc, **top))
        app.testing = True
        apps.append(app)
        return app

    yield build
    if apps:
        _clean(apps[0].extensions["hutch"].db.engine)
    for app in apps:
        app.extensions["hutch"].db.dispose()


@pytest.fixture
def app(make_app):
    return make_app()


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def api(client, idp) -> Api:
    """The user 'dev', as in the original test suite."""
    return Api(client, idp, "dev")


@pytest.fixture
def other(client, idp) -> Api:
    """A second user, to prove isolation."""
    return Api(client, idp, "mallory")


@pytest.fixture
def profile_ready(api) -> Api:
    """'dev' with a profile whose responses are signed with the ES256 key."""
    assert api.put("/api/profile", json={"name": "Dev", "sign_kid": "ES256"}).status_code == 200
    return api
