"""Run a real Glewlwyd (Debian's package `glewlwyd`) for the integration tests.

The server gets its own SQLite database, made with the SQL script the package
ships, and a config file; everything else (scopes, user, client, OpenID Connect
plugins and their keys) goes through its admin REST API, as an operator's
script would. It listens on a free port of 127.0.0.1 behind a ``CountingProxy``
whose URL is its external URL, so every discovery URL points through the proxy.
"""

from __future__ import annotations

import gzip
import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests
from joserfc import jws
from joserfc.jwk import ECKey, thumbprint

from hutch.jose import b64url_sha256
from tests.integration.proxy import CountingProxy

INIT_SCRIPTS = (  # the same script twice; /usr/share/doc may be stripped from an image
    Path("/usr/share/dbconfig-common/data/glewlwyd/install/sqlite3"),
    Path("/usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz"),
)
MODULES = Path("/usr/lib/glewlwyd")
ADMIN = ("admin", "password")  # created by the package's init script
USER = ("alice", "alice-password")
CLIENT = ("hutch-client", "hutch-client-secret")
REDIRECT_URI = "http://127.0.0.1/callback"
START_TIMEOUT = 15

CONFIG = """\
port={port}
bind_address="127.0.0.1"
external_url="{external_url}"
login_url="login.html"
api_prefix="api"
log_mode="file"
log_level="INFO"
log_file="{log}"
cookie_secure=0
session_key="GLEWLWYD2_SESSION_ID"
session_expiration=3600
admin_session_authentication="cookie"
profile_session_authentication="cookie"
login_api_enabled=true
plugin_api_run_enabled=""
admin_scope="g_admin"
profile_scope="g_profile"
user_module_path="{modules}/user"
client_module_path="{modules}/client"
user_auth_scheme_module_path="{modules}/scheme"
plugin_module_path="{modules}/plugin"
hash_algorithm="SHA512"
use_secure_connection=false
# 2.7.5 refuses to start ("secure connection is active but certificate is not
# valid") unless these are set, even with use_secure_connection=false.
secure_connection_key_file="{folder}/unused.key"
secure_connection_pem_file="{folder}/unused.pem"
database={{ type="sqlite3"; path="{database}"; }};
"""


def binary() -> str | None:
    found = shutil.which("glewlwyd") or "/usr/bin/glewlwyd"
    return found if os.access(found, os.X_OK) else None


def unavailable() -> str | None:
    """Why Glewlwyd cannot run here, or None."""
    if binary() is None:
        return "glewlwyd is not installed (Debian: apt-get install glewlwyd)"
    if not any(p.exists() for p in INIT_SCRIPTS):
        return "glewlwyd's SQLite init script is missing"
    if not (MODULES / "plugin" / "libprotocol_oidc.so").exists():
        return f"glewlwyd's OIDC plugin is missing under {MODULES}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def init_sql() -> str:
    path = next(p for p in INIT_SCRIPTS if p.exists())
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as script:
        return script.read()


class DpopKey:
    """A client's DPoP key pair (RFC 9449) that signs proofs."""

    def __init__(self):
        self.key = ECKey.generate_key("P-256")
        self.public = self.key.as_dict(private=False)
        self.jkt = thumbprint(self.public)

    def proof(self, method: str, url: str, access_token: str | None = None) -> str:
        claims = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": url,
                  "iat": int(time.time())}
        if access_token is not None:
            claims["ath"] = b64url_sha256(access_token)
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.public}
        return jws.serialize_compact(header, json.dumps(claims).encode(), self.key)


