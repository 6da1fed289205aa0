"""Access-token checks through HTTP (HUTCH-API.md §4.1, §4.2, §4.5, §4.6; RFC 6750, 8725, 9068).

Every refused case asserts the status, a ``WWW-Authenticate`` challenge with the
RFC 6750 §3 error code, a JSON body, and that the request neither returned nor
changed the victim's profile (GET, PUT and DELETE are all tried).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import secrets
import time

import pytest
from joserfc.jwk import ECKey, OKPKey, RSAKey
from sqlalchemy import delete

from hutch import create_app
from hutch.jose import json_bytes, sign_compact
from hutch.settings import load_settings
from hutch.signing import generate_jwks
from hutch.store.schema import coin, dpop_jti, profile, safe, safe_key
from tests.helpers import DROP, ISSUER, Api, IdP

_PARAM = re.compile(r'\s*([A-Za-z_][A-Za-z0-9_]*)="([^"]*)"\s*(?:,|$)')
_KEY_CLASSES = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}


# ---------------------------------------------------------------------------- helpers


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def parse_challenge(value: str) -> tuple[str, list[tuple[str, str]]]:
    """``Scheme p1="v1", p2="v2"`` → ("Scheme", [(p1, v1), (p2, v2)]), order kept."""
    scheme, _, rest = value.partition(" ")
    params, pos = [], 0
    while pos < len(rest):
        match = _PARAM.match(rest, pos)
        assert match, f"unparsable challenge {value!r}"
        params.append((match[1], match[2]))
        pos = match.end()
    return scheme, params


def assert_challenge(response, *, error: str | None, status: int = 401, scheme: str = "Bearer",
                     realm: str | None = None) -> dict[str, str]:
    """Status, JSON body, and the first challenge's scheme/realm/error (RFC 6750 §3)."""
    assert response.status_code == status, (response.status_code, response.data[:300])
    assert response.mimetype == "application/json", response.headers
    assert isinstance(response.get_json(), dict)
    values = response.headers.getlist("WWW-Authenticate")
    assert values, "no WWW-Authenticate header"
    assert len(set(values)) == len(values), f"duplicate challenges {values}"
    if error is None:
        # RFC 6750 §3.1: no authentication information → a bare challenge, no error code.
        bare = f'Bearer realm="{realm}"' if realm else "Bearer"
        assert bare in values, values
        for value in values:
            assert "error=" not in value, values
        return {}
    got_scheme, params = parse_challenge(values[0])
    assert got_scheme == scheme, values
    if realm:
        assert params[0] == ("realm", realm), values  # §4.5: realm first
    else:
        assert "realm" not in dict(params), values
    names = dict(params)
    assert names.get("error") == error, values
    if scheme == "DPoP":
        algs = names.get("algs", "").split()
        assert "ES256" in algs and "none" not in algs, values
        assert not any(alg.startswith("HS") for alg in algs), values
    return names


def assert_no_leak(response) -> None:
    assert b"Dev" not in response.data and b"intruder" not in response.data


def refused(client, headers, *, error: str | None = "invalid_token", status: int = 401,
            realm: str | None = None, owner: Api | None = None, **kwargs) -> None:
    """GET, PUT and DELETE the profile with ``headers``: all refused, the owner's data intact."""
    for method, body in (("GET", None), ("PUT", {"name": "intruder"}), ("DELETE", None)):
        answer = client.open("/api/profile", method=method, headers=headers, json=body, **kwargs)
        assert_challenge(answer, error=error, status=status, realm=realm)
        assert_no_leak(answer)
    if owner is not None:
        assert owner.get("/api/profile").payload["name"] == "Dev"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def accepted(client, idp: IdP, token: str, sub: str = "ok") -> None:
    """The token opens the API: a write is stored and read back, signed."""
    user = Api(client, idp, sub)
    user.token = token
    name = "ok-" + secrets.token_hex(3)
    put = user.put("/api/profile", json={"name": name})
    assert put.status_code == 200, (put.status_code, put.data[:300], put.headers)
    assert user.get("/api/profile").payload["name"] == name


def private_key(jwk: dict):
    return _KEY_CLASSES[jwk["kty"]].import_key(jwk)


def public_of(jwk: dict) -> dict:
    return {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}


def write_jwks(folder, name: str, *jwks: dict) -> str:
    path = folder / name
    path.write_text(json.dumps({"keys": [public_of(jwk) for jwk in jwks]}))
    return str(path)


