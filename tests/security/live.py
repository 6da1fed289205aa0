"""A real ``hutch serve`` (granian, several workers) for the fault and multi-worker suites.

The server trusts the test IdP through a static JWKS file, so tests mint their
own tokens (and DPoP-bound ones). It runs in its own process group: ``kill()``
SIGKILLs the master and every worker at once, like a power cut of the service.
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from hutch.signing import generate_jwks
from hutch.store import migrate
from hutch.store.db import DatabaseSettings, create_db_engine
from tests.helpers import ISSUER, IdP

READY_TIMEOUT = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hutch_command() -> list[str]:
    beside = Path(sys.executable).with_name("hutch")
    if beside.exists():
        return [str(beside)]
    found = shutil.which("hutch")
    return [found] if found else [sys.executable, "-m", "hutch.cli"]


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    data: bytes

    def json(self):
        return json.loads(self.data)

    # The Flask test response's shape, for tests.helpers.decode_signed.
    @property
    def status_code(self) -> int:
        return self.status

    def get_data(self, as_text: bool = False):
        return self.data.decode() if as_text else self.data


class LiveHutch:
    def __init__(self, folder: Path, idp: IdP, database_url: str, workers: int = 2,
                 **oidc: object):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.workers = workers
        self.port = free_port()
        self.external_url = f"http://127.0.0.1:{self.port}/"
        self.config = folder / "hutch.config"
        self.process: subprocess.Popen | None = None
        self.log = folder / "serve.log"
        (folder / "sign.jwks").write_text(json.dumps(generate_jwks("ES256", "ES256")))
        (folder / "idp.jwks").write_text(json.dumps(idp.public_jwks))
        lines = [f"port = {self.port}", 'bind_address = "127.0.0.1"',
                 f"external_url = {json.dumps(self.external_url)}", 'sign_key = "sign.jwks"',
                 "[database]", f"url = {json.dumps(database_url)}",
                 "[oidc]", 'server_public_jwks = "idp.jwks"', f"iss = {json.dumps(ISSUER)}"]
        lines += [f"{key} = {json.dumps(value)}" for key, value in oidc.items()]
        self.config.write_text("\n".join(lines) + "\n")
        engine = create_db_engine(DatabaseSettings(url=database_url))
        try:
            migrate.upgrade(engine)
        finally:
            engine.dispose()

    @property
    def env(self) -> dict[str, str]:
        return {k: v for k, v in os.environ.items()
                if not k.startswith("HUTCH_") and k != "WEB_CONCURRENCY"}

    def start(self) -> LiveHutch:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [*hutch_command(), "serve", "--config", str(self.config),
                 "--workers", str(self.workers)],
                cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"hutch serve exited with {self.process.returncode}:\n"
                            + self.output()[-3000:])
            try:
                if self.request("GET", "/.well-known/hutch-configuration").status == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.05)
        self.kill()
        pytest.fail(f"hutch serve not ready within {READY_TIMEOUT} s:\n" + self.output()[-3000:])

    def kill(self) -> None:
        """SIGKILL the whole process group: master and workers die at once."""
        if self.process is None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.process.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._group_alive():
            time.sleep(0.05)

    def _group_alive(self) -> bool:
        try:
            os.killpg(self.process.pid, 0)
        except ProcessLookupError:
            return False
        return True

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            if self.process is not None and self._group_alive():
                self.kill()
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(35)
        except subprocess.TimeoutExpired:
            self.kill()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def connect(self, timeout: float = 10) -> http.client.HTTPConnection:
        return http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None,
                conn: http.client.HTTPConnection | None = None) -> Answer:
        """One request; on ``conn`` (kept open) when given, else on a new connection."""
        own = conn is None
        conn = conn or self.connect()
        try:
            conn.request(method, path, body=body, headers=headers or {})
            response = conn.getresponse()
            headers = CaseInsensitiveDict(response.getheaders())
            return Answer(response.status, headers, response.read())
        finally:
            if own:
                conn.close()

    def call(self, token: str, method: str, path: str, document=None,
             conn: http.client.HTTPConnection | None = None) -> Answer:
        headers = {"Authorization": f"Bearer {token}"}
        body = None
        if document is not None:
            body = json.dumps(document).encode()
            headers["Content-Type"] = "application/json"
        return self.request(method, path, body, headers, conn)
