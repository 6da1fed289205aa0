"""Keys from a remote identity provider through discovery (HUTCH-API.md §4.3, §4.7, §5.3).

A tiny provider runs in a thread on 127.0.0.1: it serves its discovery document
and a JWKS whose keys the tests change, and counts how often each is fetched.
"""

from __future__ import annotations

import json
import secrets
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hutch.settings import ConfigError
from tests.helpers import IdP
from tests.security.test_auth_tokens import accepted, assert_challenge, bearer


class Provider:
    """An OpenID provider reduced to discovery + JWKS, with a mutable key list."""

    def __init__(self):
        self.signers: list[IdP] = []
        self.discovery_fetches = 0
        self.jwks_fetches = 0
        self.status = 200  # anything else: the provider answers errors
        self._lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.base = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.issuer = self.base + "/api/oidc"  # Glewlwyd's shape, no trailing slash (§4.7)
        self.config_url = self.issuer + "/.well-known/openid-configuration"
        # §4.7: with a trailing '/' in its URL Glewlwyd publishes '//'; taken as given.
        self.jwks_uri = self.issuer + "//jwks"
        self._thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._running = False

    def start(self) -> Provider:
        self._thread.start()
        self._running = True
        return self

    def stop(self) -> None:
        if self._running:
            self.server.shutdown()
            self._running = False
        self.server.server_close()

    def signer(self, kid: str) -> IdP:
        """A new key pair with ``kid``; publish it by adding it to ``signers``."""
        return IdP(issuer=self.issuer, kid=kid)

    def _document(self, path: str) -> dict | None:
        with self._lock:
            if path == "/api/oidc/.well-known/openid-configuration":
                self.discovery_fetches += 1
                return {"issuer": self.issuer, "jwks_uri": self.jwks_uri,
                        "id_token_signing_alg_values_supported": ["ES256"]}
            if path == "/api/oidc//jwks":
                self.jwks_fetches += 1
                return {"keys": [key for idp in self.signers for key in idp.public_jwks["keys"]]}
        return None

    def _handler(self):
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                document = provider._document(self.path)
                if document is None or provider.status != 200:
                    self.send_response(404 if document is None else provider.status)
                    self.end_headers()
                    return
                body = json.dumps(document).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        return Handler


@pytest.fixture
def provider():
    running = Provider()
    running.signers.append(running.signer("k1"))
    running.start()
    yield running
    running.stop()


def remote(url: str, **extra) -> dict:
    """oidc settings for remote config; None drops conftest's static JWKS and iss."""
    return {"server_public_jwks": None, "iss": None, "server_remote_config": url,
            "startup_retries": 0, **extra}


def _closed_port_url() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/.well-known/openid-configuration"


def test_tokens_of_the_provider_verify(make_app, provider, idp):
    client = make_app(oidc=remote(provider.config_url)).test_client()
    k1 = provider.signers[0]
    accepted(client, k1, k1.token("ok"))
    # §4.3: the issuer comes from discovery; the static-JWKS issuer is someone else.
    refused = client.get("/api/profile", headers=bearer(k1.token("ok", iss=idp.issuer)))
    assert_challenge(refused, error="invalid_token")
    refused = client.get("/api/profile", headers=bearer(k1.token("ok", iss=provider.issuer + "/")))
    assert_challenge(refused, error="invalid_token")
    assert provider.discovery_fetches == 1 and provider.jwks_fetches == 1


def test_configuration_publishes_the_remote_config(make_app, provider):
    client = make_app(oidc=remote(provider.config_url)).test_client()
    document = client.get("/.well-known/hutch-configuration").get_json()
    assert document["oidc_server_remote_config"] == provider.config_url


def test_key_rotation_needs_no_restart(make_app, provider):
    client = make_app(oidc=remote(provider.config_url, jwks_refresh_cooldown=0)).test_client()
    k1 = provider.signers[0]
    old = k1.token("ok")
    for _ in range(2):  # accepted, and cached by the server
        accepted(client, k1, old)
    # The provider adds a key: a token naming it works on its very first request.
    k2 = provider.signer("k2")
    provider.signers.append(k2)
    answer = client.put("/api/profile", headers=bearer(k2.token("ok")), json={"name": "k2"})
    assert answer.status_code == 200, (answer.status_code, answer.data)
    # The provider withdraws k1 and adds k3; the k3 token makes the server refresh.
    k3 = provider.signer("k3")
    provider.signers[:] = [k2, k3]
    fetches = provider.jwks_fetches
    accepted(client, k3, k3.token("ok"))
    assert provider.jwks_fetches > fetches
    # From now on k1's tokens are refused, even the one accepted (and cached) before.
    for token in (old, k1.token("ok")):
        for method in ("GET", "PUT"):
            answer = client.open("/api/profile", method=method, headers=bearer(token),
                                 json={"name": "withdrawn"})
            assert_challenge(answer, error="invalid_token")
    accepted(client, k2, k2.token("ok"))


def test_unknown_kid_flood_is_rate_limited(make_app, provider):
    client = make_app(oidc=remote(provider.config_url, jwks_refresh_cooldown=300)).test_client()
    before = provider.jwks_fetches
    assert before == 1  # the startup fetch: the counter works
    attacker = IdP(issuer=provider.issuer, kid="attacker")
    for _ in range(50):
        token = attacker.token("dev", header={"kid": secrets.token_hex(8)})
        assert_challenge(client.get("/api/profile", headers=bearer(token)), error="invalid_token")
    assert provider.jwks_fetches - before <= 1, provider.jwks_fetches
    k1 = provider.signers[0]
    accepted(client, k1, k1.token("ok"))  # the real keys still work


def test_provider_answering_errors_at_startup_is_a_config_error(make_app, provider,
                                                                monkeypatch):
    # Meant to skip the back-off wait; RemoteJwks binds time.sleep as a default argument
    # when the module is imported, so today the one retry still waits 1 s (see report).
    monkeypatch.setattr("time.sleep", lambda seconds: None)
    provider.status = 503
    with pytest.raises(ConfigError, match="server_remote_config"):
        make_app(oidc=remote(provider.config_url, startup_retries=1))
    assert provider.discovery_fetches == 2  # the first try and one retry


def test_provider_unreachable_at_startup_is_a_config_error(make_app):
    with pytest.raises(ConfigError, match="server_remote_config"):
        make_app(oidc=remote(_closed_port_url()))


def test_jwks_unreachable_at_startup_is_a_config_error(make_app, provider):
    provider.signers.clear()  # discovery answers, the JWKS holds no usable key
    with pytest.raises(ConfigError):
        make_app(oidc=remote(provider.config_url))


def test_configured_iss_must_match_the_provider(make_app, provider):
    with pytest.raises(ConfigError, match="iss"):
        make_app(oidc=remote(provider.config_url, iss="https://glewlwyd.tld/"))


def test_cached_keys_keep_working_when_the_provider_goes_away(make_app, provider):
    client = make_app(oidc=remote(provider.config_url, jwks_refresh_cooldown=0)).test_client()
    k1 = provider.signers[0]
    accepted(client, k1, k1.token("ok"))
    provider.stop()
    accepted(client, k1, k1.token("ok"))  # a new token, not a cached answer
    stranger = IdP(issuer=provider.issuer, kid="new-kid")
    answer = client.get("/api/profile", headers=bearer(stranger.token("ok")))
    assert_challenge(answer, error="invalid_token")  # a failed refresh is a 401, not a 500
    accepted(client, k1, k1.token("ok"))
    document = client.get("/.well-known/hutch-configuration").get_json()
    assert document["oidc_server_remote_config"] == provider.config_url