def hs256(header: dict, claims: dict, secret: bytes) -> str:
    signing_input = b64(json_bytes(header)) + "." + b64(json_bytes(claims))
    mac = hmac.new(secret, signing_input.encode("ascii"), hashlib.sha256).digest()
    return signing_input + "." + b64(mac)


# --------------------------------------------------------------------------- fixtures


def _toml(value) -> str:
    return str(value) if isinstance(value, int) else json.dumps(str(value))


@pytest.fixture(scope="module")
def shared_apps(tmp_path_factory, key_files, database_url):
    """Apps built once per module and backend, by configuration.

    Refused requests change nothing, so these tests can share an app; building one
    per test would cost most of the run time on three backends. The configuration
    mirrors conftest's ``make_settings`` (the original CI's, §9).
    """
    folder = tmp_path_factory.mktemp("auth-apps")
    apps: dict[str, object] = {}

    def build(oidc: dict | None = None, **top):
        cache_key = json.dumps([oidc, top], sort_keys=True, default=str)
        if cache_key not in apps:
            values = {"api_prefix": "api", "external_url": "http://localhost:4884/",
                      "allow_origin": "*", "hutch_scope": "hutch",
                      "sign_key": str(key_files["sign"]), "sign_exp": 600, **top}
            oidc_values = {"server_public_jwks": str(key_files["idp"]), "iss": ISSUER,
                           **(oidc or {})}
            lines = [f"{k} = {_toml(v)}" for k, v in values.items() if v is not None]
            lines += ["[database]", f"url = {_toml(database_url)}", "[oidc]"]
            lines += [f"{k} = {_toml(v)}" for k, v in oidc_values.items() if v is not None]
            path = folder / f"hutch-{len(apps)}.config"
            path.write_text("\n".join(lines) + "\n")
            app = create_app(load_settings(path, environ={}))
            app.testing = True
            apps[cache_key] = app
        return apps[cache_key]

    yield build
    for app in apps.values():
        db = app.extensions["hutch"].db
        with db.engine.begin() as conn:
            for table in (coin, safe_key, safe, profile, dpop_jti):
                conn.execute(delete(table))
        db.dispose()


@pytest.fixture
def client(shared_apps):
    """The default app (conftest's configuration), shared by the module."""
    return shared_apps().test_client()


@pytest.fixture
def owner(client, idp) -> Api:
    """'dev' owns a profile named 'Dev': the data no refused request may read or change."""
    dev = Api(client, idp, "dev")
    current = dev.get("/api/profile")
    if current.status_code != 200 or current.payload["name"] != "Dev":
        assert dev.put("/api/profile", json={"name": "Dev", "sign_kid": "ES256"}).status_code == 200
    return dev


@pytest.fixture(scope="module")
def other_keys() -> dict[str, dict]:
    keys = {alg: generate_jwks(alg, "idp-" + alg)["keys"][0]
            for alg in ("PS256", "ES384", "EdDSA", "RS256")}
    keys["second"] = generate_jwks("ES256", "second")["keys"][0]
    return keys


@pytest.fixture(scope="module")
def jwks_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("idp-jwks")


@pytest.fixture(scope="module")
def attacker() -> dict:
    return generate_jwks("ES256", "idp-key")["keys"][0]  # same kid as the real IdP key


# ------------------------------------------------------------------ §4.1 extraction


@pytest.mark.parametrize("headers", [
    {},
    {"Authorization": "Basic ZGV2OmRldg=="},
    {"Authorization": "Bearer"},
    {"Authorization": "Bearer "},
    {"Authorization": "bearer "},
    {"Authorization": "TOKEN"},
    {"Authorization": "BearerTOKEN"},
], ids=["missing", "basic", "bearer-no-space", "bearer-empty", "lowercase-bearer-empty",
        "no-scheme", "bearer-glued"])
def test_missing_token_gets_a_bare_bearer_challenge(client, owner, idp, headers):
    token = idp.token("dev")
    headers = {k: v.replace("TOKEN", token) for k, v in headers.items()}
    refused(client, headers, error=None, owner=owner)


@pytest.mark.parametrize("scheme", ["bearer", "BEARER", "bEaReR", "Bearer  "])
def test_bearer_scheme_is_case_insensitive(client, idp, scheme):
    """RFC 9110 §11.1: the auth-scheme is case-insensitive, 1*SP before the token."""
    user = Api(client, idp, "ok")
    cased = {"Authorization": f"{scheme} {user.token}"}
    assert user.put("/api/profile", json={"name": "cased"}, headers=cased).status_code == 200
    assert user.get("/api/profile", headers=cased).payload["name"] == "cased"


