"""DPoP-bound access tokens through HTTP (HUTCH-API.md §4.4, §4.6; RFC 9449 §4.3, §7, §11.1).

A holder owns a key, an access token bound to it (``cnf.jkt``, RFC 7638
thumbprint) and writes one proof per request. Every refusal is a 401 with a
``DPoP`` challenge carrying ``algs`` and leaves the victim's profile untouched.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable

import pytest

from hutch.jose import json_bytes, sign_compact
from hutch.signing import generate_jwks
from tests.helpers import DROP, Api, IdP
from tests.security import test_auth_tokens as tokens
from tests.security.test_auth_tokens import assert_challenge, assert_no_leak, b64, private_key

# The token tests' module-scoped apps and the victim's profile: refusals change
# nothing, so one app per configuration and backend serves the whole module.
shared_apps = tokens.shared_apps
client = tokens.client
owner = tokens.owner

EXTERNAL_URL = "http://localhost:4884/"
PATH = "/api/profile"
_REQUIRED = {"EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n"),
             "OKP": ("crv", "kty", "x"), "oct": ("k", "kty")}


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 of the required members, sorted, no whitespace."""
    members = {name: jwk[name] for name in _REQUIRED[jwk["kty"]]}
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode()
    return b64(hashlib.sha256(canonical).digest())


def ath(token: str) -> str:
    return b64(hashlib.sha256(token.encode("ascii")).digest())


def htu(path: str) -> str:
    return EXTERNAL_URL + path.lstrip("/")


class Holder:
    """A DPoP client: a key pair, an access token bound to it, and fresh proofs."""

    def __init__(self, idp: IdP, jwk: dict, sub: str = "dev"):
        self.private = jwk
        self.key = private_key(jwk)
        self.alg = jwk["alg"]
        self.jwk = {k: jwk[k] for k in _REQUIRED[jwk["kty"]]}
        self.token = idp.token(sub, cnf={"jkt": thumbprint(self.jwk)})

    def proof(self, method: str, path: str = PATH, *, header: dict | None = None, key=None,
              **claims) -> str:
        head = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk, **(header or {})}
        body = {"jti": secrets.token_urlsafe(16), "htm": method, "htu": htu(path),
                "iat": int(time.time()), "ath": ath(self.token), **claims}
        head = {k: v for k, v in head.items() if v is not DROP}
        body = {k: v for k, v in body.items() if v is not DROP}
        return sign_compact(head, json_bytes(body), key or self.key).decode("ascii")

    def headers(self, proof: str | None, scheme: str = "DPoP") -> list[tuple[str, str]]:
        headers = [("Authorization", f"{scheme} {self.token}")]
        return headers + ([("DPoP", proof)] if proof is not None else [])

    def send(self, client, method: str, path: str = PATH, proof: str | None = "fresh",
             scheme: str = "DPoP", **kwargs):
        if proof == "fresh":
            proof = self.proof(method, path)
        return client.open(path, method=method, headers=self.headers(proof, scheme), **kwargs)


def hand_signed(header: dict, claims: dict, secret: bytes) -> str:
    """An HS256 JWS built by hand: no JOSE library would sign this for us."""
    signing_input = b64(json_bytes(header)) + "." + b64(json_bytes(claims))
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


@pytest.fixture(scope="module")
def keys() -> dict[str, dict]:
    """Proof keys, generated once: RSA generation is slow."""
    return {name: generate_jwks(alg, name)["keys"][0] for name, alg in
            (("holder", "ES256"), ("thief", "ES256"), ("rsa", "RS256"), ("ps", "PS256"),
             ("p384", "ES384"), ("ed", "EdDSA"))}


@pytest.fixture
def holder(idp, keys) -> Holder:
    return Holder(idp, keys["holder"])


