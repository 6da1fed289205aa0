"""Hutch behind a real OpenID Connect provider: Debian's Glewlwyd 2.7 (issue 5).

One Glewlwyd serves two OIDC plugins, ``es`` (ES256) and ``rs`` (RS256), each
issuing RFC 9068 access tokens to a confidential client by the password grant or
the code grant with PKCE, DPoP-bound on request. Each plugin gets its own real
``hutch serve`` that reads the plugin's discovery document, as an operator would
configure it (§4.3).
Glewlwyd sits behind a counting proxy, so every JWKS fetch Hutch makes is seen.
"""

from __future__ import annotations

import base64
import json
import secrets
import time

import pytest

from hutch.signing import generate_jwks
from tests.helpers import IdP
from tests.integration.glewlwyd import DpopKey, Glewlwyd, free_port, unavailable
from tests.integration.hutch_process import HutchServer
from tests.integration.proxy import CountingProxy

SKIP_REASON = unavailable()
pytestmark = pytest.mark.skipif(SKIP_REASON is not None, reason=SKIP_REASON or "")

LEEWAY = 1  # seconds of clock tolerance in Hutch, so a 2 s token expires quickly
COOLDOWN = 1  # oidc.jwks_refresh_cooldown
OIDC = {"leeway": LEEWAY, "jwks_refresh_cooldown": COOLDOWN, "startup_retries": 3}
FIRST_KEYS = {"es": ("ES256", "es-1"), "rs": ("RS256", "rs-1")}


def parts(token: str) -> tuple[dict, dict]:
    def decode(segment: str) -> dict:
        return json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4)))
    header, claims, _ = token.split(".")
    return decode(header), decode(claims)


@pytest.fixture(scope="module")
def provider(tmp_path_factory):
    glewlwyd = Glewlwyd(tmp_path_factory.mktemp("glewlwyd"))
    try:
        glewlwyd.start()
        glewlwyd.add_scope("hutch")
        glewlwyd.add_scope("other")
        # g_profile lets alice grant scopes to the client herself, for the code grant.
        glewlwyd.add_user("alice", "alice-password", ["hutch", "other", "g_profile"])
        glewlwyd.add_client("hutch-client", "hutch-client-secret")
        for plugin, (alg, kid) in FIRST_KEYS.items():
            glewlwyd.add_oidc_plugin(plugin, generate_jwks(alg, kid))
        yield glewlwyd
    finally:
        glewlwyd.close()


@pytest.fixture(scope="module")
def hutch_for(provider, tmp_path_factory):
    """hutch_for(plugin): the running `hutch serve` that trusts that plugin."""
    started: dict[str, HutchServer] = {}

    def get(plugin: str) -> HutchServer:
        if plugin not in started:
            folder = tmp_path_factory.mktemp(f"hutch-{plugin}")
            # The RS256 one also pins the issuer and checks the audience, which Glewlwyd
            # fills with the granted scopes (§4.7), so aud = "hutch" must match it.
            pinned = {"aud": "hutch", "iss": provider.issuer(plugin)} if plugin == "rs" else {}
            started[plugin] = HutchServer(folder, provider.discovery_url(plugin),
                                          **OIDC, **pinned).start()
        return started[plugin]

    yield get
    for server in started.values():
        server.terminate()
    for server in started.values():
        server.stop()


@pytest.fixture(params=["es", "rs"], ids=["ES256", "RS256"])
def plugin(request) -> str:
    return request.param


def jwks_fetches(provider: Glewlwyd, plugin: str) -> list[float]:
    return provider.proxy.times("GET", f"/api/{plugin}/jwks")


def wait_out_cooldown(provider: Glewlwyd, plugin: str) -> None:
    """Sleep until Hutch may fetch the JWKS again."""
    last = max(jwks_fetches(provider, plugin), default=0.0)
    time.sleep(max(0.0, last + COOLDOWN + 0.1 - time.monotonic()))


def stranger_token(provider: Glewlwyd, plugin: str) -> str:
    """A token naming a kid the provider never had (signed by someone else)."""
    kid = "unknown-" + secrets.token_hex(4)
    return IdP(issuer=provider.issuer(plugin), kid=kid).token("alice")