def test_empty_dpop_token_gets_a_bare_bearer_challenge(client, owner):
    """§4.6 row 1: an empty token is a missing token: bare `Bearer`, each challenge once."""
    refused(client, {"Authorization": "DPoP "}, error=None, owner=owner)


def test_two_authorization_headers_are_an_invalid_request(client, owner, idp):
    token = idp.token("dev")
    headers = [("Authorization", f"Bearer {token}"), ("Authorization", f"Bearer {token}")]
    refused(client, headers, error="invalid_request", owner=owner)


def test_token_in_query_string_is_not_accepted(client, owner, idp):
    answer = client.get("/api/profile", query_string={"access_token": idp.token("dev")})
    assert_challenge(answer, error=None)
    assert_no_leak(answer)


def test_token_in_form_body_is_not_accepted(client, owner, idp):
    for method in ("PUT", "POST"):
        answer = client.open("/api/profile" if method == "PUT" else "/api/safe", method=method,
                             data={"access_token": idp.token("dev"), "name": "intruder"})
        assert_challenge(answer, error=None)
    assert owner.get("/api/profile").payload["name"] == "Dev"
    assert "intruder" not in [safe["name"] for safe in owner.get("/api/safe").payload["list"]]


# --------------------------------------------------------- algorithms and signatures


def test_the_reference_token_is_accepted(client, idp):
    accepted(client, idp, idp.token("ok"))


def test_alg_none_is_refused(client, owner, idp):
    for alg in ("none", "None", "NONE"):
        header = {"typ": "at+jwt", "alg": alg, "kid": "idp-key"}
        token = b64(json_bytes(header)) + "." + b64(json_bytes(idp.claims("dev"))) + "."
        refused(client, bearer(token), owner=owner)


def test_hs256_signed_with_the_public_key_is_refused(client, owner, idp, key_files):
    """RFC 8725 §2.1/§3.1 key confusion: the public key used as an HMAC secret."""
    public = public_of(idp.jwk)
    secrets_tried = [
        private_key(public).as_pem(private=False),
        json.dumps(public).encode(),
        json_bytes(public),
        key_files["idp"].read_bytes(),
        base64.urlsafe_b64decode(public["x"] + "=="),
    ]
    for secret in secrets_tried:
        for alg_kid in ({"kid": "idp-key"}, {}):
            token = hs256({"typ": "at+jwt", "alg": "HS256", **alg_kid}, idp.claims("dev"), secret)
            refused(client, bearer(token), owner=owner)


def test_unknown_kid_with_two_keys_is_refused(shared_apps, idp, jwks_dir, other_keys):
    second = other_keys["second"]
    path = write_jwks(jwks_dir, "two.jwks", idp.jwk, second)
    client = shared_apps(oidc={"server_public_jwks": path}).test_client()
    accepted(client, idp, idp.token("ok"))  # the right kid still works
    for header in ({"kid": "unknown"}, {"kid": DROP}, {"kid": "second"}, {"kid": ""}):
        refused(client, bearer(idp.token("dev", header=header)))
    refused(client, bearer(idp.token("dev", header={"kid": "unknown"},
                                     key=private_key(second))))


def test_token_signed_by_another_key_is_refused(client, owner, idp, attacker):
    refused(client, bearer(idp.token("dev", key=private_key(attacker))), owner=owner)


@pytest.mark.parametrize("member", ["jwk", "jku", "x5u"])
def test_key_pointers_in_the_header_are_ignored(client, owner, idp, attacker, member):
    """RFC 8725 §3.10: keys are never taken from the token's own header."""
    pointer = public_of(attacker) if member == "jwk" else "https://attacker.example/keys"
    forged = idp.token("dev", header={member: pointer}, key=private_key(attacker))
    refused(client, bearer(forged), owner=owner)
    accepted(client, idp, idp.token("ok", header={member: pointer}))


@pytest.mark.filterwarnings("ignore:EdDSA is deprecated")
@pytest.mark.parametrize("alg", ["PS256", "ES384", "EdDSA", "RS256"])
def test_other_idp_key_types_are_accepted(shared_apps, idp, jwks_dir, other_keys, alg):
    jwk = other_keys[alg]
    path = write_jwks(jwks_dir, f"{alg}.jwks", jwk)
    client = shared_apps(oidc={"server_public_jwks": path}).test_client()
    token = idp.token("ok", header={"alg": alg, "kid": jwk["kid"]}, key=private_key(jwk))
    accepted(client, idp, token)


