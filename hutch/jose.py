"""JOSE facts shared by signing, access-token and DPoP checks.

Every algorithm Hutch accepts is listed here, tied to the key type it needs
(RFC 8725 §3.1: never let the token choose how it is verified).
"""

from __future__ import annotations

import base64
import hashlib
import json
import warnings
from typing import Any

import orjson
from joserfc.jwk import ECKey, OKPKey, RSAKey, SecurityWarning
from joserfc.jws import JWSRegistry

# alg -> (kty, allowed curves or None)
ALGORITHM_KEYS: dict[str, tuple[str, tuple[str, ...] | None]] = {
    "RS256": ("RSA", None),
    "RS384": ("RSA", None),
    "RS512": ("RSA", None),
    "PS256": ("RSA", None),
    "PS384": ("RSA", None),
    "PS512": ("RSA", None),
    "ES256": ("EC", ("P-256",)),
    "ES384": ("EC", ("P-384",)),
    "ES512": ("EC", ("P-521",)),
    "EdDSA": ("OKP", ("Ed25519", "Ed448")),
    "Ed25519": ("OKP", ("Ed25519",)),
}
ES256K = {"ES256K": ("EC", ("secp256k1",))}
SIGNING_ALGS = tuple(ALGORITHM_KEYS)
#: Algorithms a DPoP proof may use (RFC 9449 §5: asymmetric only), as advertised in
#: WWW-Authenticate and the configuration document.
DPOP_ALGS = SIGNING_ALGS + tuple(ES256K)
MIN_RSA_BITS = 2048

AnyKey = RSAKey | ECKey | OKPKey
# Asymmetric key types only: an ``oct`` key never signs or verifies here (RFC 8725 §3.1).
KEY_CLASSES = {"RSA": RSAKey, "EC": ECKey, "OKP": OKPKey}
# JWK members that only a private key has.
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")

# The registry the algorithms come from; only the listed names are ever used.
_REGISTRY = JWSRegistry(algorithms=[*SIGNING_ALGS, "ES256K"], strict_check_header=False)

warnings.filterwarnings("ignore", category=SecurityWarning, message=".*EdDSA.*")


def b64url(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def b64url_decode(data: str | bytes) -> bytes:
    if isinstance(data, str):
        data = data.encode("ascii")
    if b"=" in data:
        raise ValueError("padding is not allowed in base64url")
    return base64.urlsafe_b64decode(data + b"=" * (-len(data) % 4))


def b64url_sha256(value: str) -> str:
    return b64url(hashlib.sha256(value.encode("ascii")).digest()).decode("ascii")


def is_int(value: Any) -> bool:
    """A JSON integer (NumericDate claims): not a float, a string or a boolean."""
    return isinstance(value, int) and not isinstance(value, bool)


def json_bytes(value: Any) -> bytes:
    """Compact JSON, UTF-8, as the original's jansson writes it.

    orjson writes the same bytes as ``json.dumps(separators=(",", ":"),
    ensure_ascii=False)`` several times faster (a 100-coin list is 34 KB); what it
    refuses (integers beyond 64 bits, lone surrogates) goes to the standard library.
    """
    try:
        return orjson.dumps(value)
    except TypeError:
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def key_fits(alg: str, key: AnyKey, table: dict[str, tuple[str, tuple[str, ...] | None]]) -> bool:
    """True when ``key`` is of the type ``alg`` needs, and its own ``alg`` (if any) agrees."""
    wanted = table.get(alg)
    if wanted is None:
        return False
    kty, curves = wanted
    if key.key_type != kty:
        return False
    if curves is not None and key.get("crv") not in curves:
        return False
    own = key.get("alg")
    return own is None or own == alg


def encode_header(header: dict[str, Any]) -> bytes:
    """The first part of a compact JWS, with its dot."""
    return b64url(json_bytes(header)) + b"."


#: Payloads from this size on are base64-encoded chunk by chunk (a multiple of 3 bytes,
#: so no padding inside) into one buffer of the final size: a 16 MiB coin is then held
#: once as JSON and once as the JWS, instead of in several base64 and concatenated copies.
LARGE_PAYLOAD = 1024 * 1024
_B64_CHUNK = 3 * 256 * 1024


def sign_encoded(encoded_header: bytes, payload: bytes, alg: str,
                 key: AnyKey) -> bytes | bytearray:
    """JWS compact serialization under a header encoded by ``encode_header``.

    Large payloads give a ``bytearray`` (see ``LARGE_PAYLOAD``), others ``bytes``.
    """
    signer = _REGISTRY.get_alg(alg)
    if len(payload) < LARGE_PAYLOAD:
        signing_input = encoded_header + b64url(payload)
        return signing_input + b"." + b64url(signer.sign(signing_input, key))
    signed_length = len(encoded_header) + (len(payload) * 4 + 2) // 3
    jws = bytearray(signed_length)  # filled in place: no over-allocation, no copy
    jws[:len(encoded_header)] = encoded_header
    position = len(encoded_header)
    with memoryview(payload) as view:
        for start in range(0, len(view), _B64_CHUNK):
            part = b64url(view[start:start + _B64_CHUNK])
            jws[position:position + len(part)] = part
            position += len(part)
    with memoryview(jws) as signing_input:
        signature = signer.sign(signing_input, key)
    jws += b"." + b64url(signature)
    return jws


def sign_compact(header: dict[str, Any], payload: bytes, key: AnyKey) -> bytes:
    """JWS compact serialization with the header members in the given order."""
    return sign_encoded(encode_header(header), payload, header["alg"], key)


def verify_compact(signing_input: bytes, signature: bytes, alg: str, key: AnyKey) -> bool:
    return _REGISTRY.get_alg(alg).verify(signing_input, signature, key)