def refused(client, owner: Api, attempt: Callable[[str], object], *,
            error: str = "invalid_dpop_proof", scheme: str | None = "DPoP") -> None:
    """``attempt(method)`` sends a GET then a PUT; both refused, the profile intact."""
    for method in ("GET", "PUT"):
        answer = attempt(method)
        if scheme is None:  # either challenge fits; the error code is what matters
            scheme_sent = answer.headers.get("WWW-Authenticate", "").split(" ")[0]
            assert scheme_sent in ("Bearer", "DPoP"), answer.headers
            assert_challenge(answer, error=error, scheme=scheme_sent)
        else:
            assert_challenge(answer, error=error, scheme=scheme)
        assert_no_leak(answer)
    assert owner.get(PATH).payload["name"] == "Dev"


def body_for(method: str):
    return {"name": "intruder"} if method == "PUT" else None


# --------------------------------------------------------------------------- accepted


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("name", ["holder", "p384", "ed", "ps"])
def test_bound_token_with_a_good_proof_is_accepted(client, idp, keys, name):
    user = Holder(idp, keys[name])
    assert user.send(client, "PUT", json={"name": "Dpop"}).status_code == 200
    answer = user.send(client, "GET")
    assert answer.status_code == 200 and answer.mimetype == "application/jwt"
    api = Api(client, idp, "dev")  # the same sub through a plain bearer token
    assert api.get(PATH).payload["name"] == "Dpop"


@pytest.mark.parametrize("scheme", ["dpop", "DPOP", "Dpop"])
def test_dpop_scheme_is_case_insensitive(client, holder, scheme):
    """RFC 9110 §11.1: the auth-scheme is case-insensitive."""
    assert holder.send(client, "PUT", json={"name": "Cased"}, scheme=scheme).status_code == 200
    answer = holder.send(client, "GET", scheme=scheme)
    assert answer.status_code == 200 and answer.mimetype == "application/jwt"


def test_rsa_2048_proof_key_is_accepted_despite_a_long_header(client, idp, keys):
    """LIBRARIES.md C2: the encoded header exceeds joserfc's default 512 bytes."""
    user = Holder(idp, keys["rsa"])
    proof = user.proof("PUT")
    assert len(proof.split(".")[0]) > 512
    answer = client.put(PATH, headers=user.headers(proof), json={"name": "Rsa"})
    assert answer.status_code == 200, (answer.status_code, answer.data)
    assert user.send(client, "GET").status_code == 200


def test_query_string_is_not_part_of_htu(client, owner, holder):
    # RFC 9449 §4.3 (9): htu is compared without the query.
    answer = client.get(PATH + "?x=1", headers=holder.headers(holder.proof("GET")))
    assert answer.status_code == 200, (answer.status_code, answer.headers)


def test_htu_is_our_configured_url_not_the_host_header(client, owner, holder):
    # §4.4: the server's own external_url is used, never the Host header.
    good = client.get(PATH, base_url="http://evil.example",
                      headers=holder.headers(holder.proof("GET")))
    assert good.status_code == 200
    refused(client, owner, lambda m: client.open(
        PATH, method=m, base_url="http://evil.example", json=body_for(m),
        headers=holder.headers(holder.proof(m, htu="http://evil.example/api/profile"))))


def test_proof_iat_within_the_default_age_and_the_future_skew_is_accepted(client, owner, holder):
    # §4.4: default maximum age 300 s, and a small future skew.
    now = int(time.time())
    for iat in (now - 200, now + 5):
        answer = client.get(PATH, headers=holder.headers(holder.proof("GET", iat=iat)))
        assert answer.status_code == 200, (iat - now, answer.headers)


# ------------------------------------------------------------ scheme / binding mismatch


def test_bound_token_under_bearer_is_a_downgrade(client, owner, holder):
    # RFC 9449 §7.2 / §4.4 decision table: a DPoP-bound token is not a bearer token.
    refused(client, owner, lambda m: holder.send(client, m, proof=None, scheme="Bearer",
                                                 json=body_for(m)), error="invalid_token")
    refused(client, owner, lambda m: holder.send(client, m, scheme="Bearer", json=body_for(m)),
            error="invalid_token", scheme=None)