def profile_status(hutch: HutchServer, token: str, dpop: DpopKey | None = None) -> int:
    return hutch.call("PUT", "api/profile", token, dpop, json={"name": "Alice"}).status_code


def test_provider_tokens_are_rfc9068_access_tokens(provider, plugin):
    header, claims = parts(provider.token(plugin))
    key = provider.keys[plugin]["keys"][0]
    assert header == {"typ": "at+jwt", "alg": key["alg"], "kid": key["kid"]}
    assert claims["iss"] == provider.issuer(plugin)
    assert claims["client_id"] == "hutch-client"
    assert claims["scope"] == "hutch" and claims["aud"] == "hutch"  # §4.7: aud = scopes
    assert len(claims["sub"]) == 32 and claims["sub"] != "alice"
    assert claims["exp"] - claims["iat"] == 3600 and "cnf" not in claims


def test_profile_safe_key_and_coin_with_a_provider_token(provider, hutch_for, plugin):
    hutch, token = hutch_for(plugin), provider.token(plugin)
    assert profile_status(hutch, token) == 200
    assert hutch.read("api/profile", token)["name"] == "Alice"
    assert hutch.call("POST", "api/safe", token, json={"name": "vault"}).status_code == 200
    assert hutch.read("api/safe/vault", token)["name"] == "vault"
    key = {"name": "k1", "type": "password", "data": "wrapped-master-key"}
    assert hutch.call("POST", "api/safe/vault/key", token, json=key).status_code == 200
    assert hutch.read("api/safe/vault/key/k1", token)["data"] == "wrapped-master-key"
    coin = {"name": "c1", "data": "encrypted-secret"}
    assert hutch.call("POST", "api/safe/vault/coin", token, json=coin).status_code == 200
    assert hutch.read("api/safe/vault/coin/c1", token)["data"] == "encrypted-secret"
    assert [c["name"] for c in hutch.read("api/safe/vault/coin", token)["list"]] == ["c1"]


def test_dpop_bound_token_needs_its_proof(provider, hutch_for, plugin):
    hutch, key = hutch_for(plugin), DpopKey()
    token = provider.token(plugin, dpop=key)
    assert parts(token)[1]["cnf"] == {"jkt": key.jkt}
    assert profile_status(hutch, token, key) == 200
    assert hutch.read("api/profile", token, key)["name"] == "Alice"
    # RFC 9449 §7.2: a bound token presented as a bearer token is refused.
    assert hutch.call("GET", "api/profile", token).status_code == 401
    assert hutch.call("GET", "api/profile", token, proof=key.proof(
        "GET", hutch.url + "api/profile", token), scheme="Bearer").status_code == 401
    # A proof from another key, and a proof used twice, are refused.
    assert profile_status(hutch, token, DpopKey()) == 401
    proof = key.proof("GET", hutch.url + "api/profile", token)
    assert hutch.call("GET", "api/profile", token, proof=proof, scheme="DPoP").status_code == 200
    replay = hutch.call("GET", "api/profile", token, proof=proof, scheme="DPoP")
    assert replay.status_code == 401
    assert "invalid_dpop_proof" in replay.headers["WWW-Authenticate"]


def test_code_grant_with_pkce_token(provider, hutch_for, plugin):
    hutch, key = hutch_for(plugin), DpopKey()
    token = provider.token_by_code(plugin)
    assert parts(token)[1]["client_id"] == "hutch-client"
    assert profile_status(hutch, token) == 200
    bound = provider.token_by_code(plugin, dpop=key)
    assert parts(bound)[1]["cnf"] == {"jkt": key.jkt}
    assert hutch.read("api/profile", bound, key)["name"] == "Alice"


def test_token_for_another_scope_is_refused(provider, hutch_for):
    answer = hutch_for("es").call("GET", "api/profile", provider.token("es", scope="other"))
    assert answer.status_code in (401, 403)  # §4.6: 401, or 403 as RFC 6750 suggests
    assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]


