"""Authentication of API requests: extract the token (§4.1), validate it, check DPoP (§4.4)."""

from __future__ import annotations

import re
import time

from flask import Request

from hutch.auth.dpop import DEFAULT_MAX_AGE, Replays, verify_proof
from hutch.auth.tokens import AccessToken, TokenValidator
from hutch.errors import AuthError
from hutch.settings import Settings

# RFC 6750 §2.1 b64token; a comma means the header was sent more than once.
_TOKEN = re.compile(r"^[A-Za-z0-9\-._~+/]+=*$")
_SCHEMES = {"bearer": "Bearer", "dpop": "DPoP"}


class Authenticator:
    def __init__(self, settings: Settings, validator: TokenValidator, replays: Replays,
                 clock=time.time):
        self._settings = settings
        self._validator = validator
        self._replays = replays
        self._clock = clock
        oidc = settings.oidc
        self._max_age = oidc.dpop_max_iat if oidc.dpop_max_iat > 0 else DEFAULT_MAX_AGE

    def authenticate(self, request: Request) -> AccessToken:
        # WSGI servers fold a repeated header into one comma-joined value: read it
        # straight from the environ (request.headers.getlist walks the whole environ).
        environ = request.environ
        header = environ.get("HTTP_AUTHORIZATION", "")
        if "," in header:
            raise AuthError("invalid_request", "Send exactly one Authorization header")
        # RFC 9110 §11.1: the scheme is case-insensitive ("bearer", "DPOP"), and one or
        # more spaces separate it from the token68.
        name, _, token = header.partition(" ")
        scheme = _SCHEMES.get(name.lower())
        if scheme is None:
            raise AuthError(None, "The access token is missing")
        token = token.lstrip(" ")
        if not token:
            raise AuthError(None, "The access token is missing", scheme=scheme)
        if not _TOKEN.match(token):
            raise AuthError("invalid_token", "The access token is malformed", scheme=scheme)
        access = self._validator.validate(token)
        proof = environ.get("HTTP_DPOP")
        if scheme == "Bearer":
            if access.jkt is not None:
                # RFC 9449 §7.2: a bound token used as a bearer token is a downgrade.
                raise AuthError("invalid_token", "This access token is DPoP-bound", scheme="DPoP")
            if proof is not None:
                raise AuthError("invalid_request", "A DPoP proof needs the DPoP scheme")
            return access
        if access.jkt is None:
            raise AuthError("invalid_token", "This access token is not DPoP-bound")
        if proof is None or "," in proof:
            raise AuthError("invalid_dpop_proof", "Send exactly one DPoP proof", scheme="DPoP")
        verify_proof(
            proof,
            method=request.method,
            htu=self.htu(request),
            access_token=token,
            jkt=access.jkt,
            max_age=self._max_age,
            leeway=min(self._settings.oidc.leeway, 60),
            now=int(self._clock()),
            replays=self._replays,
        )
        return access

    def htu(self, request: Request) -> str:
        """external_url + the raw request path without its leading '/' (§4.4), no query."""
        raw = request.environ.get("hutch.raw_path") or request.path
        return self._settings.external_url + raw.lstrip("/")
