"""/.well-known/hutch-configuration and /jwks: unauthenticated, JSON or JWT (§5.3, §5.4)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, request

from hutch.api.common import hutch, signed
from hutch.jose import json_bytes

bp = Blueprint("wellknown", __name__)


def wants_jwt() -> bool:
    """True for ``Accept: application/jwt``, alone or named in a list (never for */*)."""
    for part in request.headers.get("Accept", "").split(","):
        media, _, params = part.partition(";")
        if media.strip().lower() != "application/jwt":
            continue
        quality = [p.split("=", 1)[1].strip() for p in params.split(";")
                   if p.strip().lower().startswith("q=")]
        try:
            if not quality or float(quality[0]) > 0:
                return True
        except ValueError:
            return True
    return False


def _answer(document: dict[str, Any]) -> Response:
    if wants_jwt():
        # Always the first key: the front end verifies with keys[0] of /jwks (§5.2).
        return signed(document, hutch().signing.first_kid)
    return Response(json_bytes(document), status=200, mimetype="application/json")


def configuration() -> dict[str, Any]:
    settings = hutch().settings
    base = settings.external_url + settings.api_prefix
    document = {
        "profile_endpoint": base + "/profile",
        "safe_endpoint": base + "/safe",
        "scope": settings.hutch_scope,
    }
    if settings.oidc.server_remote_config:
        document["oidc_server_remote_config"] = settings.oidc.server_remote_config
    document["jwks_uri"] = settings.external_url + "jwks"
    return document


@bp.get("/.well-known/hutch-configuration")
def hutch_configuration() -> Response:
    return _answer(configuration())


@bp.get("/jwks")
def jwks() -> Response:
    return _answer(hutch().signing.public_jwks)