def test_token_is_refused_after_its_lifetime(provider, hutch_for):
    hutch = hutch_for("es")
    provider.update_oidc_plugin("es", access_token_duration=2)
    try:
        token = provider.token("es")
        assert profile_status(hutch, token) == 200
    finally:
        provider.update_oidc_plugin("es", access_token_duration=3600)
    expires = parts(token)[1]["exp"]
    time.sleep(max(0.0, expires + LEEWAY + 1 - time.time()))
    answer = hutch.call("GET", "api/profile", token)
    assert answer.status_code == 401
    assert answer.json()["message"] == "The access token is expired"


def test_provider_key_rotation_without_restart(provider, hutch_for):
    hutch = hutch_for("es")
    old_token = provider.token("es")
    assert profile_status(hutch, old_token) == 200

    # The provider publishes a new key (new kid, RS256 this time) and signs with it.
    new_keys = generate_jwks("RS256", "es-2")
    wait_out_cooldown(provider, "es")
    provider.set_keys("es", {"keys": new_keys["keys"] + provider.keys["es"]["keys"]})
    new_token = provider.token("es")
    assert parts(new_token)[0]["kid"] == "es-2"
    fetched = len(jwks_fetches(provider, "es"))
    assert profile_status(hutch, new_token) == 200  # the very first request
    assert len(jwks_fetches(provider, "es")) == fetched + 1
    assert profile_status(hutch, old_token) == 200  # still published

    # The old key leaves the provider's JWKS. Hutch notices at its next fetch, which an
    # unknown kid triggers once the cool-down has passed (it does not poll the JWKS).
    provider.set_keys("es", new_keys)
    assert [k["kid"] for k in provider.jwks("es")["keys"]] == ["es-2"]
    wait_out_cooldown(provider, "es")
    assert profile_status(hutch, stranger_token(provider, "es")) == 401
    assert len(jwks_fetches(provider, "es")) == fetched + 2
    assert profile_status(hutch, old_token) == 401
    assert profile_status(hutch, new_token) == 200


def test_unknown_kid_flood_fetches_once_per_cooldown(provider, hutch_for):
    hutch = hutch_for("es")
    wait_out_cooldown(provider, "es")
    before = len(jwks_fetches(provider, "es"))
    started = time.monotonic()
    for _ in range(50):
        assert profile_status(hutch, stranger_token(provider, "es")) == 401
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    during = jwks_fetches(provider, "es")[before:]
    assert 1 <= len(during) <= 1 + elapsed / COOLDOWN
    gaps = [later - earlier for earlier, later in zip(during, during[1:], strict=False)]
    assert all(gap >= COOLDOWN - 0.1 for gap in gaps), gaps


def test_cached_keys_keep_working_while_the_provider_is_down(provider, hutch_for):
    hutch = hutch_for("es")
    token = provider.token("es")  # never shown to Hutch before the provider goes away
    provider.stop()
    try:
        assert profile_status(hutch, token) == 200
        wait_out_cooldown(provider, "es")
        assert profile_status(hutch, stranger_token(provider, "es")) == 401  # refresh fails
        assert profile_status(hutch, token) == 200
        assert "JWKS refresh failed, keeping" in hutch.output()
    finally:
        provider.start()
    assert profile_status(hutch, provider.token("es")) == 200


def test_provider_unreachable_at_startup(provider, tmp_path):
    """`hutch serve` retries discovery with back-off, says so, then starts or gives up."""
    late_port, never_port = free_port(), free_port()
    late = HutchServer(tmp_path / "late", provider.discovery_url("es").replace(
        provider.url, f"http://127.0.0.1:{late_port}"), **OIDC).start(wait=False)
    never = HutchServer(tmp_path / "never", f"http://127.0.0.1:{never_port}/api/es/"
                        ".well-known/openid-configuration", **{**OIDC, "startup_retries": 1},
                        ).start(wait=False)
    door = None
    try:
        deadline = time.monotonic() + 20
        while "identity provider not reachable" not in late.output():
            assert time.monotonic() < deadline, late.output()
            time.sleep(0.1)
        door = CountingProxy(provider.port, port=late_port)  # the provider appears
        late.wait_ready()
        assert profile_status(late, provider.token("es")) == 200

        assert never.wait_exit(timeout=30) == 2
        said = never.output()
        assert "identity provider not reachable" in said and "retrying in 1 s" in said
        assert "config error: oidc.server_remote_config: cannot load" in said
    finally:
        late.stop()
        never.stop()
        if door is not None:
            door.close()
