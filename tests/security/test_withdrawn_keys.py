"""When a key the identity provider withdrew stops being trusted, exactly as
docs/identity-providers.md ("Withdrawn keys") and the README say (issue R, item 13)."""

from __future__ import annotations

import time

import pytest

from tests.security.test_auth_remote import Provider, remote
from tests.security.test_auth_tokens import assert_challenge, bearer

MAX_AGE = 1


@pytest.fixture
def provider():
    running = Provider()
    running.signers += [running.signer("k1"), running.signer("k2")]
    running.start()
    yield running
    running.stop()


def status(client, token: str) -> int:
    return client.put("/api/profile", headers=bearer(token), json={"name": "w"}).status_code


def test_a_withdrawn_key_is_trusted_until_the_jwks_is_read_again(make_app, provider):
    client = make_app(oidc=remote(provider.config_url, jwks_refresh_cooldown=0,
                                  jwks_max_age=MAX_AGE)).test_client()
    k1, k2 = provider.signers
    seen = k1.token("w")
    assert status(client, seen) == 200
    provider.signers[:] = [k2]  # the provider withdraws k1
    fetches = provider.jwks_fetches

    # Younger than jwks_max_age: the keys in memory still hold k1.
    assert status(client, seen) == 200
    assert status(client, k1.token("w")) == 200
    assert provider.jwks_fetches == fetches

    time.sleep(MAX_AGE + 0.2)
    # A token already verified is not checked against the keys again, so it starts no re-read.
    assert status(client, seen) == 200
    assert provider.jwks_fetches == fetches

    # The first token not seen before, once the keys are older than jwks_max_age, starts a
    # background re-read (that token itself is checked against the keys in memory).
    status(client, k1.token("w"))
    deadline = time.monotonic() + 5
    while provider.jwks_fetches == fetches and time.monotonic() < deadline:
        time.sleep(0.02)
    assert provider.jwks_fetches == fetches + 1
    time.sleep(0.2)  # the re-read's answer is parsed and swapped in

    # From then on k1 is refused, remembered tokens included; k2 still works.
    for token in (seen, k1.token("w")):
        assert_challenge(client.put("/api/profile", headers=bearer(token), json={"name": "w"}),
                         error="invalid_token")
    assert status(client, k2.token("w")) == 200