def test_unbound_token_under_dpop_is_refused(client, owner, idp, holder):
    unbound = idp.token("dev")

    def attempt(method):
        proof = holder.proof(method, ath=ath(unbound))
        return client.open(PATH, method=method, json=body_for(method),
                           headers=[("Authorization", f"DPoP {unbound}"), ("DPoP", proof)])

    refused(client, owner, attempt, error="invalid_token", scheme=None)


def test_missing_proof_is_refused(client, owner, holder):
    refused(client, owner, lambda m: holder.send(client, m, proof=None, json=body_for(m)))


def test_two_proofs_are_refused(client, owner, holder):
    def attempt(method):
        headers = holder.headers(holder.proof(method)) + [("DPoP", holder.proof(method))]
        return client.open(PATH, method=method, headers=headers, json=body_for(method))

    refused(client, owner, attempt)


# ------------------------------------------------------------------ proof contents


def _other_htm(method: str) -> str:
    return "POST" if method != "POST" else "GET"


def _none_proof(user: Holder, method: str) -> str:
    claims = {"jti": secrets.token_urlsafe(8), "htm": method, "htu": htu(PATH),
              "iat": int(time.time()), "ath": ath(user.token)}
    return b64(json_bytes({"typ": "dpop+jwt", "alg": "none", "jwk": user.jwk})) + "." + \
        b64(json_bytes(claims)) + "."


def _thief_proof(user: Holder, method: str, keys: dict) -> str:
    """A well-formed proof by another key pair (its own jwk), for the holder's token."""
    thief_jwk = {k: keys["thief"][k] for k in _REQUIRED["EC"]}
    return user.proof(method, header={"jwk": thief_jwk}, key=private_key(keys["thief"]))


BAD_PROOFS: dict[str, Callable[[Holder, str, dict], str]] = {
    "wrong-htm": lambda u, m, k: u.proof(_other_htm(m)),
    "lowercase-htm": lambda u, m, k: u.proof(m.lower()),
    "no-htm": lambda u, m, k: u.proof(m, htm=DROP),
    "htu-other-path": lambda u, m, k: u.proof(m, "/api/safe"),
    "htu-trailing-slash": lambda u, m, k: u.proof(m, htu=htu(PATH) + "/"),
    "htu-https": lambda u, m, k: u.proof(m, htu="https://localhost:4884/api/profile"),
    "htu-other-port": lambda u, m, k: u.proof(m, htu="http://localhost:8080/api/profile"),
    "htu-other-host": lambda u, m, k: u.proof(m, htu="http://evil.example/api/profile"),
    "no-htu": lambda u, m, k: u.proof(m, htu=DROP),
    "stale-iat": lambda u, m, k: u.proof(m, iat=int(time.time()) - 310),
    "very-old-iat": lambda u, m, k: u.proof(m, iat=1),
    "future-iat": lambda u, m, k: u.proof(m, iat=int(time.time()) + 120),
    "string-iat": lambda u, m, k: u.proof(m, iat=str(int(time.time()))),
    "no-iat": lambda u, m, k: u.proof(m, iat=DROP),
    "no-jti": lambda u, m, k: u.proof(m, jti=DROP),
    "empty-jti": lambda u, m, k: u.proof(m, jti=""),
    "wrong-ath": lambda u, m, k: u.proof(m, ath=ath(u.token + "x")),
    "no-ath": lambda u, m, k: u.proof(m, ath=DROP),
    "jwk-of-another-key": lambda u, m, k: _thief_proof(u, m, k),
    "signed-by-another-key": lambda u, m, k: u.proof(m, key=private_key(k["thief"])),
    "private-jwk": lambda u, m, k: u.proof(m, header={"jwk": {**u.jwk, "d": u.private["d"]}}),
    "typ-JWT": lambda u, m, k: u.proof(m, header={"typ": "JWT"}),
    "typ-missing": lambda u, m, k: u.proof(m, header={"typ": DROP}),
    "jwk-missing": lambda u, m, k: u.proof(m, header={"jwk": DROP}),
    "x5u": lambda u, m, k: u.proof(m, header={"x5u": "https://evil.example/cert"}),
    "garbage": lambda u, m, k: "garbage",
    "truncated": lambda u, m, k: u.proof(m)[:-10],
    "alg-none": lambda u, m, k: _none_proof(u, m),
}


