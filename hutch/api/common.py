"""What every view shares: the request body, the caller, and the three answer shapes."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, request

from hutch.auth import Authenticator
from hutch.errors import ValidationFailed
from hutch.settings import Settings
from hutch.signing import SigningKeys
from hutch.store.db import Database
from hutch.store.items import Items


@dataclass
class Hutch:
    """Everything a request needs, built once by the app factory."""

    settings: Settings
    db: Database
    signing: SigningKeys
    authenticator: Authenticator
    safe_keys: Items
    coins: Items
    schemas: dict[str, Any]


def hutch() -> Hutch:
    return current_app.extensions["hutch"]


def current_user() -> str:
    """The caller: the validated access token's ``sub`` (§4.2)."""
    return g.access.sub


def now() -> int:
    return int(time.time())


class _Invalid(Exception):
    """A JSON document we refuse: NaN/Infinity, a NUL character, a lone surrogate."""


def _reject_constant(name: str) -> None:
    raise _Invalid(name)


def _clean(value: Any) -> None:
    """Refuse NUL characters and lone surrogates anywhere in the document (§6)."""
    if isinstance(value, str):
        if "\x00" in value:
            raise _Invalid("NUL")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            raise _Invalid("surrogate") from None
    elif isinstance(value, dict):
        for key, item in value.items():
            _clean(key)
            _clean(item)
    elif isinstance(value, list):
        for item in value:
            _clean(item)


def json_body() -> Any:
    """The request's JSON document, or None when there is no usable one.

    None means "no body" for the validators, which then answer 400 with the
    resource's "must be a JSON object" message, as the original does.
    """
    media_type = request.mimetype  # lower-cased, parameters stripped
    if media_type != "application/json":
        return None
    raw = request.get_data(cache=False)
    try:
        text = raw.decode("utf-8")
        document = json.loads(text, parse_constant=_reject_constant)
        if "\\u" in text:  # NULs and lone surrogates can only come from escapes
            _clean(document)
    except (UnicodeDecodeError, ValueError, RecursionError, _Invalid):
        return None
    return document


def signed(payload: Any, kid: str | None) -> Response:
    """The one way an API GET answers: a JWS with ``application/jwt`` (§5.1)."""
    body = hutch().signing.sign(payload, kid)
    if isinstance(body, bytearray):  # a large answer: sent in parts, never copied whole
        response = Response(_in_parts(body), status=200)
        response.headers["Content-Length"] = str(len(body))
    else:
        response = Response(body, status=200)
    response.headers["Content-Type"] = "application/jwt"
    return response


def _in_parts(body: bytearray, size: int = 1024 * 1024) -> Iterator[bytes]:
    with memoryview(body) as view:
        for start in range(0, len(view), size):
            yield bytes(view[start:start + size])


def no_content() -> Response:
    """Write answers: 200, empty body, no Content-Type (§1; jQuery needs it so)."""
    response = Response(b"", status=200)
    del response.headers["Content-Type"]
    return response


def validated(schema_name: str, precheck, duplicate=None) -> dict[str, Any]:
    """Validate the body; on failure, let ``precheck`` raise 403/404 first (§7.5).

    ``duplicate(name)`` returns the duplicate message when a valid name is taken,
    so every problem is reported at once, in field order (§6).
    """
    data, problems = hutch().schemas[schema_name].check(json_body())
    if problems:
        precheck()
        if duplicate is not None and "name" in data:
            message = duplicate(data["name"])
            if message:
                problems.insert(0, message)
        raise ValidationFailed(problems)
    return data
