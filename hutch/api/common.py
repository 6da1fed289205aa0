"""What every view shares: the request body, the caller, and the three answer shapes."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from flask import Response, current_app, g, request

from hutch.auth import Authenticator
from hutch.errors import BodyRefused, ValidationFailed
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


class _Repeated(Exception):
    """An object names one member twice (RFC 8259 §4: names SHOULD be unique)."""


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """json's object_pairs_hook: a dict, unless a member name repeats.

    Silently keeping the last of two "data" members would store what the client did
    not mean. Measured: +0.3 µs for a one-object coin body (3.2 -> 3.5 µs), about
    +0.35 µs per object in bodies made of many (10,000 objects: 2.0 -> 5.5 ms).
    """
    document = dict(pairs)
    if len(document) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise _Repeated(name)
            seen.add(name)
    return document


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
        document = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_object)
        if "\\u" in text:  # NULs and lone surrogates can only come from escapes
            _clean(document)
    except (UnicodeDecodeError, json.JSONDecodeError, _Invalid):
        return None
    except _Repeated as repeated:
        name = json.dumps(str(repeated)[:64])
        raise BodyRefused(f"member {name} appears more than once in the JSON body") from None
    except RecursionError:
        raise BodyRefused("the JSON body is nested too deeply") from None
    except ValueError as exc:
        # Not a JSONDecodeError: int() of a number longer than Python's int-string
        # limit (CVE-2020-10735), valid JSON that would otherwise read as "not JSON".
        if "integer string conversion" not in str(exc):
            return None
        raise BodyRefused(f"a number in the JSON body has more than "
                          f"{sys.get_int_max_str_digits()} digits") from None
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
    try:
        body = json_body()
    except BodyRefused:
        precheck()  # §7.5: a missing safe or item still answers 404 first
        raise
    data, problems = hutch().schemas[schema_name].check(body)
    if problems:
        precheck()
        if duplicate is not None and "name" in data:
            message = duplicate(data["name"])
            if message:
                problems.insert(0, message)
        raise ValidationFailed(problems)
    return data