class Glewlwyd:
    def __init__(self, folder: Path):
        self.folder = folder
        self.port = free_port()
        self.proxy = CountingProxy(self.port)
        self.url = self.proxy.url  # what the world (and Hutch) sees
        self.log = folder / "glewlwyd.log"
        self.process: subprocess.Popen | None = None
        self.admin_session = requests.Session()
        self.keys: dict[str, dict] = {}  # plugin -> its private JWKS, signing key first
        database = folder / "glewlwyd.db"
        conn = sqlite3.connect(database)
        try:
            conn.executescript(init_sql())
        finally:
            conn.close()
        (folder / "glewlwyd.conf").write_text(CONFIG.format(
            port=self.port, external_url=self.url, log=self.log, modules=MODULES,
            folder=folder, database=database))

    # -- process ---------------------------------------------------------------------

    def start(self) -> Glewlwyd:
        self.process = subprocess.Popen(
            [binary(), f"--config-file={self.folder / 'glewlwyd.conf'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"glewlwyd exited with {self.process.returncode}:\n"
                                   + self.log_tail())
            try:
                if requests.get(f"http://127.0.0.1:{self.port}/config/", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("glewlwyd did not answer in time:\n" + self.log_tail())
            time.sleep(0.05)
        self.admin("POST", "/auth/", {"username": ADMIN[0], "password": ADMIN[1]})
        return self

    def stop(self) -> None:
        """SIGTERM, as its service unit does; it unloads its plugins and exits."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def close(self) -> None:
        self.stop()
        self.proxy.close()

    def log_tail(self, lines: int = 30) -> str:
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        return "\n".join(text.splitlines()[-lines:])

    # -- admin REST API ----------------------------------------------------------------

    def admin(self, method: str, path: str, body=None) -> requests.Response:
        answer = self.admin_session.request(
            method, f"http://127.0.0.1:{self.port}/api{path}", json=body, timeout=10)
        if answer.status_code != 200:
            raise RuntimeError(f"glewlwyd {method} {path}: {answer.status_code} {answer.text}")
        return answer

    def add_scope(self, name: str) -> None:
        self.admin("POST", "/scope/", {"name": name, "display_name": name, "description": name,
                                       "password_required": False, "scheme": {}})

    def add_user(self, username: str, password: str, scopes: list[str]) -> None:
        self.admin("POST", "/user/", {"username": username, "password": password,
                                      "name": username, "email": "", "scope": scopes,
                                      "enabled": True})

    def add_client(self, client_id: str, secret: str) -> None:
        self.admin("POST", "/client/", {
            "client_id": client_id, "name": client_id, "enabled": True,
            # Confidential: only an authenticated client gets client_id into its tokens.
            "confidential": True, "client_secret": secret,
            # Without this list 2.7.5 answers 500 to every authenticated token request.
            "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
            "authorization_type": ["password", "code", "refresh_token"],
            "redirect_uri": [REDIRECT_URI], "scope": []})

    def add_oidc_plugin(self, name: str, jwks: dict, access_token_duration: int = 3600) -> None:
        """An OpenID Connect plugin issuing RFC 9068 access tokens, signed with ``jwks``."""
        self.keys[name] = jwks
        self.admin("POST", "/mod/plugin/", {
            "module": "oidc", "name": name, "display_name": name, "enabled": True,
            "parameters": {
                "iss": self.issuer(name),
                "jwks-private": json.dumps(jwks),
                "default-kid": jwks["keys"][0]["kid"],
                "jwks-show": True,
                "access-token-duration": access_token_duration,
                "refresh-token-duration": 1209600,
                "code-duration": 600,
                "refresh-token-rolling": True,
                "allow-non-oidc": True,  # a token for "hutch" alone, without "openid"
                "auth-type-code-enabled": True,
                "auth-type-password-enabled": True,
                "auth-type-refresh-enabled": True,
                "auth-type-client-enabled": False,
                "pkce-allowed": True,
                "oauth-dpop-allowed": True,
                "oauth-dpop-iat-duration": 60,
            }})

    def update_oidc_plugin(self, name: str, **parameters) -> None:
        """Change plugin parameters (``jwks_private=...``); takes effect at once."""
        module = self.admin("GET", f"/mod/plugin/{name}").json()
        for key, value in parameters.items():
            module["parameters"][key.replace("_", "-")] = value
        self.admin("PUT", f"/mod/plugin/{name}", module)
        # A PUT only stores the parameters; the running plugin keeps its keys until reset.
        self.admin("PUT", f"/mod/plugin/{name}/reset")

    def set_keys(self, name: str, jwks: dict) -> None:
        """Replace the plugin's signing keys; the first key signs from now on."""
        self.update_oidc_plugin(name, jwks_private=json.dumps(jwks),
                                default_kid=jwks["keys"][0]["kid"])
        self.keys[name] = jwks

    # -- protocol ------------------------------------------------------------------------

    def issuer(self, plugin: str) -> str:
        return f"{self.url}/api/{plugin}"

    def discovery_url(self, plugin: str) -> str:
        return f"{self.issuer(plugin)}/.well-known/openid-configuration"

    def jwks(self, plugin: str) -> dict:
        return requests.get(f"http://127.0.0.1:{self.port}/api/{plugin}/jwks", timeout=5).json()

    def token(self, plugin: str, scope: str = "hutch", dpop: DpopKey | None = None,
              user: tuple[str, str] = USER, client: tuple[str, str] = CLIENT) -> str:
        """An access token from the password grant, DPoP-bound when ``dpop`` is given."""
        return self._token_request(plugin, client, dpop, {
            "grant_type": "password", "username": user[0], "password": user[1], "scope": scope})

    def token_by_code(self, plugin: str, scope: str = "hutch", dpop: DpopKey | None = None,
                      user: tuple[str, str] = USER, client: tuple[str, str] = CLIENT) -> str:
        """An access token from the code grant with PKCE (RFC 7636), without a browser: the
        user logs in through the login API and grants the scope to the client beforehand."""
        browser = requests.Session()
        for method, path, body in (("POST", "/auth/", {"username": user[0],
                                                       "password": user[1]}),
                                   ("PUT", f"/auth/grant/{client[0]}", {"scope": scope})):
            answer = browser.request(method, f"{self.url}/api{path}", json=body, timeout=10)
            if answer.status_code != 200:
                raise RuntimeError(f"glewlwyd {method} {path}: {answer.status_code}")
        verifier = secrets.token_urlsafe(48)
        answer = browser.get(f"{self.url}/api/{plugin}/auth", allow_redirects=False, timeout=10,
                             params={"response_type": "code", "client_id": client[0],
                                     "redirect_uri": REDIRECT_URI, "scope": scope,
                                     "state": secrets.token_urlsafe(8), "g_continue": "",
                                     "code_challenge": b64url_sha256(verifier),
                                     "code_challenge_method": "S256"})
        code = parse_qs(urlsplit(answer.headers.get("Location", "")).query).get("code")
        if answer.status_code != 302 or not code:
            raise RuntimeError(f"glewlwyd auth: {answer.status_code} {answer.headers}")
        return self._token_request(plugin, client, dpop, {
            "grant_type": "authorization_code", "code": code[0], "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier})

    def _token_request(self, plugin: str, client: tuple[str, str], dpop: DpopKey | None,
                       form: dict[str, str]) -> str:
        url = f"{self.url}/api/{plugin}/token"
        answer = requests.post(url, auth=client, data=form, timeout=10,
                               headers={"DPoP": dpop.proof("POST", url)} if dpop else {})
        if answer.status_code != 200:
            raise RuntimeError(f"glewlwyd token: {answer.status_code} {answer.text}\n"
                               + self.log_tail(5))
        return answer.json()["access_token"]
