"""DPoP proof checks (RFC 9449 §4.3), for access tokens bound with ``cnf.jkt``."""

from __future__ import annotations

import json
from typing import Any, Protocol

from joserfc.jwk import thumbprint

from hutch.errors import AuthError
from hutch.jose import (
    ALGORITHM_KEYS,
    DPOP_ALGS,
    ES256K,
    KEY_CLASSES,
    MIN_RSA_BITS,
    PRIVATE_MEMBERS,
    b64url_decode,
    b64url_sha256,
    is_int,
    key_fits,
    verify_compact,
)

DEFAULT_MAX_AGE = 300
MAX_PROOF_BYTES = 8 * 1024
MAX_JTI_BYTES = 256
_ALL_KEYS = {**ALGORITHM_KEYS, **ES256K}


class Replays(Protocol):
    def remember(self, jti: str, jkt: str, expires_at: int, now: int) -> bool: ...


def _invalid(description: str) -> AuthError:
    return AuthError("invalid_dpop_proof", description, scheme="DPoP")


def _segment(value: str) -> dict[str, Any]:
    try:
        decoded = json.loads(b64url_decode(value))
    except (ValueError, UnicodeDecodeError):
        raise _invalid("The DPoP proof is not a JWS") from None
    if not isinstance(decoded, dict):
        raise _invalid("The DPoP proof is not a JWS")
    return decoded



def verify_proof(
    proof: str,
    *,
    method: str,
    htu: str,
    access_token: str,
    jkt: str,
    max_age: int,
    leeway: int,
    now: int,
    replays: Replays,
) -> None:
    """Raise ``AuthError`` (invalid_dpop_proof) unless ``proof`` passes every check."""
    if len(proof) > MAX_PROOF_BYTES:
        raise _invalid("The DPoP proof is too large")
    parts = proof.split(".")
    if len(parts) != 3:
        raise _invalid("The DPoP proof is not a JWS")
    header = _segment(parts[0])
    # RFC 9449 §4.3 (4)-(6): typ, an asymmetric allowed alg, a public jwk.
    if header.get("typ") != "dpop+jwt":
        raise _invalid("The DPoP proof typ must be dpop+jwt")
    alg = header.get("alg")
    if alg not in DPOP_ALGS:
        raise _invalid("The DPoP proof algorithm is not allowed")
    if any(name in header for name in ("x5c", "x5u", "jku", "crit")):
        raise _invalid("The DPoP proof header carries a forbidden member")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict) or any(m in jwk for m in PRIVATE_MEMBERS):
        raise _invalid("The DPoP proof jwk must be a public key")
    cls = KEY_CLASSES.get(jwk.get("kty"))
    if cls is None:
        raise _invalid("The DPoP proof jwk type is not allowed")
    try:
        key = cls.import_key(jwk)
    except Exception:  # noqa: BLE001 - any import failure means a bad key
        raise _invalid("The DPoP proof jwk is invalid") from None
    if key.key_type == "RSA" and key.raw_value.key_size < MIN_RSA_BITS:
        raise _invalid("The DPoP proof RSA key is too small")
    if not key_fits(alg, key, _ALL_KEYS):
        raise _invalid("The DPoP proof algorithm does not match its key")
    try:
        ok = verify_compact(f"{parts[0]}.{parts[1]}".encode("ascii"), b64url_decode(parts[2]),
                            alg, key)
    except (ValueError, UnicodeEncodeError):
        ok = False
    if not ok:
        raise _invalid("The DPoP proof signature is invalid")
    claims = _segment(parts[1])
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti.encode("utf-8", "replace")) > MAX_JTI_BYTES:
        raise _invalid("The DPoP proof jti is invalid")
    if claims.get("htm") != method:
        raise _invalid("The DPoP proof htm does not match the request method")
    if claims.get("htu") != htu:
        raise _invalid("The DPoP proof htu does not match the request URL")
    iat = claims.get("iat")
    if not is_int(iat) or iat > now + leeway:
        raise _invalid("The DPoP proof iat is in the future")
    if iat < now - max_age:
        raise _invalid("The DPoP proof is too old")
    # RFC 9449 §4.3 (10): the proof is bound to this access token through `ath`.
    if claims.get("ath") != b64url_sha256(access_token):
        raise _invalid("The DPoP proof ath does not match the access token")
    # RFC 9449 §6.1: the token is bound to the proof's key through cnf.jkt.
    if thumbprint(key.as_dict(private=False)) != jkt:
        raise _invalid("The DPoP proof key does not match the access token binding")
    # RFC 9449 §11.1: a proof is accepted once within its lifetime.
    if not replays.remember(jti, jkt, iat + max_age + leeway, now):
        raise _invalid("The DPoP proof was already used")