@pytest.mark.parametrize("case", sorted(BAD_PROOFS))
def test_bad_proof_is_refused(client, owner, holder, keys, case):
    make = BAD_PROOFS[case]
    refused(client, owner, lambda m: holder.send(client, m, proof=make(holder, m, keys),
                                                 json=body_for(m)))


def test_hs256_proof_is_refused(client, owner, idp):
    # RFC 9449 §4.3 (5): the proof algorithm must be asymmetric, even when the token is
    # bound to the thumbprint of the symmetric key the attacker chose.
    secret = secrets.token_bytes(32)
    jwk = {"kty": "oct", "k": b64(secret)}
    token = idp.token("dev", cnf={"jkt": thumbprint(jwk)})

    def attempt(method):
        claims = {"jti": secrets.token_urlsafe(8), "htm": method, "htu": htu(PATH),
                  "iat": int(time.time()), "ath": ath(token)}
        proof = hand_signed({"typ": "dpop+jwt", "alg": "HS256", "jwk": jwk}, claims, secret)
        return client.open(PATH, method=method, json=body_for(method),
                           headers=[("Authorization", f"DPoP {token}"), ("DPoP", proof)])

    refused(client, owner, attempt)


def test_configured_dpop_max_iat_bounds_the_proof_age(shared_apps, idp, keys):
    client = shared_apps(oidc={"dpop_max_iat": 60}).test_client()
    owner = Api(client, idp, "dev")
    assert owner.put(PATH, json={"name": "Dev"}).status_code == 200
    user = Holder(idp, keys["holder"])
    now = int(time.time())
    refused(client, owner, lambda m: user.send(client, m, proof=user.proof(m, iat=now - 90),
                                               json=body_for(m)))
    assert user.send(client, "GET", proof=user.proof("GET", iat=now - 30)).status_code == 200


# ------------------------------------------------------------------------- replay


def test_replayed_proof_is_refused(client, owner, holder):
    # RFC 9449 §11.1: a proof is used once.
    proof = holder.proof("GET")
    assert holder.send(client, "GET", proof=proof).status_code == 200
    for _ in range(2):
        answer = holder.send(client, "GET", proof=proof)
        assert_challenge(answer, error="invalid_dpop_proof", scheme="DPoP")
        assert_no_leak(answer)


def test_reused_jti_in_a_new_proof_is_refused(client, owner, holder):
    jti = secrets.token_urlsafe(16)
    assert holder.send(client, "GET", proof=holder.proof("GET", jti=jti)).status_code == 200
    again = holder.proof("PUT", jti=jti, iat=int(time.time()) - 1)
    answer = holder.send(client, "PUT", proof=again, json={"name": "intruder"})
    assert_challenge(answer, error="invalid_dpop_proof", scheme="DPoP")
    assert owner.get(PATH).payload["name"] == "Dev"


def test_replay_on_another_worker_is_refused(make_app, client, owner, holder):
    """Workers share the replay cache through the database (LIBRARIES.md C2 item 5)."""
    second_worker = make_app().test_client()
    proof = holder.proof("GET")
    assert holder.send(client, "GET", proof=proof).status_code == 200
    answer = holder.send(second_worker, "GET", proof=proof)
    assert_challenge(answer, error="invalid_dpop_proof", scheme="DPoP")


def test_dpop_challenge_carries_the_realm_first(shared_apps, holder):
    client = shared_apps(oidc={"realm": "vault"}).test_client()
    answer = holder.send(client, "GET", proof=holder.proof("POST"))
    assert_challenge(answer, error="invalid_dpop_proof", scheme="DPoP", realm="vault")