def test_alg_must_fit_the_key(client, shared_apps, idp, jwks_dir, other_keys):
    # RS256 in the header over an EC key: refused whatever the signature bytes are.
    header = {"typ": "at+jwt", "alg": "RS256", "kid": "idp-key"}
    signing_input = b64(json_bytes(header)) + "." + b64(json_bytes(idp.claims("dev")))
    es256 = sign_compact({"alg": "ES256"}, b"x", idp.key).split(b".")[2].decode()
    for signature in (es256, b64(b"\0" * 256)):
        refused(client, bearer(signing_input + "." + signature))
    # An RSA key whose JWK says PS256 does not verify RS256 (§4.3: the key's own alg).
    ps = other_keys["PS256"]
    path = write_jwks(jwks_dir, "PS256.jwks", ps)
    client = shared_apps(oidc={"server_public_jwks": path}).test_client()
    refused(client, bearer(idp.token("dev", header={"alg": "RS256", "kid": ps["kid"]},
                                     key=private_key(ps))))
    # ES384 over a P-256 key is refused too (curve must fit).
    refused(client, bearer(idp.token("dev", header={"alg": "ES384"})))


# ----------------------------------------------------------------------- claims


@pytest.mark.parametrize("claims", [
    {"iss": "https://evil.example/"},
    {"iss": ISSUER.rstrip("/")},
    {"iss": ISSUER.upper()},
    {"iss": DROP},
    {"iss": ""},
    {"iss": [ISSUER]},
], ids=["other", "no-slash", "case", "missing", "empty", "list"])
def test_wrong_issuer_is_refused(client, owner, idp, claims):
    refused(client, bearer(idp.token("dev", **claims)), owner=owner)


@pytest.fixture
def aud_app(shared_apps):
    return shared_apps(oidc={"aud": "hutch"})


@pytest.mark.parametrize("aud", [DROP, "other", "hutch-admin", "", ["other"], "Hutch",
                                 ["hutch openid"], "https://billing.example hutch",
                                 "hutch openid", "openid hutch", " hutch"],
                         ids=["missing", "other", "prefix", "empty", "list-without", "case",
                              "list-of-joined", "url-then-word", "words", "words-last",
                              "padded"])
def test_configured_audience_refuses(aud_app, idp, aud):
    """RFC 7519 §4.1.3: a string aud is one value; it is never split on spaces."""
    refused(aud_app.test_client(), bearer(idp.token("dev", aud=aud)))


@pytest.mark.parametrize("aud", ["hutch", ["other", "hutch"]])
def test_configured_audience_accepts(aud_app, idp, aud):
    accepted(aud_app.test_client(), idp, idp.token("ok", aud=aud))


def test_audience_is_not_required_when_not_configured(client, idp):
    accepted(client, idp, idp.token("ok", aud="someone-else"))


def test_expired_token_is_refused_beyond_leeway(client, owner, idp):
    now = int(time.time())
    for exp in (now - 3600, now - 120):
        refused(client, bearer(idp.token("dev", iat=exp - 600, nbf=exp - 600, exp=exp)),
                owner=owner)


def test_exp_within_leeway_is_accepted(client, idp):
    now = int(time.time())
    accepted(client, idp, idp.token("ok", iat=now - 600, nbf=now - 600, exp=now - 5))


def test_a_token_living_longer_than_a_day_is_refused(client, owner, idp):
    """max_token_lifetime defaults to 24 h: a token valid for 100 years is refused."""
    now = int(time.time())
    for lifetime in (100 * 365 * 86400, 86401):
        refused(client, bearer(idp.token("dev", iat=now, nbf=now, exp=now + lifetime)),
                owner=owner)
    accepted(client, idp, idp.token("ok", iat=now, exp=now + 86400))


def test_max_token_lifetime_is_configurable(shared_apps, idp):
    client = shared_apps(max_token_lifetime=600).test_client()
    now = int(time.time())
    refused(client, bearer(idp.token("dev", iat=now - 10, exp=now + 591)))
    # An old iat counts as well: the lifetime is exp - iat, not what is left of it.
    refused(client, bearer(idp.token("dev", iat=now - 3000, exp=now + 60)))
    accepted(client, idp, idp.token("ok", iat=now - 10, exp=now + 590))


