"""The ``hutch`` command as an operator runs it (RUNTIME-INTERFACE.md), in a subprocess."""

from __future__ import annotations

import json
import os
import re
import socket
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import create_engine

from hutch import create_app
from hutch.jose import b64url_decode
from hutch.settings import load_settings
from hutch.signing import SigningKeys, generate_jwks
from hutch.store import migrate
from tests.helpers import VERIFY_REGISTRY, IdP

HUTCH = [sys.executable, "-m", "hutch.cli"]


def base_env(instance: Path | None = None, **extra: str) -> dict[str, str]:
    """The parent environment without any HUTCH_* setting, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("HUTCH_") and k != "WEB_CONCURRENCY"}
    if instance is not None:
        env["HUTCH_INSTANCE"] = str(instance)
    env.update(extra)
    return env


def hutch(*args: str, cwd: Path, env: dict[str, str], timeout: float = 60):
    return subprocess.run([*HUTCH, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def instance(tmp_path) -> Path:
    return tmp_path / "inst"


@pytest.fixture
def env(instance) -> dict[str, str]:
    return base_env(instance)


@pytest.fixture
def config_dir(tmp_path) -> Path:
    """A valid config file layout with relative paths; tests write hutch.config."""
    folder = tmp_path / "etc"
    folder.mkdir()
    (folder / "sign.jwks").write_text(json.dumps(generate_jwks("ES256", "ES256")))
    (folder / "idp.jwks").write_text(json.dumps(IdP().public_jwks))
    return folder


VALID = """\
port = 4884
external_url = "http://localhost:4884/"
sign_key = "sign.jwks"
[database]
url = "sqlite:///{db}"
[oidc]
server_public_jwks = "idp.jwks"
iss = "https://idp.example/"
"""


def write_config(folder: Path, text: str | None = None) -> Path:
    path = folder / "hutch.config"
    path.write_text(text if text is not None else VALID.format(db=folder / "hutch.db"))
    return path


# keys generate ---------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", [None, "RS256", "PS256", "ES384", "ES512", "EdDSA", "Ed25519"])
def test_keys_generate_prints_a_usable_private_jwks(tmp_path, alg):
    args = ["keys", "generate"] + (["--alg", alg] if alg else [])
    result = hutch(*args, cwd=tmp_path, env=base_env())
    assert result.returncode == 0, result.stderr
    jwks = json.loads(result.stdout)
    (key,) = jwks["keys"]
    assert key["alg"] == (alg or "ES256")  # ES256 by default
    assert isinstance(key["kid"], str) and key["kid"]
    assert key["d"]  # private
    # The server accepts it as a signing JWKS, and what it signs verifies with the public half.
    keys = SigningKeys.from_jwks(jwks, 600)
    public = {"keys": [{k: v for k, v in key.items() if k != "d"}]}
    token = keys.sign({"hello": "world"})
    result = jws.deserialize_compact(token, KeySet.import_key_set(public),
                                     registry=VERIFY_REGISTRY)
    assert json.loads(result.payload) == {"hello": "world"}


def test_keys_generate_uses_the_given_kid_and_fresh_keys(tmp_path):
    first = json.loads(hutch("keys", "generate", "--kid", "mine", cwd=tmp_path,
                             env=base_env()).stdout)["keys"][0]
    second = json.loads(hutch("keys", "generate", "--kid", "mine", cwd=tmp_path,
                              env=base_env()).stdout)["keys"][0]
    assert first["kid"] == second["kid"] == "mine"
    assert first["d"] != second["d"]


@pytest.mark.parametrize("alg", ["HS256", "none", "RSA-OAEP"])
def test_keys_generate_refuses_other_algorithms(tmp_path, alg):
    result = hutch("keys", "generate", "--alg", alg, cwd=tmp_path, env=base_env())
    assert result.returncode == 2
    assert result.stdout == ""


def test_console_script_is_installed(tmp_path):
    script = Path(sys.executable).parent / "hutch"
    result = subprocess.run([str(script), "keys", "generate", "--alg", "EdDSA"], cwd=tmp_path,
                            env=base_env(), capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["keys"][0]["crv"] == "Ed25519"


# Configuration errors: exit 2 and one line naming the key ----------------------------------


def _bad_config(folder: Path, case: str) -> str:
    """Write the config for ``case``; return the key its error line must name."""
    good = VALID.format(db=folder / "hutch.db")
    if case == "unknown key":
        write_config(folder, "colour = \"blue\"\n" + good)
        return "colour"
    if case == "port 0":
        write_config(folder, good.replace("port = 4884", "port = 0"))
        return "port"
    if case == "port not an integer":
        write_config(folder, good.replace("port = 4884", 'port = "high"'))
        return "port"
    if case == "no oidc source":
        write_config(folder, good.replace('server_public_jwks = "idp.jwks"\n', ""))
        return "oidc"
    if case == "static jwks without iss":
        write_config(folder, good.replace('iss = "https://idp.example/"\n', ""))
        return "oidc.iss"
    if case == "sign_key file missing":
        write_config(folder, good.replace('"sign.jwks"', '"absent.jwks"'))
        return "sign_key"
    if case == "sign_key not a private key":
        public = json.loads((folder / "idp.jwks").read_text())
        (folder / "public.jwks").write_text(json.dumps(public))
        write_config(folder, good.replace('"sign.jwks"', '"public.jwks"'))
        return "sign_key"
    if case == "oidc jwks file missing":
        write_config(folder, good.replace('"idp.jwks"', '"nowhere.jwks"'))
        return "oidc.server_public_jwks"
    if case == "bad TOML":
        write_config(folder, good + "this is = = not toml\n")
        return "TOML"
    raise AssertionError(case)


BAD_CASES = ["unknown key", "port 0", "port not an integer", "no oidc source",
             "static jwks without iss", "sign_key file missing", "sign_key not a private key",
             "oidc jwks file missing", "bad TOML"]


@pytest.mark.parametrize("case", BAD_CASES)
def test_serve_with_a_bad_config_exits_2_with_one_line(config_dir, tmp_path, case):
    key = _bad_config(config_dir, case)
    result = hutch("serve", "--config", str(config_dir / "hutch.config"),
                   "--port", str(free_port()), "--workers", "1",
                   cwd=tmp_path, env=base_env(), timeout=30)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout


@pytest.mark.parametrize("case", ["unknown key", "port 0", "no oidc source",
                                  "static jwks without iss", "bad TOML"])
def test_db_upgrade_with_a_bad_config_exits_2_with_one_line(config_dir, tmp_path, case):
    key = _bad_config(config_dir, case)
    result = hutch("db", "upgrade", "--config", str(config_dir / "hutch.config"),
                   cwd=tmp_path, env=base_env())
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0], result.stderr
    assert not (config_dir / "hutch.db").exists()


def test_missing_config_file_exits_2(tmp_path):
    result = hutch("db", "upgrade", "--config", str(tmp_path / "nope.config"), cwd=tmp_path,
                   env=base_env())
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1


# HUTCH_* environment overrides -------------------------------------------------------------


def test_env_override_with_a_bad_value_names_the_variable(tmp_path, env):
    result = hutch("init", cwd=tmp_path, env={**env, "HUTCH_PORT": "abc"})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "HUTCH_PORT" in lines[0], result.stderr


def test_env_override_beats_the_config_file(config_dir, tmp_path):
    write_config(config_dir)  # port = 4884 in the file
    result = hutch("db", "upgrade", "--config", str(config_dir / "hutch.config"), cwd=tmp_path,
                   env=base_env(HUTCH_PORT="0"))
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "port" in lines[0].lower(), result.stderr
    assert re.search(r"\b0\b", lines[0]), result.stderr  # the value from the environment


def test_env_database_url_is_honoured_by_init(tmp_path, instance, env):
    elsewhere = tmp_path / "elsewhere.db"
    result = hutch("init", cwd=tmp_path, env={**env, "HUTCH_DATABASE__URL": f"sqlite:///{elsewhere}"})
    assert result.returncode == 0, result.stderr
    assert elsewhere.exists()
    assert not (instance / "hutch.db").exists()
    assert _revision(elsewhere) == migrate.head_revision()


def test_env_database_url_is_honoured_by_db_upgrade(config_dir, tmp_path):
    write_config(config_dir)
    elsewhere = tmp_path / "other.db"
    result = hutch("db", "upgrade", "--config", str(config_dir / "hutch.config"), cwd=tmp_path,
                   env=base_env(HUTCH_DATABASE__URL=f"sqlite:///{elsewhere}"))
    assert result.returncode == 0, result.stderr
    assert _revision(elsewhere) == migrate.head_revision()
    assert not (config_dir / "hutch.db").exists()


def _revision(db: Path) -> str | None:
    engine = create_engine(f"sqlite:///{db}")
    try:
        return migrate.current_revision(engine)
    finally:
        engine.dispose()


# init ----------------------------------------------------------------------------------------


def test_init_creates_the_embedded_instance(tmp_path, instance, env):
    result = hutch("init", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    sign = instance / "sign.jwks"
    issuer = instance / "local-issuer.jwks"
    for private in (sign, issuer):
        assert stat.S_IMODE(private.stat().st_mode) == 0o600, private
    SigningKeys.load(sign, 600)  # a valid private signing JWKS
    issuer_public = json.loads((instance / "local-issuer.public.jwks").read_text())
    assert all("d" not in key for key in issuer_public["keys"])
    assert json.loads(issuer.read_text())["keys"][0]["kid"] == issuer_public["keys"][0]["kid"]
    assert _revision(instance / "hutch.db") == migrate.head_revision()
    assert str(sign) in result.stdout  # says what it created


def test_init_is_idempotent(tmp_path, instance, env):
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    files = {p.name: p.read_bytes() for p in instance.iterdir() if p.suffix == ".jwks"}
    again = hutch("init", cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr
    assert {p.name: p.read_bytes() for p in instance.iterdir() if p.suffix == ".jwks"} == files
    assert "created" not in again.stdout
    assert _revision(instance / "hutch.db") == migrate.head_revision()


def test_init_with_a_config_file_creates_the_sign_key_but_no_local_issuer(config_dir, tmp_path):
    write_config(config_dir)
    (config_dir / "sign.jwks").unlink()
    result = hutch("init", "--config", str(config_dir / "hutch.config"), cwd=tmp_path,
                   env=base_env())
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE((config_dir / "sign.jwks").stat().st_mode) == 0o600
    SigningKeys.load(config_dir / "sign.jwks", 600)
    assert not list(config_dir.glob("local-issuer*"))
    assert _revision(config_dir / "hutch.db") == migrate.head_revision()


# token ---------------------------------------------------------------------------------------


def _embedded_client(instance: Path):
    app = create_app(load_settings(None, environ={"HUTCH_INSTANCE": str(instance)}))
    app.testing = True
    return app, app.test_client()


def test_token_is_accepted_by_an_app_built_from_the_same_instance(tmp_path, instance, env):
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    result = hutch("token", "--sub", "alice", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    header = json.loads(b64url_decode(token.split(".")[0]))
    claims = json.loads(b64url_decode(token.split(".")[1]))
    assert header["typ"] == "at+jwt"
    assert claims["iss"] == "hutch-local" and claims["sub"] == "alice"
    assert claims["scope"] == "hutch" and claims["jti"] and claims["client_id"]
    assert abs(claims["iat"] - time.time()) <= 5 and claims["exp"] - claims["iat"] == 3600
    app, client = _embedded_client(instance)
    try:
        auth = {"Authorization": f"Bearer {token}"}
        assert client.get("/api/profile", headers=auth).status_code == 404
        assert client.put("/api/profile", headers=auth, json={"name": "A"}).status_code == 200
        assert client.get("/api/profile", headers=auth).status_code == 200
        assert client.get("/api/profile").status_code == 401
    finally:
        app.extensions["hutch"].db.dispose()


def test_token_options_scope_and_lifetime(tmp_path, instance, env):
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    # A scope the server refuses is refused here already (issue R item 6).
    assert hutch("token", "--scope", "other", cwd=tmp_path, env=env).returncode == 2
    wider = hutch("token", "--scope", "openid hutch", cwd=tmp_path, env=env).stdout.strip()
    short = hutch("token", "--lifetime", "60", cwd=tmp_path, env=env).stdout.strip()
    claims = json.loads(b64url_decode(short.split(".")[1]))
    assert claims["exp"] - claims["iat"] == 60
    assert json.loads(b64url_decode(wider.split(".")[1]))["scope"] == "openid hutch"
    app, client = _embedded_client(instance)
    try:
        for token in (wider, short):
            answer = client.get("/api/profile", headers={"Authorization": f"Bearer {token}"})
            assert answer.status_code == 404  # accepted; no profile yet
    finally:
        app.extensions["hutch"].db.dispose()


def test_token_from_another_instance_is_refused(tmp_path, instance, env):
    other = tmp_path / "other-inst"
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    assert hutch("init", cwd=tmp_path, env=base_env(other)).returncode == 0
    foreign = hutch("token", cwd=tmp_path, env=base_env(other)).stdout.strip()
    app, client = _embedded_client(instance)
    try:
        answer = client.get("/api/profile", headers={"Authorization": f"Bearer {foreign}"})
        assert answer.status_code == 401
    finally:
        app.extensions["hutch"].db.dispose()


def test_token_before_init_exits_2(tmp_path, env):
    result = hutch("token", cwd=tmp_path, env=env)
    assert result.returncode == 2
    assert result.stdout == ""
    assert len(result.stderr.strip().splitlines()) == 1


def test_token_refuses_a_config_trusting_a_real_idp(config_dir, tmp_path):
    write_config(config_dir)
    result = hutch("token", "--config", str(config_dir / "hutch.config"), cwd=tmp_path,
                   env=base_env())
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "oidc" in lines[0], result.stderr


def test_token_refuses_through_hutch_config_in_the_working_directory(config_dir):
    write_config(config_dir)  # ./hutch.config is the default config file
    result = hutch("token", cwd=config_dir, env=base_env(config_dir / "inst"))
    assert result.returncode == 2 and "oidc" in result.stderr


# db upgrade ----------------------------------------------------------------------------------


def test_db_upgrade_with_a_config_file(config_dir, tmp_path):
    config = write_config(config_dir)
    first = hutch("db", "upgrade", "--config", str(config), cwd=tmp_path, env=base_env())
    assert first.returncode == 0, first.stderr
    assert _revision(config_dir / "hutch.db") == migrate.head_revision()
    assert migrate.head_revision() in first.stdout
    again = hutch("db", "upgrade", "--config", str(config), cwd=tmp_path, env=base_env())
    assert again.returncode == 0, again.stderr
    assert _revision(config_dir / "hutch.db") == migrate.head_revision()


def test_db_upgrade_finds_the_config_through_hutch_config(config_dir, tmp_path):
    config = write_config(config_dir)
    result = hutch("db", "upgrade", cwd=tmp_path, env=base_env(HUTCH_CONFIG=str(config)))
    assert result.returncode == 0, result.stderr
    assert _revision(config_dir / "hutch.db") == migrate.head_revision()
