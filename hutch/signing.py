"""The server's signing JWKS and the one function that signs a response.

Every ``/api`` GET answer, and the configuration and JWKS endpoints when asked
for ``application/jwt``, is a JWS whose protected header carries ``iat`` and
``exp`` (HUTCH-API.md §5.1).
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey, OKPKey, RSAKey, thumbprint

from hutch.jose import (
    ALGORITHM_KEYS,
    KEY_CLASSES,
    MIN_RSA_BITS,
    SIGNING_ALGS,
    AnyKey,
    encode_header,
    json_bytes,
    key_fits,
    sign_encoded,
)
from hutch.settings import ConfigError

log = logging.getLogger(__name__)

# Members a public JWK may carry in /jwks (§5.4); everything else stays private.
PUBLIC_MEMBERS = ("kty", "kid", "alg", "use", "crv", "n", "e", "x", "y",
                  "x5c", "x5u", "x5t", "x5t#S256")


class SigningKeys:
    """The private signing keys, in file order; the first one is the default."""

    def __init__(self, keys: list[tuple[str, str, AnyKey, dict[str, Any]]], sign_exp: int):
        self._keys = {kid: (alg, key) for kid, alg, key, _ in keys}
        self.kids = tuple(kid for kid, _, _, _ in keys)
        self.first_kid = self.kids[0]
        self.sign_exp = sign_exp
        self.public_jwks = {"keys": [public for _, _, _, public in keys]}
        self._warned: set[str] = set()
        # kid -> (iat, encoded header + "."): the header changes once a second.
        self._headers: dict[str, tuple[int, bytes]] = {}

    @classmethod
    def load(cls, path: Path, sign_exp: int) -> SigningKeys:
        """Read and check the ``sign_key`` file (§5.2); any problem is a ConfigError."""
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"sign_key: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"sign_key: {path} is not valid JSON") from None
        return cls.from_jwks(data, sign_exp, str(path))

    @classmethod
    def from_jwks(cls, data: Any, sign_exp: int, where: str = "JWKS") -> SigningKeys:
        if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
            raise ConfigError(f"sign_key: {where} must be a JWKS with at least one key")
        keys = []
        for index, jwk_dict in enumerate(data["keys"]):
            keys.append(_check_key(jwk_dict, f"sign_key: key {index} of {where}"))
        kids = [k[0] for k in keys]
        duplicates = sorted({kid for kid in kids if kids.count(kid) > 1})
        if duplicates:
            raise ConfigError(f"sign_key: duplicate kid {duplicates[0]!r} in {where}")
        return cls(keys, sign_exp)

    def has(self, kid: Any) -> bool:
        return isinstance(kid, str) and kid in self._keys

    def secret(self, label: bytes) -> bytes:
        """32 bytes derived from the private signing keys for ``label`` (HKDF-SHA256,
        RFC 5869): the same in every worker and every server that shares this JWKS,
        unknown to anyone without it (list cursors are encrypted with one)."""
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF

        material = json_bytes([self._keys[kid][1].as_dict(private=True) for kid in self.kids])
        return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=label).derive(material)

    def resolve(self, kid: str | None) -> str:
        """The kid that signs for a profile: its ``sign_kid``, else the first key (§13.11)."""
        if kid and kid in self._keys:
            return kid
        if kid and kid not in self._warned:  # once per kid: this runs on every request
            self._warned.add(kid)
            log.warning("sign_kid %r is not in the signing JWKS; signing with %r",
                        kid, self.first_kid)
        return self.first_kid

    def sign(self, payload: Any, kid: str | None = None,
             now: int | None = None) -> bytes | bytearray:
        """Sign ``payload`` (an object, or bytes already JSON) as §5.1 describes; a large
        answer comes as a ``bytearray`` (hutch.jose.LARGE_PAYLOAD)."""
        kid = self.resolve(kid)
        alg, key = self._keys[kid]
        iat = int(time.time()) if now is None else now
        cached = self._headers.get(kid)
        if cached is None or cached[0] != iat:
            header = {"iat": iat, "exp": iat + self.sign_exp, "typ": "JWT", "alg": alg,
                      "kid": kid}
            cached = self._headers[kid] = (iat, encode_header(header))
        body = payload if isinstance(payload, bytes) else json_bytes(payload)
        return sign_encoded(cached[1], body, alg, key)

    def thumbprint(self, kid: str) -> str:
        return thumbprint(self._keys[kid][1].as_dict(private=False))


def _check_key(jwk_dict: Any, where: str) -> tuple[str, str, AnyKey, dict[str, Any]]:
    if not isinstance(jwk_dict, dict):
        raise ConfigError(f"{where}: not a JSON object")
    kid, alg, kty = jwk_dict.get("kid"), jwk_dict.get("alg"), jwk_dict.get("kty")
    if not isinstance(kid, str) or not kid:
        raise ConfigError(f"{where}: needs a non-empty kid")
    if kty == "oct":
        raise ConfigError(f"{where} ({kid}): symmetric keys cannot sign responses")
    if alg not in SIGNING_ALGS:
        raise ConfigError(f"{where} ({kid}): alg must be one of {', '.join(SIGNING_ALGS)}")
    cls = KEY_CLASSES.get(kty)
    if cls is None:
        raise ConfigError(f"{where} ({kid}): unsupported kty {kty!r}")
    try:
        key = cls.import_key(jwk_dict)
    except Exception as exc:  # noqa: BLE001 - any parse failure is a config error
        raise ConfigError(f"{where} ({kid}): not a valid {kty} key ({exc})") from None
    if not key.is_private:
        raise ConfigError(f"{where} ({kid}): must be a private key")
    if not key_fits(alg, key, ALGORITHM_KEYS):
        raise ConfigError(f"{where} ({kid}): a {kty} key cannot sign {alg}")
    if kty == "RSA" and key.raw_value.key_size < MIN_RSA_BITS:
        raise ConfigError(f"{where} ({kid}): RSA keys need at least {MIN_RSA_BITS} bits")
    public = {m: jwk_dict[m] for m in PUBLIC_MEMBERS if m in jwk_dict}
    return kid, alg, key, public


def generate_jwks(alg: str = "ES256", kid: str | None = None) -> dict[str, Any]:
    """A private JWKS holding one new key for ``alg`` (``hutch keys generate``)."""
    if alg not in SIGNING_ALGS:
        raise ValueError(f"unsupported alg {alg!r}; choose one of {', '.join(SIGNING_ALGS)}")
    kty, curves = ALGORITHM_KEYS[alg]
    if kty == "RSA":
        key = RSAKey.generate_key(3072 if alg.endswith(("384", "512")) else 2048, private=True)
    elif kty == "EC":
        key = ECKey.generate_key(curves[0], private=True)
    else:
        key = OKPKey.generate_key("Ed25519", private=True)
    data = key.as_dict(private=True)
    data["kid"] = kid or thumbprint(key.as_dict(private=False))
    data["alg"] = alg
    data["use"] = "sig"
    return {"keys": [data]}