def test_future_nbf_and_iat_are_refused_beyond_skew(client, owner, idp):
    future = int(time.time()) + 120
    refused(client, bearer(idp.token("dev", nbf=future)), owner=owner)
    refused(client, bearer(idp.token("dev", iat=future, nbf=DROP)), owner=owner)
    refused(client, bearer(idp.token("dev", iat=future, nbf=future)), owner=owner)


def test_future_nbf_and_iat_within_skew_are_accepted(client, idp):
    soon = int(time.time()) + 10
    accepted(client, idp, idp.token("ok", nbf=soon))
    accepted(client, idp, idp.token("ok", iat=soon, nbf=DROP))
    accepted(client, idp, idp.token("ok", nbf=DROP))


@pytest.mark.parametrize("claims", [
    {"sub": DROP}, {"sub": ""}, {"sub": 123}, {"sub": ["dev"]},
    {"jti": DROP}, {"jti": ""}, {"jti": 7},
    {"client_id": DROP}, {"client_id": 12},
    {"iat": DROP}, {"iat": "1700000000"},
    {"exp": DROP}, {"exp": "123"}, {"exp": 1.5}, {"exp": True},
    {"nbf": "0"},
], ids=lambda c: "-".join(f"{k}={'drop' if v is DROP else v!r}" for k, v in c.items()))
def test_missing_or_mistyped_claim_is_refused(client, owner, idp, claims):
    claims = dict(claims)
    refused(client, bearer(idp.token(claims.pop("sub", "dev"), **claims)), owner=owner)


def test_exp_as_string_or_float_of_a_future_time_is_refused(client, owner, idp):
    future = int(time.time()) + 3600
    for exp in (str(future), future + 0.5, float(future)):
        refused(client, bearer(idp.token("dev", exp=exp)), owner=owner)


@pytest.mark.parametrize("scope", [DROP, ["hutch"], 1, None, {"hutch": True}],
                         ids=["missing", "list", "int", "null", "object"])
def test_missing_or_non_string_scope_is_an_invalid_token(client, owner, idp, scope):
    refused(client, bearer(idp.token("dev", scope=scope)), owner=owner)


@pytest.mark.parametrize("scope", ["openid", "", "hutchx", "Hutch", "openid profile"])
def test_other_scopes_are_insufficient(client, owner, idp, scope):
    names = {}
    for method in ("GET", "PUT", "DELETE"):
        answer = client.open("/api/profile", method=method, json={"name": "intruder"},
                             headers=bearer(idp.token("dev", scope=scope)))
        names = assert_challenge(answer, error="insufficient_scope", status=403)
        assert_no_leak(answer)
    assert names.get("scope") in (None, "hutch")
    assert owner.get("/api/profile").payload["name"] == "Dev"


@pytest.mark.parametrize("scope", ["hutch", "openid hutch", "hutch openid", "  hutch  "])
def test_scope_any_of_is_accepted(client, idp, scope):
    accepted(client, idp, idp.token("ok", scope=scope))


@pytest.mark.parametrize("typ", ["at+jwt", "AT+JWT", "At+Jwt", "application/at+jwt",
                                 "Application/AT+JWT"])
def test_typ_at_jwt_is_accepted_case_insensitively(client, idp, typ):
    accepted(client, idp, idp.token("ok", header={"typ": typ}))


@pytest.mark.parametrize("typ", [DROP, "JWT", "jwt", "at+jwt2", "dpop+jwt", "", 1,
                                 "application/jwt"],
                         ids=["missing", "JWT", "jwt", "at+jwt2", "dpop", "empty", "int",
                              "application-jwt"])
def test_other_typ_is_refused(client, owner, idp, typ):
    refused(client, bearer(idp.token("dev", header={"typ": typ})), owner=owner)


# ----------------------------------------------------------------------- sub length


def test_sub_of_128_bytes_is_accepted(client, idp):
    accepted(client, idp, idp.token("a" * 128), sub="a" * 128)
    accepted(client, idp, idp.token("é" * 64), sub="é" * 64)  # 64 characters, 128 bytes


def test_sub_of_129_bytes_is_refused(client, owner, idp):
    refused(client, bearer(idp.token("a" * 129)), owner=owner)
    refused(client, bearer(idp.token("é" * 64 + "a")), owner=owner)  # 65 characters


