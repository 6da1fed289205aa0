"""The OpenAPI 3.1 document, generated from the routes and the marshmallow schemas.

Served without authentication at ``/openapi.json``. Signed answers are
described as ``application/jwt`` strings whose decoded payload has a schema
(``x-jws-payload``), since that is what clients verify and decode.
"""

from __future__ import annotations

import re
from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Flask, Response, current_app

from hutch import __version__
from hutch.api.paging import MAX_LIMIT
from hutch.jose import json_bytes
from hutch.limits import QUOTA_WRITES
from hutch.schemas import CoinIn, CoinOut, SafeIn, SafeKeyIn, SafeKeyOut, SafeOut, for_update

bp = Blueprint("openapi", __name__)

# endpoint -> (summary, request schema component, payload component, payload is a list)
OPERATIONS: dict[str, tuple[str, str | None, str | None, bool]] = {
    "profile.get_profile": ("Read the caller's profile", None, "Profile", False),
    "profile.put_profile": ("Create or replace the caller's profile", "ProfileInput", None,
                            False),
    "profile.delete_profile": ("Delete the caller's profile and all its safes", None, None,
                               False),
    "safes.list_safes": ("List the caller's safes", None, "Safe", True),
    "safes.create_safe": ("Create a safe", "SafeInput", None, False),
    "safes.get_safe": ("Read a safe", None, "Safe", False),
    "safes.update_safe": ("Replace a safe's mutable fields", "SafeUpdate", None, False),
    "safes.delete_safe": ("Delete a safe with its keys and coins", None, None, False),
    "safe_keys.list_items": ("List a safe's keys", None, "SafeKey", True),
    "safe_keys.create_item": ("Add a wrapped safe key", "SafeKeyInput", None, False),
    "safe_keys.get_item": ("Read a safe key", None, "SafeKey", False),
    "safe_keys.update_item": ("Replace a safe key", "SafeKeyUpdate", None, False),
    "safe_keys.delete_item": ("Delete a safe key", None, None, False),
    "coins.list_items": ("List a safe's coins", None, "Coin", True),
    "coins.create_item": ("Add a coin", "CoinInput", None, False),
    "coins.get_item": ("Read a coin", None, "Coin", False),
    "coins.update_item": ("Replace a coin's data", "CoinUpdate", None, False),
    "coins.delete_item": ("Delete a coin", None, None, False),
    "wellknown.hutch_configuration": ("Server configuration (JSON, or JWT when asked)", None,
                                      None, False),
    "wellknown.jwks": ("The server's public signing keys", None, None, False),
    "openapi.openapi_document": ("This document", None, None, False),
}
UNDOCUMENTED = {"webapp.static_file"}  # the optional static web app, not an API
NEVER_404 = {("put", "/profile"), ("delete", "/profile"), ("get", "/safe")}
_PARAM = re.compile(r"<(?:[a-z]+:)?([a-z_]+)>")

ERROR = {"type": "object", "properties": {"error": {"type": "string"},
                                          "message": {"type": "string"}}}
MESSAGES = {"type": "array", "items": {"type": "string"}}
# Lists in pages (hutch/api/paging.py); both absent: the whole list, as the original answers.
PAGE_PARAMETERS = [
    {"name": "limit", "in": "query", "required": False,
     "description": f"Answer at most this many entries, in list order, with `next` while more "
                    f"remain ({MAX_LIMIT} when only `after` is given)",
     "schema": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
    {"name": "after", "in": "query", "required": False,
     "description": "Continue after the page whose `next` this is (an opaque cursor, valid "
                    "only for the same list and caller)",
     "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{48}$"}},
]
NEXT = {"type": "string", "description": "Only in a page (`limit` or `after` given) after "
                                         "which entries remain: the `after` of the next page"}


def _signed(component: str, is_list: bool) -> dict[str, Any]:
    ref = {"$ref": f"#/components/schemas/{component}"}
    payload = {"type": "object", "properties": {"list": {"type": "array", "items": ref},
                                                "next": NEXT},
               "required": ["list"]} if is_list else ref
    return {"description": "A JWS signed with the profile's key; iat/exp in its header",
            "content": {"application/jwt": {
                "schema": {"type": "string", "contentMediaType": "application/jwt"},
                "x-jws-payload": payload}}}


