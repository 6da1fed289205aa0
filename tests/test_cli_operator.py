"""What an operator meets in the first hour (issue R items 5, 6, 9, 10, 12), through the CLI.

Every refusal is one line on stderr, exit status 2, no traceback; warnings are log lines.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from hutch import server as hutch_server
from hutch.cli import build_parser, main
from hutch.jose import b64url_decode
from hutch.signing import generate_jwks
from hutch.store import migrate
from hutch.store.db import DatabaseSettings, create_db_engine
from tests.databases import SERVER_URLS, unavailable
from tests.helpers import IdP
from tests.test_cli import HUTCH, base_env, free_port, hutch

CONFIG = """\
sign_key = "sign.jwks"
{top}
[database]
url = "{url}"
[oidc]
server_public_jwks = "idp.jwks"
iss = "https://idp.example/"
{oidc}
"""


@pytest.fixture
def folder(tmp_path) -> Path:
    """A config folder with an owner-only signing key and the IdP's public keys."""
    folder = tmp_path / "etc"
    folder.mkdir()
    fd = os.open(folder / "sign.jwks", os.O_WRONLY | os.O_CREAT, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(generate_jwks("ES256", "ES256"), handle)
    (folder / "idp.jwks").write_text(json.dumps(IdP().public_jwks))
    return folder


def config(folder: Path, url: str | None = None, top: str = "", oidc: str = "") -> str:
    path = folder / "hutch.config"
    path.write_text(CONFIG.format(url=url or f"sqlite:///{folder / 'hutch.db'}", top=top,
                                  oidc=oidc))
    return str(path)


def one_line(result, *words: str) -> str:
    """Exit 2, a single stderr line holding ``words``, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    for word in words:
        assert word in lines[0], (word, lines[0])
    return lines[0]


def run_all(folder: Path, tmp_path: Path, url: str):
    """serve, init, db upgrade and db current with ``url``: (command, result) each."""
    path = config(folder, url)
    for command in (("serve", "--port", str(free_port()), "--workers", "1"), ("init",),
                    ("db", "upgrade"), ("db", "current")):
        yield command, hutch(*command, "--config", path, cwd=tmp_path, env=base_env())


# 10. Database problems: one line, exit 2 ---------------------------------------------------


@pytest.mark.parametrize("url, words", [
    ("nonsense", ["database.url", "not a database URL"]),
    ("foo://somewhere/db", ["database.url", "unknown database kind"]),
    ("postgresql+psycopg2://u@127.0.0.1/x", ["database.url", "psycopg2", "not installed"]),
], ids=["not-a-url", "unknown-kind", "missing-driver"])
def test_a_bad_database_url_is_one_line(folder, tmp_path, url, words):
    for _command, result in run_all(folder, tmp_path, url):
        one_line(result, *words)


@pytest.mark.parametrize("kind", ["mysql+pymysql://root@127.0.0.1:{port}/hutch",
                                  "postgresql+psycopg://root@127.0.0.1:{port}/hutch"],
                         ids=["mariadb", "postgresql"])
def test_an_unreachable_database_is_one_line(folder, tmp_path, kind):
    url = kind.format(port=free_port())  # nothing listens there
    for command, result in run_all(folder, tmp_path, url):
        line = one_line(result, "database.url", "cannot reach")
        assert "hutch init" not in line, command


@pytest.fixture
def mariadb_user():
    """A throwaway MariaDB user with a password; dropped afterwards."""
    reason = unavailable("mariadb")
    if reason:
        pytest.skip(reason)
    name = "hutch_pw_" + secrets.token_hex(4)
    admin = create_engine(SERVER_URLS["mariadb"], isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE USER '{name}'@'%' IDENTIFIED BY 'right-password'"))
        conn.execute(text(f"CREATE USER '{name}'@'localhost' IDENTIFIED BY 'right-password'"))
    yield name
    with admin.connect() as conn:
        conn.execute(text(f"DROP USER IF EXISTS '{name}'@'%'"))
        conn.execute(text(f"DROP USER IF EXISTS '{name}'@'localhost'"))
    admin.dispose()


def test_a_wrong_password_is_one_line_that_does_not_say_init(folder, tmp_path, mariadb_user):
    server = make_url(SERVER_URLS["mariadb"])
    url = server.set(username=mariadb_user, password="wrong-password",
                     database="hutch").render_as_string(hide_password=False)
    for command, result in run_all(folder, tmp_path, url):
        line = one_line(result, "database.url", "refused the login", mariadb_user)
        assert "hutch init" not in line and "create it" not in line, command
        assert "wrong-password" not in result.stderr + result.stdout


@pytest.mark.parametrize("backend", ["mariadb", "postgresql"])
def test_a_missing_role_or_database_is_one_line(folder, tmp_path, backend):
    reason = unavailable(backend)
    if reason:
        pytest.skip(reason)
    server = make_url(SERVER_URLS[backend])
    no_role = server.set(username="nobody_" + secrets.token_hex(3), database="x")
    no_database = server.set(database="missing_" + secrets.token_hex(3))
    for url, words in ((no_role, ["refused the login"]), (no_database, ["does not exist"])):
        for command, result in run_all(folder, tmp_path, url.render_as_string(False)):
            line = one_line(result, "database.url", *words)
            assert "hutch init" not in line, command


def test_a_sqlite_file_that_cannot_be_made_is_one_line(folder, tmp_path):
    blocker = folder / "blocker"
    blocker.write_text("a file where a folder should be")
    for _command, result in run_all(folder, tmp_path, f"sqlite:///{blocker}/h.db"):
        one_line(result, str(blocker))


def test_an_os_error_escaping_serve_is_one_line(folder, tmp_path, monkeypatch, capsys):
    """A taken port (or any OSError from the server) ends in one line and exit 2."""
    path = config(folder)
    assert main(["init", "--config", path]) == 0

    def taken(app, host, port, workers):
        raise OSError(98, "Address already in use")

    monkeypatch.setattr(hutch_server, "serve", taken)
    monkeypatch.setattr(hutch_server, "ensure_port_free", lambda host, port: None)
    capsys.readouterr()
    assert main(["serve", "--config", path, "--port", "4890"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["hutch: Address already in use"], err


# 10. TOML types are strict; the environment keeps being parsed --------------------------


@pytest.mark.parametrize("line, key", [('port = "4890"', "port"),
                                       ('sign_exp = "600"', "sign_exp"),
                                       ('access_log = "false"', "access_log"),
                                       ('max_token_lifetime = "600"', "max_token_lifetime")])
def test_a_quoted_number_or_boolean_in_toml_is_refused(folder, tmp_path, line, key):
    path = config(folder, top=line)
    for command in (("db", "upgrade"), ("init",), ("serve", "--port", str(free_port()))):
        one_line(hutch(*command, "--config", path, cwd=tmp_path, env=base_env()), key, "string")


def test_environment_values_are_still_parsed(folder, tmp_path):
    path = config(folder)
    result = hutch("db", "upgrade", "--config", path, cwd=tmp_path,
                   env=base_env(HUTCH_PORT="4890", HUTCH_ACCESS_LOG="false",
                                HUTCH_MAX_TOKEN_LIFETIME="600"))
    assert result.returncode == 0, result.stderr


# 10. init with a broken signing key ---------------------------------------------------------


@pytest.mark.parametrize("case", ["directory", "not json", "unreadable"])
def test_init_with_an_unusable_signing_key_is_not_nothing_to_do(folder, tmp_path, case):
    key = folder / "sign.jwks"
    key.unlink()
    if case == "directory":
        key.mkdir()
    elif case == "not json":
        key.write_text("not a key")
    else:
        if os.geteuid() == 0:
            pytest.skip("root reads a file whatever its mode")
        key.write_text(json.dumps(generate_jwks("ES256")))
        key.chmod(0)
    path = config(folder)
    assert hutch("db", "upgrade", "--config", path, cwd=tmp_path, env=base_env()).returncode == 0
    result = hutch("init", "--config", path, cwd=tmp_path, env=base_env())
    one_line(result, "sign_key")
    assert "nothing to do" not in result.stdout


# 9. Keys on disk ------------------------------------------------------------------------------


def generate(*args: str, cwd: Path, umask: int = 0):
    """``hutch keys generate`` under a permissive umask: the mode must not depend on it."""
    return subprocess.run([*HUTCH, "keys", "generate", *args], cwd=cwd, env=base_env(),
                          capture_output=True, text=True, timeout=60, check=False,
                          preexec_fn=lambda: os.umask(umask))


def test_keys_generate_out_writes_an_owner_only_file(tmp_path):
    out = tmp_path / "keys" / "sign.jwks"
    result = generate("--out", str(out), "--kid", "k1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert json.loads(out.read_text())["keys"][0]["kid"] == "k1"
    assert "k1" not in result.stdout.replace("kid k1", "") and '"d"' not in result.stdout


def test_keys_generate_out_refuses_to_overwrite_without_force(tmp_path):
    out = tmp_path / "sign.jwks"
    out.write_text("precious")
    out.chmod(0o644)
    one_line(generate("--out", str(out), cwd=tmp_path), str(out), "--force")
    assert out.read_text() == "precious"
    result = generate("--out", str(out), "--force", "--kid", "new", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert json.loads(out.read_text())["keys"][0]["kid"] == "new"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600  # a new file, not the old one's mode
    assert [p.name for p in tmp_path.iterdir()] == ["sign.jwks"]  # no temporary file left


def test_keys_generate_out_does_not_follow_a_planted_symlink(tmp_path):
    target = tmp_path / "elsewhere"
    (tmp_path / "sign.jwks").symlink_to(target)
    one_line(generate("--out", str(tmp_path / "sign.jwks"), cwd=tmp_path), "exists")
    assert not target.exists()


def test_init_warns_when_the_signing_key_is_readable_by_others(folder, tmp_path):
    path = config(folder)
    quiet = hutch("init", "--config", path, cwd=tmp_path, env=base_env())
    assert quiet.returncode == 0 and "sign_key" not in quiet.stderr, quiet.stderr
    (folder / "sign.jwks").chmod(0o644)
    result = hutch("init", "--config", path, cwd=tmp_path, env=base_env())
    assert result.returncode == 0, result.stderr
    assert "WARNING" in result.stderr and "sign_key" in result.stderr, result.stderr
    assert "0644" in result.stderr


def test_init_warns_when_the_local_issuer_key_is_readable_by_others(tmp_path):
    env = base_env(tmp_path / "inst")
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    issuer = tmp_path / "inst" / "local-issuer.jwks"
    assert stat.S_IMODE(issuer.stat().st_mode) == 0o600
    issuer.chmod(0o640)
    result = hutch("init", cwd=tmp_path, env=env)
    assert "local issuer key" in result.stderr and "0640" in result.stderr, result.stderr


@pytest.fixture
def served(monkeypatch):
    """``hutch serve`` through main() up to the point where the server would start."""
    calls = []
    monkeypatch.setattr(hutch_server, "serve", lambda *args: calls.append(args) or 0)
    # Whether the port is free is another test's business (test_slow_clients.py).
    monkeypatch.setattr(hutch_server, "ensure_port_free", lambda host, port: None)
    return calls


def test_serve_warns_about_exposed_keys_and_a_missing_audience(folder, served, caplog):
    path = config(folder)
    assert main(["init", "--config", path]) == 0
    (folder / "sign.jwks").chmod(0o604)
    with caplog.at_level(logging.WARNING):
        assert main(["serve", "--config", path]) == 0
    assert served, "the server was not started"
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("sign_key" in w and "0604" in w for w in warnings), warnings
    # 5: a real provider without oidc.aud accepts tokens meant for its other APIs.
    assert any("oidc.aud is not set" in w for w in warnings), warnings


def test_serve_does_not_warn_when_aud_is_set_and_keys_are_private(folder, served, caplog):
    path = config(folder, oidc='aud = "hutch"')
    assert main(["init", "--config", path]) == 0
    with caplog.at_level(logging.WARNING):
        assert main(["serve", "--config", path]) == 0
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert not any("oidc.aud" in w or "sign_key" in w for w in warnings), warnings


def test_serve_on_the_embedded_default_does_not_ask_for_aud(tmp_path, served, caplog,
                                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in [n for n in os.environ if n.startswith("HUTCH_")]:
        monkeypatch.delenv(name)
    monkeypatch.setenv("HUTCH_INSTANCE", str(tmp_path / "inst"))
    with caplog.at_level(logging.WARNING):
        assert main(["serve"]) == 0
    assert not any("oidc.aud" in r.getMessage() for r in caplog.records)
    (tmp_path / "inst" / "sign.jwks").chmod(0o644)
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert main(["serve"]) == 0
    exposed = [r.getMessage() for r in caplog.records if "0644" in r.getMessage()]
    assert len(exposed) == 1 and "sign_key" in exposed[0], exposed  # said once


# 6. hutch token refuses what the server would refuse ------------------------------------


@pytest.fixture
def embedded(tmp_path) -> dict[str, str]:
    env = base_env(tmp_path / "inst")
    assert hutch("init", cwd=tmp_path, env=env).returncode == 0
    return env


@pytest.mark.parametrize("args, word", [
    (["--lifetime", "0"], "--lifetime"),
    (["--lifetime", "-60"], "--lifetime"),
    (["--lifetime", "86401"], "max_token_lifetime"),
    (["--lifetime", str(100 * 365 * 86400)], "max_token_lifetime"),
    (["--sub", ""], "--sub"),
    (["--sub", "a" * 129], "--sub"),
    (["--sub", "é" * 64 + "a"], "--sub"),
    (["--sub", "a\x01b"], "--sub"),
    (["--sub", "dev\n"], "--sub"),
    (["--scope", "other"], "hutch"),
    (["--scope", "openid profile"], "--scope"),
    (["--scope", "hutch\x7f"], "--scope"),
    (["--scope", ""], "--scope"),
])
def test_token_refuses_what_the_server_would_refuse(tmp_path, embedded, args, word):
    result = hutch("token", *args, cwd=tmp_path, env=embedded)
    one_line(result, word)
    assert result.stdout == ""


def test_token_lifetime_follows_max_token_lifetime(tmp_path, embedded):
    env = {**embedded, "HUTCH_MAX_TOKEN_LIFETIME": "600"}
    one_line(hutch("token", "--lifetime", "601", cwd=tmp_path, env=env), "600")
    ok = hutch("token", "--lifetime", "600", "--sub", "é" * 64, "--scope", "openid hutch",
               cwd=tmp_path, env=env)
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.count(".") == 2
    # Without --lifetime: an hour, or max_token_lifetime when that is shorter.
    default = hutch("token", cwd=tmp_path, env=env)
    claims = json.loads(b64url_decode(default.stdout.strip().split(".")[1]))
    assert claims["exp"] - claims["iat"] == 600


# 12. --version, help texts, db upgrade's warning, db current ---------------------------


def test_version(tmp_path):
    from importlib.metadata import version

    result = subprocess.run([*HUTCH, "--version"], cwd=tmp_path, env=base_env(),
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0
    assert result.stdout.strip() == f"hutch {version('hutch')}"


def _options(parser, path=()):
    """(command path, action) for every option of every subcommand."""
    for action in parser._actions:
        if action.option_strings and action.dest not in ("help", "version"):
            yield path, action
        choices = getattr(action, "choices", None)
        if isinstance(choices, dict):
            for name, sub in choices.items():
                yield from _options(sub, (*path, name))


def test_every_option_says_what_it_does_and_its_default():
    options = list(_options(build_parser()))
    assert len(options) >= 14
    for path, action in options:
        name = " ".join(path) + " " + action.option_strings[0]
        assert action.help and len(action.help) > 15, name
        assert "default" in action.help, name
    workers = next(a for p, a in options if a.option_strings == ["--workers"])
    assert "WEB_CONCURRENCY" in workers.help
    result = subprocess.run([*HUTCH, "serve", "--help"], capture_output=True, text=True,
                            env=base_env(), timeout=60, check=False)
    assert "WEB_CONCURRENCY" in result.stdout and "4884" in result.stdout


def _at(url: str, revision: str) -> None:
    engine = create_db_engine(DatabaseSettings(url=url))
    try:
        migrate.upgrade(engine, revision)
    finally:
        engine.dispose()


def test_db_upgrade_says_to_back_up_before_deleting_data(folder, tmp_path):
    url = f"sqlite:///{folder / 'hutch.db'}"
    _at(url, "0001")  # the original schema, as a C server's database has it
    path = config(folder, url)
    result = hutch("db", "upgrade", "--config", path, cwd=tmp_path, env=base_env())
    assert result.returncode == 0, result.stderr  # scripts are not blocked
    warning = [line for line in result.stderr.splitlines() if "back up" in line]
    assert len(warning) == 1 and "0002" in warning[0] and "deleted" in warning[0], result.stderr
    assert migrate.head_revision() in result.stdout


def test_db_upgrade_of_a_fresh_database_warns_of_nothing(folder, tmp_path):
    result = hutch("db", "upgrade", "--config", config(folder), cwd=tmp_path, env=base_env())
    assert result.returncode == 0 and "back up" not in result.stderr, result.stderr


class _Terminal:
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("answer, upgraded", [("n", False), ("", False), ("y", True)])
def test_db_upgrade_at_a_terminal_asks_first(folder, monkeypatch, capsys, answer, upgraded):
    url = f"sqlite:///{folder / 'hutch.db'}"
    _at(url, "0001")
    asked = []
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: asked.append(prompt) or answer)
    status = main(["db", "upgrade", "--config", config(folder, url)])
    assert asked and "Back up" in asked[0]
    engine = create_engine(url)
    try:
        revision = migrate.current_revision(engine)
    finally:
        engine.dispose()
    if upgraded:
        assert status == 0 and revision == migrate.head_revision()
    else:
        assert status == 2 and revision == "0001"
        assert "cancelled" in capsys.readouterr().err


def test_db_upgrade_yes_does_not_ask(folder, monkeypatch):
    url = f"sqlite:///{folder / 'hutch.db'}"
    _at(url, "0001")
    monkeypatch.setattr(sys, "stdin", _Terminal())
    monkeypatch.setattr("builtins.input", lambda prompt: pytest.fail("asked despite --yes"))
    assert main(["db", "upgrade", "--yes", "--config", config(folder, url)]) == 0


def test_db_current_shows_where_the_database_stands(folder, tmp_path):
    url = f"sqlite:///{folder / 'hutch.db'}"
    path = config(folder, url)
    head = migrate.head_revision()

    def current() -> list[str]:
        result = hutch("db", "current", "--config", path, cwd=tmp_path, env=base_env())
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()

    _at(url, "0001")
    lines = current()
    assert lines[0] == "current  0001" and lines[1] == f"head     {head}"
    pending = lines[2:]
    assert pending[0].startswith("pending  0002 ") and "deletes" in pending[0], lines
    assert pending[-1].startswith(f"pending  {head} ")
    _at(url, "head")
    assert current() == ["current  " + head, "head     " + head,
                         "pending  none: the schema is current"]