@pytest.mark.parametrize("sub", ["a\x00b", "dev\x00", "a\x01b", "\tdev", "dev\n", "a\x1fb",
                                 "a\x7fb"],
                         ids=["nul", "trailing-nul", "soh", "tab", "newline", "us", "del"])
def test_sub_with_a_control_character_is_refused(client, owner, idp, sub):
    """C0 controls and DEL in sub: 401 on every database (PostgreSQL text refuses NUL)."""
    refused(client, bearer(idp.token(sub)), owner=owner)


def test_sub_with_other_unicode_is_accepted(client, idp):
    for sub in ("dév", "a b", "a\u0085b", "名前"):
        accepted(client, idp, idp.token(sub), sub=sub)


# ----------------------------------------------------------------- malformed tokens


def _jwe() -> str:
    header = {"alg": "RSA-OAEP-256", "enc": "A256GCM", "typ": "at+jwt", "kid": "idp-key"}
    parts = [b64(secrets.token_bytes(n)) for n in (256, 12, 64, 16)]
    return ".".join([b64(json_bytes(header)), *parts])


def _garbage_tokens(token: str) -> dict[str, str]:
    head, payload, signature = token.split(".")
    return {
        "jwe": _jwe(),
        "truncated-signature": token[:-6],
        "no-signature": f"{head}.{payload}.",
        "two-parts": f"{head}.{payload}",
        "half": token[: len(token) // 2],
        "four-parts": token + ".AAAA",
        "padded": token + "==",
        "garbage": "garbage",
        "dots": "...",
        "not-json": f"{b64(b'hello')}.{payload}.{signature}",
        "array-header": f"{b64(b'[1]')}.{payload}.{signature}",
        "bad-base64": f"{head}.{payload}.!!!",
        "spaces": f"{head}. {payload}.{signature}",
        "unicode": "jwt-é",
    }


@pytest.mark.parametrize("kind", sorted(_garbage_tokens("a.b.c")))
def test_malformed_tokens_are_refused(client, owner, idp, kind):
    token = _garbage_tokens(idp.token("dev"))[kind]
    headers = bearer(token) if kind != "unicode" else {"Authorization": "Bearer jwt-\xe9"}
    refused(client, headers, owner=owner)


def test_a_100_kb_token_is_refused(client, owner, idp):
    token = idp.token("dev", padding="x" * 100_000)
    assert len(token) > 100_000
    refused(client, bearer(token), owner=owner)


# ------------------------------------------------------------------- realm, §12.4 #1


@pytest.fixture
def realm_client(shared_apps):
    return shared_apps(oidc={"realm": "vault"}).test_client()


def test_realm_comes_first_in_every_challenge(realm_client, idp):
    refused(realm_client, {}, error=None, realm="vault")
    refused(realm_client, bearer("garbage"), realm="vault")
    refused(realm_client, bearer(idp.token("dev", exp=1)), realm="vault")
    refused(realm_client, bearer(idp.token("dev", scope="openid")), error="insufficient_scope",
            status=403, realm="vault")


@pytest.fixture
def webapp_client(shared_apps, tmp_path_factory):
    folder = tmp_path_factory.getbasetemp() / "hutch-webapp"
    (folder / "fonts").mkdir(parents=True, exist_ok=True)
    (folder / "index.html").write_text("<html></html>")
    (folder / "config.json").write_text('{"a":1}')
    (folder / "fonts" / "forkawesome-ful-list.json").write_text("[]")
    return shared_apps(app_files_path=str(folder)).test_client()


@pytest.mark.parametrize("path", ["/.well-known/hutch-configuration",
                                  "//.well-known/hutch-configuration", "/jwks", "/",
                                  "/index.html", "/config.json",
                                  "/fonts/forkawesome-ful-list.json"])
def test_unauthenticated_routes_ignore_authorization(webapp_client, path):
    for value in ("Bearer", "Bearer ", "Bearer garbage", "DPoP", "Basic x"):
        for accept in ("application/json", "application/jwt"):
            # The raw target, as a real server passes it (the front end's doubled slash).
            answer = webapp_client.get(path.replace("//", "/"), headers={
                "Authorization": value, "Accept": accept}, environ_overrides={
                "RAW_URI": path, "REQUEST_URI": path})
            assert answer.status_code == 200, (path, value, answer.status_code, answer.data[:200])
            assert "WWW-Authenticate" not in answer.headers
