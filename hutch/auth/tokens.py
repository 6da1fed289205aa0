"""RFC 9068 JWT access-token validation (HUTCH-API.md §4.2), on joserfc primitives.

Checks follow RFC 8725 (JWT BCP): the algorithm comes from an explicit
allow-list and must fit the key's type, ``typ`` must say ``at+jwt``, every
time claim is checked with a bounded leeway.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from hutch.auth.oidc import KeySource
from hutch.errors import AuthError
from hutch.jose import ALGORITHM_KEYS, ES256K, b64url_decode, is_int, key_fits, verify_compact
from hutch.settings import OidcSettings

MAX_TOKEN_BYTES = 16 * 1024
MAX_SUB_BYTES = 128
DEFAULT_MAX_LIFETIME = 86400
# C0 controls and DEL: no identity needs them, and PostgreSQL refuses NUL in text (§4.2, [Q-8]).
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
ACCEPTED_TYP = ("at+jwt", "application/at+jwt")
TOKEN_ALGS = tuple(ALGORITHM_KEYS) + tuple(ES256K)
_ALL_KEYS = {**ALGORITHM_KEYS, **ES256K}


@dataclass(frozen=True)
class AccessToken:
    sub: str
    scope: str
    client_id: str
    exp: int
    jkt: str | None
    raw: str


def _invalid(description: str) -> AuthError:
    return AuthError("invalid_token", description)



def _decode_json(segment: str, what: str) -> dict[str, Any]:
    try:
        value = json.loads(b64url_decode(segment))
    except (ValueError, UnicodeDecodeError):
        raise _invalid(f"The access token {what} is not base64url JSON") from None
    if not isinstance(value, dict):
        raise _invalid(f"The access token {what} is not a JSON object")
    return value


def valid_sub(sub: str) -> bool:
    """Non-empty, at most 128 UTF-8 bytes, no control character, no lone surrogate."""
    if not sub or len(sub) > MAX_SUB_BYTES or _CONTROL.search(sub):
        return False
    try:
        return len(sub.encode("utf-8")) <= MAX_SUB_BYTES
    except UnicodeEncodeError:
        return False


class TokenValidator:
    """Turns a bearer string into an ``AccessToken`` or raises ``AuthError``."""

    def __init__(self, oidc: OidcSettings, keys: KeySource, scopes: tuple[str, ...],
                 clock=time.time, cache_size: int = 4096,
                 max_lifetime: int = DEFAULT_MAX_LIFETIME):
        self._oidc = oidc
        self._max_lifetime = max_lifetime
        self._keys = keys
        self._scopes = scopes
        self._clock = clock
        # Verified tokens by SHA-256, until their exp but never longer than max_lifetime
        # after they were verified: signature and claims are not re-checked on every
        # request (the expiry still is).
        self._cache: OrderedDict[bytes, tuple[AccessToken, int]] = OrderedDict()
        self._cache_size = cache_size
        self._lock = threading.Lock()
        self._generation = getattr(keys, "generation", 0)

    def validate(self, token: str) -> AccessToken:
        if len(token) > MAX_TOKEN_BYTES:
            raise _invalid("The access token is too large")
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        now = int(self._clock())
        generation = getattr(self._keys, "generation", 0)
        if generation != self._generation:
            # The provider's keys changed: tokens of a withdrawn key must fail from now on.
            with self._lock:
                self._cache.clear()
                self._generation = generation
        cached = self._cache.get(digest)
        if cached is not None:
            access, until = cached
            if until > now:
                return access
            with self._lock:
                self._cache.pop(digest, None)
        access = self._verify(token, now)
        until = min(access.exp + self._oidc.leeway, now + self._max_lifetime)
        with self._lock:
            self._cache[digest] = (access, until)
            while len(self._cache) > self._cache_size:
                self._cache.popitem(last=False)
        return access

    def _verify(self, token: str, now: int) -> AccessToken:
        parts = token.split(".")
        if len(parts) != 3:
            # A JWE has five parts: encrypted access tokens are refused (§4.2 "Format").
            raise _invalid("The access token is not a signed JWT")
        header = _decode_json(parts[0], "header")
        alg = header.get("alg")
        if alg not in TOKEN_ALGS:
            raise _invalid("The access token algorithm is not allowed")
        typ = header.get("typ")
        # RFC 9068 §4: the resource server MUST check typ (at+jwt, case-insensitive).
        if not isinstance(typ, str) or typ.lower() not in ACCEPTED_TYP:
            raise _invalid("The access token is not an at+jwt token")
        if "crit" in header:
            # RFC 7515 §4.1.11: we understand no extension, so none may be critical.
            raise _invalid("The access token uses an unsupported critical header")
        kid = header.get("kid")
        key = self._keys.select(kid if isinstance(kid, str) else None)
        table = _ALL_KEYS if key.get("alg") == "ES256K" else ALGORITHM_KEYS
        if not key_fits(alg, key, table):
            # RFC 8725 §3.1: the algorithm must match the key, never the other way round.
            raise _invalid("The access token algorithm does not match its key")
        try:
            signature = b64url_decode(parts[2])
            valid = verify_compact(f"{parts[0]}.{parts[1]}".encode("ascii"), signature, alg, key)
        except (ValueError, UnicodeEncodeError):
            valid = False
        if not valid:
            raise _invalid("The access token signature is invalid")
        return self._check_claims(_decode_json(parts[1], "payload"), token, now)

    def _check_claims(self, claims: dict[str, Any], token: str, now: int) -> AccessToken:
        leeway = self._oidc.leeway
        iss = claims.get("iss")
        if not isinstance(iss, str) or not iss or iss != self._keys.issuer:
            raise _invalid("The access token issuer is not trusted")
        exp, iat, nbf = claims.get("exp"), claims.get("iat"), claims.get("nbf")
        if not is_int(exp) or exp <= now - leeway:
            raise _invalid("The access token is expired")
        if not is_int(iat) or iat > now + leeway:
            raise _invalid("The access token iat is invalid")
        if nbf is not None and (not is_int(nbf) or nbf > now + leeway):
            raise _invalid("The access token is not valid yet")
        if exp - iat > self._max_lifetime:
            # A token valid for years is a stolen credential that never expires: refuse
            # lifetimes the operator did not allow (max_token_lifetime, default 24 h).
            raise _invalid("The access token lifetime (exp - iat) exceeds max_token_lifetime")
        sub = claims.get("sub")
        if not isinstance(sub, str) or not valid_sub(sub):
            raise _invalid("The access token sub is invalid")
        jti = claims.get("jti")
        if not isinstance(jti, str) or not jti:
            raise _invalid("The access token jti is invalid")
        client_id = claims.get("client_id")
        if not isinstance(client_id, str):
            raise _invalid("The access token client_id is invalid")
        self._check_audience(claims.get("aud"))
        scope = claims.get("scope")
        if not isinstance(scope, str):
            raise _invalid("The access token scope is invalid")
        granted = set(scope.split())
        if not any(wanted in granted for wanted in self._scopes):
            raise AuthError("insufficient_scope", "The scope is invalid", status=403,
                            extra={"scope": " ".join(self._scopes)})
        cnf = claims.get("cnf")
        jkt = None
        if cnf is not None:
            if not isinstance(cnf, dict):
                raise _invalid("The access token cnf is invalid")
            jkt = cnf.get("jkt")
            if jkt is not None and (not isinstance(jkt, str) or not jkt):
                raise _invalid("The access token cnf.jkt is invalid")
        return AccessToken(sub=sub, scope=scope, client_id=client_id, exp=exp, jkt=jkt, raw=token)

    def _check_audience(self, aud: Any) -> None:
        wanted = self._oidc.aud
        if wanted is None:
            return  # §4.2: aud is checked only when configured (test tokens carry none).
        if isinstance(aud, str):
            # RFC 7519 §4.1.3: a string aud is one value, compared whole; splitting it
            # on spaces let "https://billing.example hutch" pass for "hutch".
            if aud == wanted:
                return
        elif isinstance(aud, list) and wanted in aud:
            return
        raise _invalid("The access token audience is invalid")