def _operation(endpoint: str, method: str, path: str) -> dict[str, Any]:
    summary, request_schema, payload, is_list = OPERATIONS[endpoint]
    api = not endpoint.startswith(("wellknown.", "openapi."))
    responses: dict[str, Any] = {}
    if payload:
        responses["200"] = _signed(payload, is_list)
    elif method == "get":
        responses["200"] = {"description": "JSON", "content": {"application/json": {
            "schema": {"type": "object"}}, "application/jwt": {"schema": {"type": "string"}}}}
    else:
        responses["200"] = {"description": "Done; empty body without Content-Type"}
    operation: dict[str, Any] = {"summary": summary, "operationId": endpoint.replace(".", "_"),
                                 "responses": responses}
    if api:
        operation["security"] = [{"bearer": []}, {"dpop": []}]
        responses["401"] = {"description": "Missing or invalid access token",
                            "content": {"application/json": {"schema": ERROR}}}
        if path != "/profile":
            responses["403"] = {"description": "The caller has no profile yet",
                                "content": {"application/json": {"schema": ERROR}}}
        # No 404 where the route always finds what it acts on: the profile upsert and
        # delete (200 even with no profile), the list of safes, a safe's creation.
        if (method, path) not in NEVER_404 and (method != "post" or "{safe}" in path):
            responses["404"] = {"description": "Not found",
                                "content": {"application/json": {"schema": ERROR}}}
    if request_schema:
        operation["requestBody"] = {"required": True, "content": {"application/json": {
            "schema": {"$ref": f"#/components/schemas/{request_schema}"}}}}
        responses["400"] = {"description": "Invalid body: every problem, in field order",
                            "content": {"application/json": {"schema": MESSAGES}}}
        responses["413"] = {"description": "Body too large",
                            "content": {"application/json": {"schema": ERROR}}}
    params = _PARAM.findall(path)
    if params:
        operation["parameters"] = [{"name": n, "in": "path", "required": True,
                                    "schema": {"type": "string", "pattern": "^[A-Za-z0-9]+$"}}
                                   for n in params]
    if is_list:
        operation["parameters"] = operation.get("parameters", []) + PAGE_PARAMETERS
        responses["400"] = {"description": "Bad `limit` or `after`: every problem",
                            "content": {"application/json": {"schema": MESSAGES}}}
    if endpoint in QUOTA_WRITES:
        responses["507"] = {"description": "The write would pass the caller's storage quota "
                                           "(`quota_bytes`); nothing was written",
                            "content": {"application/json": {"schema": ERROR}}}
    return operation


def build_document(app: Flask) -> dict[str, Any]:
    """Every routed endpoint, described; an endpoint without a description is an error."""
    ext = app.extensions["hutch"]
    spec = APISpec(title="Hutch", version=__version__, openapi_version="3.1.0",
                   plugins=[MarshmallowPlugin()],
                   servers=[{"url": ext.settings.external_url.rstrip("/")}])
    from hutch.schemas import ProfileOut

    for name, schema in (("Profile", ProfileOut), ("Safe", SafeOut), ("SafeKey", SafeKeyOut),
                         ("Coin", CoinOut), ("ProfileInput", ext.schemas["profile"]),
                         ("SafeInput", SafeIn), ("SafeUpdate", for_update(SafeIn)),
                         ("SafeKeyInput", SafeKeyIn), ("SafeKeyUpdate", for_update(SafeKeyIn)),
                         ("CoinInput", CoinIn), ("CoinUpdate", for_update(CoinIn))):
        spec.components.schema(name, schema=schema)
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer",
                                               "bearerFormat": "JWT (RFC 9068)"})
    spec.components.security_scheme("dpop", {"type": "http", "scheme": "DPoP"})
    paths: dict[str, dict[str, Any]] = {}
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED or rule.endpoint == "static":
            continue
        path = re.sub(r"/(key|coin)/\{item\}", r"/\1/{\1}", _PARAM.sub(r"{\1}", rule.rule))
        short = path.removeprefix("/" + ext.settings.api_prefix)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(
                rule.endpoint, method.lower(), short)
    for path, operations in paths.items():
        spec.path(path=path, operations=operations)
    return spec.to_dict()


@bp.get("/openapi.json")
def openapi_document() -> Response:
    document = current_app.extensions.get("hutch.openapi")
    if document is None:
        document = current_app.extensions["hutch.openapi"] = json_bytes(
            build_document(current_app))
    return Response(document, status=200, mimetype="application/json")
