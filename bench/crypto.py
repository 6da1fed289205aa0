"""Keys and tokens for the bench, and the crypto floor: joserfc sign/verify on one core."""

from __future__ import annotations

import json
import secrets
import subprocess
import time
from pathlib import Path

from joserfc import jws
from joserfc.jwk import ECKey, RSAKey
from joserfc.jws import JWSRegistry

from bench.targets import ISSUER, hutch_command


def signing_jwks(path: Path, with_rs256: bool) -> None:
    """The servers' private signing JWKS (made by `hutch keys generate`): an ES256 key with
    kid "ES256", then, when asked, an RS256 key with kid "RS256"."""
    keys = []
    for alg in ("ES256", "RS256") if with_rs256 else ("ES256",):
        out = subprocess.run([hutch_command(), "keys", "generate", "--alg", alg, "--kid", alg],
                             check=True, capture_output=True, text=True).stdout
        keys.extend(json.loads(out)["keys"])
    path.write_text(json.dumps({"keys": keys}, indent=2) + "\n")
    path.chmod(0o600)


class IdentityProvider:
    """A static-JWKS identity provider: one ES256 key, tokens shaped like a real one's."""

    def __init__(self, folder: Path):
        self.key = ECKey.generate_key("P-256", private=True)
        self.kid = self.key.thumbprint()
        self.public_jwks = folder / "idp-public.jwks"
        public = dict(self.key.as_dict(private=False), kid=self.kid, alg="ES256", use="sig")
        self.public_jwks.write_text(json.dumps({"keys": [public]}) + "\n")

    def token(self, sub: str, lifetime: int = 12 * 3600) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": sub, "client_id": "bench", "jti": secrets.token_hex(8),
                  "iat": now, "nbf": now, "exp": now + lifetime, "scope": "hutch"}
        header = {"typ": "at+jwt", "alg": "ES256", "kid": self.kid}
        return jws.serialize_compact(header, json.dumps(claims).encode(), self.key)


def _rate(func, seconds: float) -> float:
    """Calls per second of ``func`` over about ``seconds`` (after a short warm-up)."""
    for _ in range(20):
        func()
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(50):
            func()
        count += 50
        now = time.perf_counter()
        if now >= deadline:
            return count / (now - start)


def floor(seconds: float = 1.0) -> list[tuple[str, float]]:
    """joserfc operations per second on one core, for a signed profile answer."""
    payload = json.dumps({"name": "bench user", "message": None, "picture": None,
                          "sign_kid": "ES256", "last_updated": int(time.time())}).encode()
    # Signed answers carry iat/exp in the protected header (HUTCH-API.md §5.1).
    registry = JWSRegistry(strict_check_header=False)
    results = []
    for alg, key in (("ES256", ECKey.generate_key("P-256", private=True)),
                     ("RS256", RSAKey.generate_key(2048, private=True))):
        header = {"alg": alg, "kid": alg, "iat": int(time.time()), "exp": int(time.time()) + 600}
        token = jws.serialize_compact(header, payload, key, registry=registry)
        results.append((f"{alg} sign", _rate(
            lambda h=header, k=key: jws.serialize_compact(h, payload, k, registry=registry),
            seconds)))
        results.append((f"{alg} verify", _rate(
            lambda t=token, k=key: jws.deserialize_compact(t, k, registry=registry),
            seconds)))
    return results
