"""A real ``hutch serve`` in a subprocess, set up the way an operator would do it.

``hutch keys generate`` makes the signing key, ``hutch init`` the SQLite schema,
and the config trusts an identity provider through ``oidc.server_remote_config``.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests
from joserfc import jws
from joserfc.jwk import KeySet

from tests.helpers import VERIFY_REGISTRY
from tests.integration.glewlwyd import DpopKey, free_port

READY_TIMEOUT = 30

CONFIG = """\
port = {port}
bind_address = "127.0.0.1"
external_url = "http://127.0.0.1:{port}/"
hutch_scope = "hutch"
sign_key = "sign.jwks"

[database]
url = "sqlite:///{folder}/hutch.db"

[oidc]
server_remote_config = "{discovery}"
{oidc}
"""


def hutch_command() -> str:
    beside = Path(sys.executable).with_name("hutch")
    return str(beside) if beside.exists() else (shutil.which("hutch") or "hutch")


class HutchServer:
    def __init__(self, folder: Path, discovery_url: str, **oidc: Any):
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self.config = folder / "hutch.config"
        self.log = folder / "hutch.log"
        self.process: subprocess.Popen | None = None
        self._jwks: KeySet | None = None
        self._stopping = False
        keys = subprocess.run([hutch_command(), "keys", "generate", "--alg", "ES256"],
                              check=True, capture_output=True, text=True).stdout
        (folder / "sign.jwks").write_text(keys)
        extra = "\n".join(f"{key} = {json.dumps(value)}" for key, value in oidc.items())
        self.config.write_text(CONFIG.format(port=self.port, folder=folder,
                                             discovery=discovery_url, oidc=extra))
        subprocess.run([hutch_command(), "init", "--config", str(self.config)], check=True,
                       capture_output=True)

    def start(self, wait: bool = True) -> HutchServer:
        # One worker: each worker holds its own JWKS cache and fetch counter.
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [hutch_command(), "serve", "--config", str(self.config), "--workers", "1"],
                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"hutch serve exited with {self.process.returncode}:\n"
                                   + self.output())
            try:
                if requests.get(self.url + ".well-known/hutch-configuration", timeout=1).ok:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise RuntimeError("hutch serve did not become ready:\n" + self.output())

    def wait_exit(self, timeout: float) -> int:
        return self.process.wait(timeout=timeout)

    def terminate(self) -> None:
        """Ask it to drain and stop (SIGTERM), without waiting."""
        if self.process is not None and self.process.poll() is None and not self._stopping:
            self.process.send_signal(signal.SIGTERM)
            self._stopping = True

    def stop(self) -> None:
        if self.process is None:
            return
        self.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    # -- API calls ---------------------------------------------------------------------

    def call(self, method: str, path: str, token: str, dpop: DpopKey | None = None,
             proof: str | None = None, scheme: str | None = None, **kwargs) -> requests.Response:
        """``path`` like "api/profile"; with ``dpop`` the call carries a fresh proof."""
        url = self.url + path
        headers = {"Authorization": f"{scheme or ('DPoP' if dpop else 'Bearer')} {token}"}
        if dpop is not None and proof is None:
            proof = dpop.proof(method, url, token)
        if proof is not None:
            headers["DPoP"] = proof
        return requests.request(method, url, headers=headers, timeout=10, **kwargs)

    def read(self, path: str, token: str, dpop: DpopKey | None = None) -> Any:
        """GET a signed answer (§5), verify it with Hutch's published keys, return its payload."""
        answer = self.call("GET", path, token, dpop)
        assert answer.status_code == 200, (answer.status_code, answer.text[:300])
        assert answer.headers["Content-Type"] == "application/jwt"
        if self._jwks is None:
            self._jwks = KeySet.import_key_set(requests.get(self.url + "jwks", timeout=5).json())
        result = jws.deserialize_compact(answer.text, self._jwks, registry=VERIFY_REGISTRY)
        return json.loads(result.payload)
