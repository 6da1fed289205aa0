"""The signing JWKS (HUTCH-API.md §5.2): startup checks, and a profile whose key is gone."""

from __future__ import annotations

import json
import logging

import pytest
from joserfc.jwk import RSAKey

from hutch.extensions import warn_stale_sign_kids
from hutch.settings import ConfigError
from hutch.signing import SigningKeys, generate_jwks
from tests.helpers import Api


def _key(alg: str, kid: str) -> dict:
    return generate_jwks(alg, kid)["keys"][0]


def _public(key: dict) -> dict:
    return {k: v for k, v in key.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


SMALL_RSA = {**RSAKey.generate_key(1024, private=True).as_dict(private=True),
             "kid": "small", "alg": "RS256"}

REFUSED = {
    "no keys": {"keys": []},
    "not a JWKS": {"kty": "EC"},
    "missing kid": {"keys": [{k: v for k, v in _key("ES256", "x").items() if k != "kid"}]},
    "duplicate kid": {"keys": [_key("ES256", "same"), _key("ES256", "same")]},
    "symmetric key": {"keys": [{"kty": "oct", "k": "c2VjcmV0c2VjcmV0c2VjcmV0", "kid": "h",
                                "alg": "HS256"}]},
    "public key only": {"keys": [_public(_key("ES256", "pub"))]},
    "RSA under 2048 bits": {"keys": [SMALL_RSA]},
    "alg of another key type": {"keys": [{**_key("RS256", "r"), "alg": "ES256"}]},
    "unsupported alg": {"keys": [{**_key("ES256", "e"), "alg": "none"}]},
    "missing alg": {"keys": [{k: v for k, v in _key("ES256", "a").items() if k != "alg"}]},
}


@pytest.mark.parametrize("case", REFUSED)
def test_startup_refuses_an_unusable_signing_jwks(case):
    with pytest.raises(ConfigError, match="^sign_key"):
        SigningKeys.from_jwks(REFUSED[case], 600)


def test_an_unreadable_sign_key_file_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="^sign_key: cannot read"):
        SigningKeys.load(tmp_path / "missing.jwks", 600)
    (tmp_path / "bad.jwks").write_text("{not json")
    with pytest.raises(ConfigError, match="^sign_key: .* not valid JSON"):
        SigningKeys.load(tmp_path / "bad.jwks", 600)


def test_jwks_keeps_file_order_and_publishes_public_members_only():
    keys = SigningKeys.from_jwks({"keys": [_key("RS256", "r"), _key("EdDSA", "o")]}, 600)
    published = keys.public_jwks["keys"]
    assert [k["kid"] for k in published] == ["r", "o"]
    assert all(not {"d", "p", "q", "dp", "dq", "qi"} & set(k) for k in published)


def test_a_profile_whose_key_left_the_jwks_is_signed_with_the_first_key(
        make_app, idp, tmp_path, caplog):
    """§13.11: never a 500; sign with the first key and warn (at startup too)."""
    first = make_app()
    api = Api(first.test_client(), idp)
    assert api.put("/api/profile", json={"name": "Dev", "sign_kid": "ES256"}).status_code == 200
    assert api.get("/api/profile").jose_header["kid"] == "ES256"

    only_rsa = {"keys": [_key("RS256", "RS256")]}
    (tmp_path / "rsa-only.jwks").write_text(json.dumps(only_rsa))
    second = make_app(sign_key=str(tmp_path / "rsa-only.jwks"))
    with caplog.at_level(logging.WARNING, logger="hutch"):
        assert warn_stale_sign_kids(second.extensions["hutch"]) == ["ES256"]
    assert any("ES256" in record.getMessage() for record in caplog.records)
    again = Api(second.test_client(), idp)
    answer = again.get("/api/profile")
    assert answer.status_code == 200
    assert answer.jose_header["kid"] == "RS256"
    assert answer.payload["sign_kid"] == "ES256"  # the front end then lets the user re-save
    assert again.get("/api/safe").payload == {"list": []}
