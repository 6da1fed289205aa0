"""The embedded default: an instance folder with SQLite, signing keys and a local issuer.

``hutch serve`` with no configuration creates it, so that ``hutch token`` plus
curl is a complete first API call. The local issuer is for trying Hutch;
production deployments configure ``[oidc]``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import stat
import time
from pathlib import Path
from typing import Any

from joserfc.jwk import ECKey
from sqlalchemy.engine import make_url

from hutch.jose import json_bytes, sign_compact
from hutch.settings import LOCAL_ISSUER, ConfigError, Settings
from hutch.signing import generate_jwks

log = logging.getLogger(__name__)


def write_private(path: Path, document: dict[str, Any], *, replace: bool = False) -> None:
    """Write a private JWKS readable by its owner only; FileExistsError if it exists.

    The file is created with mode 0600 (O_EXCL: never through a planted symlink), so
    the key is never readable by others, not even between a write and a chmod.
    ``replace`` writes a new file beside it and renames it over the old one.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = path.with_name(f".{path.name}.{secrets.token_hex(6)}") if replace else path
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document, handle, indent=2)
            handle.write("\n")
        if replace:
            os.replace(target, path)
    except BaseException:
        target.unlink(missing_ok=True)
        raise


def warn_exposed_keys(settings: Settings) -> None:
    """Log a warning for each private key file that group or others may read or write."""
    named = [("sign_key", settings.sign_key)]
    if settings.oidc.local_issuer_key is not None:
        named.append(("local issuer key", settings.oidc.local_issuer_key))
    for label, path in named:
        try:
            mode = stat.S_IMODE(os.stat(path).st_mode)
        except OSError:
            continue  # missing or unreadable: reported where the file is read
        if mode & 0o077:
            log.warning("%s %s is open to group or others (mode %04o): anyone who can read "
                        "it can sign as this server; chmod 600 it", label, path, mode)


def refuse_lost_database(settings: Settings) -> None:
    """Stop when an earlier run's keys are here but its SQLite file is not.

    Creating a new empty database then would hide the loss: every user would find
    an empty vault, signed with the keys they trust. ``hutch init`` still creates
    one on purpose.
    """
    url = make_url(settings.database.url)
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return
    keys = [path for path in (settings.sign_key, settings.oidc.local_issuer_key)
            if path is not None and Path(path).exists()]
    if keys and not Path(url.database).exists():
        raise ConfigError(
            f"database: the file {url.database} is missing, but {keys[0]} is from "
            "an earlier run; restore the file, or run 'hutch init' to start an empty database")


def ensure_sign_key(settings: Settings) -> bool:
    """Create the signing JWKS (one ES256 key) when the file does not exist."""
    if Path(settings.sign_key).exists():
        return False
    write_private(Path(settings.sign_key), generate_jwks("ES256"))
    return True


def ensure_local_issuer(settings: Settings) -> bool:
    """Create the local issuer's key pair (embedded default only)."""
    private = settings.oidc.local_issuer_key
    if private is None or Path(private).exists():
        return False
    document = generate_jwks("ES256")
    write_private(Path(private), document)
    public = {"keys": [{k: v for k, v in document["keys"][0].items() if k != "d"}]}
    Path(settings.oidc.server_public_jwks).write_text(json.dumps(public, indent=2) + "\n")
    return True


def mint_token(settings: Settings, sub: str, scope: str | None, lifetime: int) -> str:
    """An RFC 9068 access token from the local issuer (``hutch token``)."""
    if not settings.oidc.is_local:
        raise ConfigError("oidc: this instance trusts a real identity provider; "
                          "get tokens from it, not from hutch token")
    try:
        document = json.loads(Path(settings.oidc.local_issuer_key).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError("oidc: the local issuer key is missing; run hutch init or "
                          "hutch serve first") from None
    jwk = document["keys"][0]
    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "sub": sub,
        "client_id": "hutch-cli",
        "jti": secrets.token_urlsafe(16),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
        "scope": scope or settings.hutch_scope,
    }
    header = {"typ": "at+jwt", "alg": jwk["alg"], "kid": jwk["kid"]}
    return sign_compact(header, json_bytes(claims), ECKey.import_key(jwk)).decode("ascii")
