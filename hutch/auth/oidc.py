"""Where access-token verification keys come from (HUTCH-API.md §4.3).

``StaticJwks`` reads ``oidc.server_public_jwks`` once. ``RemoteJwks`` follows
``oidc.server_remote_config`` (OpenID discovery, then ``jwks_uri``) and fetches
the JWKS again when a token names an unknown ``kid``, at most once per
cool-down, so a provider's key rotation needs no restart.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Protocol

from hutch.errors import AuthError
from hutch.jose import KEY_CLASSES, PRIVATE_MEMBERS, AnyKey
from hutch.settings import ConfigError, OidcSettings

log = logging.getLogger(__name__)

MAX_DOCUMENT_BYTES = 1024 * 1024
FETCH_TIMEOUT = 10


class KeySource(Protocol):
    issuer: str | None

    def select(self, kid: str | None) -> AnyKey: ...


def parse_jwks(data: Any, where: str) -> list[AnyKey]:
    """The public signature keys of a JWKS; symmetric and encryption keys are skipped."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list):
        raise ValueError(f"{where} is not a JWKS (no 'keys' list)")
    keys = []
    for entry in data["keys"]:
        if not isinstance(entry, dict):
            continue
        cls = KEY_CLASSES.get(entry.get("kty"))
        if cls is None or entry.get("use", "sig") != "sig":
            continue  # RFC 8725 §3.1: never verify with an HMAC key or an encryption key.
        public = {k: v for k, v in entry.items() if k not in PRIVATE_MEMBERS}
        try:
            keys.append(cls.import_key(public))
        except Exception as exc:  # noqa: BLE001 - one bad key must not hide the others
            log.warning("skipping an unusable key in %s: %s", where, exc)
    if not keys:
        raise ValueError(f"{where} holds no usable signature key")
    return keys


def _pick(keys: list[AnyKey], kid: str | None) -> AnyKey | None:
    # §4.2: with one key, use it whatever the kid (the signature must still verify).
    if len(keys) == 1:
        return keys[0]
    if kid is None:
        return None
    for key in keys:
        if key.kid == kid:
            return key
    return None


class StaticJwks:
    def __init__(self, path: Path, issuer: str | None):
        self.issuer = issuer
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(
                f"oidc.server_public_jwks: cannot read {path}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(f"oidc.server_public_jwks: {path} is not valid JSON") from None
        try:
            self._keys = parse_jwks(data, str(path))
        except ValueError as exc:
            raise ConfigError(f"oidc.server_public_jwks: {exc}") from None

    def select(self, kid: str | None) -> AnyKey:
        key = _pick(self._keys, kid)
        if key is None:
            raise AuthError("invalid_token", "The access token is signed by an unknown key")
        return key


def tls_context(verify: bool) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def fetch_json(url: str, context: ssl.SSLContext | None) -> Any:
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"refusing to fetch {url!r}: not an http(s) URL")
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=FETCH_TIMEOUT, context=context) as answer:  # noqa: S310
        body = answer.read(MAX_DOCUMENT_BYTES + 1)
    if len(body) > MAX_DOCUMENT_BYTES:
        raise ValueError(f"{url} answered more than {MAX_DOCUMENT_BYTES} bytes")
    return json.loads(body)


class RemoteJwks:
    """Discovery + JWKS from the provider.

    Refreshed at once (under a cool-down) when a token names an unknown ``kid``,
    and in the background once the keys are ``jwks_max_age`` old, so a key the
    provider withdraws stops being trusted even if no new kid ever shows up.
    """

    def __init__(self, settings: OidcSettings, clock=time.monotonic, sleep=None):
        self._settings = settings
        # Built once: creating a TLS context costs tens of milliseconds.
        self._tls = (tls_context(settings.server_remote_config_verify_cert)
                     if settings.server_remote_config.startswith("https://") else None)
        self._clock = clock
        self._lock = threading.Lock()
        self.fetches = 0
        self.generation = 0
        self._keys: list[AnyKey] = []
        self._last_fetch = float("-inf")
        self._refreshing = False
        self.issuer, self.jwks_uri = self._discover(sleep or time.sleep)
        self._refresh()

    def _discover(self, sleep) -> tuple[str, str]:
        url = self._settings.server_remote_config
        delay = 1.0
        for attempt in range(self._settings.startup_retries + 1):
            try:
                document = fetch_json(url, self._tls)
                issuer, jwks_uri = document.get("issuer"), document.get("jwks_uri")
                if not isinstance(issuer, str) or not issuer or not isinstance(jwks_uri, str):
                    raise ValueError("the discovery document lacks issuer or jwks_uri")
                if self._settings.iss and self._settings.iss != issuer:
                    raise ConfigError(
                        f"oidc.iss: {self._settings.iss!r} differs from the provider's "
                        f"issuer {issuer!r}"
                    )
                return issuer, jwks_uri
            except ConfigError:
                raise
            except Exception as exc:  # noqa: BLE001 - network, TLS, JSON: all retried
                if attempt == self._settings.startup_retries:
                    raise ConfigError(
                        f"oidc.server_remote_config: cannot load {url}: {exc}"
                    ) from None
                log.warning("identity provider not reachable (%s); retrying in %.0f s", exc, delay)
                sleep(delay)
                delay = min(delay * 2, 30)
        raise AssertionError("unreachable")

    def _refresh(self) -> None:
        self._last_fetch = self._clock()
        self.fetches += 1
        try:
            self._keys = parse_jwks(
                fetch_json(self.jwks_uri, self._jwks_tls()),
                self.jwks_uri,
            )
            self.generation += 1
        except Exception as exc:  # noqa: BLE001 - keep the cached keys when the provider is away
            if not self._keys:
                raise ConfigError(
                    f"oidc.server_remote_config: cannot load the JWKS: {exc}") from None
            log.warning("JWKS refresh failed, keeping %d cached keys: %s", len(self._keys), exc)

    def _jwks_tls(self) -> ssl.SSLContext | None:
        if not self.jwks_uri.startswith("https://"):
            return None
        if self._tls is None:
            self._tls = tls_context(self._settings.server_remote_config_verify_cert)
        return self._tls

    def _refresh_when_old(self) -> None:
        if self._refreshing or self._clock() - self._last_fetch < self._settings.jwks_max_age:
            return
        with self._lock:
            if self._refreshing:
                return
            self._refreshing = True
        threading.Thread(target=self._background_refresh, name="jwks-refresh", daemon=True).start()

    def _background_refresh(self) -> None:
        try:
            with self._lock:
                self._refresh()
        except ConfigError as exc:
            log.warning("%s", exc)
        finally:
            self._refreshing = False

    def select(self, kid: str | None) -> AnyKey:
        self._refresh_when_old()
        key = _pick(self._keys, kid)
        if key is None or (len(self._keys) == 1 and kid and key.kid and key.kid != kid):
            with self._lock:
                key = _pick(self._keys, kid)
                stale = key is None or (len(self._keys) == 1 and kid and key.kid and key.kid != kid)
                cooled = self._clock() - self._last_fetch >= self._settings.jwks_refresh_cooldown
                if stale and cooled:
                    try:
                        self._refresh()
                    except ConfigError as exc:
                        log.warning("%s", exc)
                    key = _pick(self._keys, kid)
        if key is None:
            raise AuthError("invalid_token", "The access token is signed by an unknown key")
        return key


def key_source(settings: OidcSettings) -> KeySource:
    if settings.server_remote_config:
        return RemoteJwks(settings)
    return StaticJwks(settings.server_public_jwks, settings.iss)
