"""The README's path from the embedded default to MariaDB and PostgreSQL, followed literally.

The blocks marked ``<!-- readme-test: NAME -->`` in README.md are run as a new user would:
the SQL as the database administrator, the config file as written, the shell lines in a
folder that holds ``.venv`` and an embedded-default ``hutch-instance/``. Only names are
changed: a unique database and user (dropped afterwards), a free port for 4884.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from joserfc import jws
from joserfc.jwk import KeySet
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from tests.databases import SERVER_URLS, unavailable
from tests.helpers import VERIFY_REGISTRY
from tests.test_server import BIND_PROBLEM, free_port

README = Path(__file__).resolve().parent.parent / "README.md"
MARKED = re.compile(r"<!-- readme-test: ([a-z-]+) -->\s*```[a-z]*\n(.*?)```", re.DOTALL)
READY_TIMEOUT = 30

pytestmark = pytest.mark.skipif(BIND_PROBLEM is not None, reason=str(BIND_PROBLEM))


def readme_blocks() -> dict[str, str]:
    return {name: body for name, body in MARKED.findall(README.read_text(encoding="utf-8"))}


def test_the_readme_marks_every_block_the_path_needs():
    assert set(readme_blocks()) >= {"mariadb-sql", "postgresql-sql", "config", "start", "call"}


def _statements(sql: str) -> list[str]:
    return [part.strip() for part in sql.split(";") if part.strip()]


def _config(block: str, backend: str, name: str, port: int, server) -> str:
    """The README's config with the unique names; for PostgreSQL the second url line."""
    lines = []
    for line in block.splitlines():
        if backend == "postgresql" and line.startswith("url = "):
            line = "# " + line
        elif backend == "postgresql" and line.startswith("# url = "):
            line = line[2:]
        if line.startswith("url = "):
            line = re.sub(r"\bhutch\b", name, line)
            default = 3306 if backend == "mariadb" else 5432
            line = line.replace(f"127.0.0.1:{default}", f"127.0.0.1:{server.port or default}")
        lines.append(line.replace("4884", str(port)))
    return "\n".join(lines) + "\n"


def _environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items()
            if not k.startswith("HUTCH_") and k != "WEB_CONCURRENCY"}


def _shell(line: str, folder: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], cwd=folder, env=_environment(),
                          capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(params=["mariadb", "postgresql"])
def backend(request):
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    server = make_url(SERVER_URLS[request.param])
    if server.host not in (None, "127.0.0.1", "localhost"):
        pytest.skip("the README's user connects from 127.0.0.1: needs a local server")
    return request.param


def test_the_readme_path_from_the_embedded_default(backend, tmp_path):
    blocks = readme_blocks()
    name = "hutch_rt_" + secrets.token_hex(4)
    port = free_port()
    server = make_url(SERVER_URLS[backend])
    # Where the README starts: a venv, and the embedded default's instance folder.
    (tmp_path / ".venv").symlink_to(sys.prefix)
    made = _shell(".venv/bin/hutch init", tmp_path)
    assert made.returncode == 0, made.stderr
    assert (tmp_path / "hutch-instance" / "local-issuer.jwks").exists()

    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    serving = None
    try:
        with admin.connect() as conn:
            for statement in _statements(blocks[f"{backend}-sql"]):
                conn.execute(text(re.sub(r"\bhutch\b", name, statement)))
        (tmp_path / "production.config").write_text(
            _config(blocks["config"], backend, name, port, server))

        init, serve = [line for line in blocks["start"].splitlines() if line.strip()]
        done = _shell(init, tmp_path)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "created signing keys" in done.stdout
        assert "created database schema empty ->" in done.stdout
        log = tmp_path / "serve.log"
        with log.open("wb") as out:
            serving = subprocess.Popen(["bash", "-c", "exec " + serve], cwd=tmp_path,
                                       env=_environment(), stdout=out, stderr=subprocess.STDOUT)
        base = f"http://127.0.0.1:{port}/"
        _wait_ready(serving, base, log)
        started = log.read_text()
        assert f"database {server.drivername}://{name}:***@127.0.0.1:" in started, started
        assert "change-me" not in started

        call = blocks["call"].replace("localhost:4884", f"127.0.0.1:{port}")
        answered = _shell(call, tmp_path)
        assert answered.returncode == 0, answered.stderr
        token = answered.stdout.strip().splitlines()[-1]
        keys = KeySet.import_key_set(requests.get(base + "jwks", timeout=5).json())
        payload = json.loads(jws.deserialize_compact(token, keys, registry=VERIFY_REGISTRY)
                             .payload)
        assert payload["name"] == "Alice"
    finally:
        if serving is not None:
            serving.send_signal(signal.SIGTERM)
            try:
                serving.wait(35)
            except subprocess.TimeoutExpired:
                serving.kill()
                serving.wait()
        _drop(admin, backend, name)


def _wait_ready(process: subprocess.Popen, base: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"hutch serve exited with {process.returncode}:\n{log.read_text()}")
        try:
            if requests.get(base + ".well-known/hutch-configuration", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    pytest.fail(f"hutch serve not ready:\n{log.read_text()}")


def _drop(admin, backend: str, name: str) -> None:
    with admin.connect() as conn:
        if backend == "postgresql":
            conn.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                              "WHERE datname = :n AND pid <> pg_backend_pid()"), {"n": name})
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(text(f"DROP ROLE IF EXISTS {name}"))
        else:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(text(f"DROP USER IF EXISTS '{name}'@'127.0.0.1'"))
    admin.dispose()
