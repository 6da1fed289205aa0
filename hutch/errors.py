"""Every error response is built here, in one shape.

Domain code raises the exceptions below; the handlers registered by
``register_error_handlers`` turn them (and anything unexpected) into JSON
answers without tracebacks. Auth failures get ``WWW-Authenticate``
(RFC 6750 §3, RFC 9449 §7.1).
"""

from __future__ import annotations

import logging
import traceback

from flask import Flask, Response, current_app, json
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from werkzeug.exceptions import HTTPException

from hutch.jose import DPOP_ALGS
from hutch.store.db import DatabaseFileChanged

log = logging.getLogger(__name__)

NOT_FOUND_BODY = b'{"error":"resource not found","message":"no resource available at this address"}'
RETRY_AFTER_SECONDS = 5
RATE_LIMIT_RETRY_SECONDS = 60


class HutchError(Exception):
    """Base of the errors that become a JSON answer."""

    status = 500
    error = "server_error"
    message = "internal server error"

    def __init__(self, message: str | None = None):
        super().__init__(message or self.message)
        if message:
            self.message = message


class NotFound(HutchError):
    status = 404
    error = "resource not found"
    message = "no resource available at this address"


class ProfileNotSet(HutchError):
    status = 403
    error = "profile not set"
    message = "create your profile first (PUT the profile endpoint)"


class ValidationFailed(HutchError):
    """400 with the JSON array of messages (HUTCH-API.md §6)."""

    status = 400

    def __init__(self, messages: list[str]):
        super().__init__("; ".join(messages))
        self.messages = messages


class BodyRefused(ValidationFailed):
    """A JSON body whose fault can be named: a repeated member, a huge number, deep nesting.

    Still the §6 shape (400, a JSON array), with one message that says what is wrong
    instead of the resource's "must be a JSON object".
    """

    def __init__(self, message: str):
        super().__init__([message])


class ServiceUnavailable(HutchError):
    status = 503
    error = "service unavailable"
    message = "a backing service is unavailable, try again shortly"


class QuotaExceeded(HutchError):
    """507 Insufficient Storage (RFC 4918 §11.5): the write would pass ``quota_bytes``."""

    status = 507
    error = "insufficient storage"

    def __init__(self, quota: int, used: int, needed: int):
        super().__init__(f"storage quota exceeded: this write needs {needed} bytes and "
                         f"{used} of your {quota} bytes are in use; delete something first")


class AuthError(HutchError):
    """401 (403 for insufficient scope) with a challenge for ``scheme``."""

    def __init__(
        self,
        error: str | None,
        description: str,
        *,
        scheme: str = "Bearer",
        status: int = 401,
        extra: dict[str, str] | None = None,
    ):
        super().__init__(description)
        self.error = error or "unauthorized"
        self.code = error
        self.scheme = scheme
        self.status = status
        self.extra = extra or {}


def json_response(body: bytes, status: int) -> Response:
    return Response(body, status=status, mimetype="application/json")


def error_body(error: str, message: str) -> bytes:
    return json.dumps({"error": error, "message": message}, separators=(",", ":")).encode()


def challenge(exc: AuthError, realm: str | None, dpop_algs: str) -> list[str]:
    """WWW-Authenticate values (RFC 6750 §3, RFC 9449 §7.1).

    Without a token the answer advertises both schemes and names no error
    (RFC 6750 §3.1); otherwise one challenge of the token's scheme.
    """
    realm_params = [f'realm="{realm}"'] if realm else []
    algs = f'algs="{dpop_algs}"'
    if exc.code is None:
        bearer = "Bearer" + (" " + realm_params[0] if realm_params else "")
        return [bearer, "DPoP " + ", ".join([*realm_params, algs])]
    params = [*realm_params, f'error="{exc.code}"', f'error_description="{exc.message}"']
    params += [f'{name}="{value}"' for name, value in exc.extra.items()]
    if exc.scheme == "DPoP":
        params.append(algs)
    return [f"{exc.scheme} " + ", ".join(params)]


def _auth_response(exc: AuthError) -> Response:
    response = json_response(error_body(exc.error, exc.message), exc.status)
    settings = current_app.extensions["hutch"].settings
    for value in challenge(exc, settings.oidc.realm, " ".join(DPOP_ALGS)):
        response.headers.add("WWW-Authenticate", value)
    return response


def handle_hutch_error(exc: HutchError) -> Response:
    if isinstance(exc, AuthError):
        return _auth_response(exc)
    if isinstance(exc, ValidationFailed):
        return json_response(json.dumps(exc.messages, separators=(",", ":")).encode(), 400)
    if isinstance(exc, NotFound):
        return json_response(NOT_FOUND_BODY, 404)
    response = json_response(error_body(exc.error, exc.message), exc.status)
    if exc.status == 503:
        response.headers["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def too_many_requests(retry_after: int) -> Response:
    """429 from the abuse limits (hutch/limits.py), with the seconds until the window resets."""
    response = json_response(error_body(
        "too many requests", f"rate limit exceeded; retry in {retry_after} seconds"), 429)
    response.headers["Retry-After"] = str(retry_after)
    return response


def handle_http_exception(exc: HTTPException) -> Response:
    if exc.code == 404:
        return json_response(NOT_FOUND_BODY, 404)
    if exc.code == 429:
        # flask-limiter's RateLimitExceeded carries the answer built by too_many_requests.
        if exc.response is not None:
            return exc.response
        return too_many_requests(RATE_LIMIT_RETRY_SECONDS)
    if exc.code == 413:
        limit = current_app.config.get("MAX_CONTENT_LENGTH")
        return json_response(
            error_body("payload too large", f"request bodies are limited to {limit} bytes"), 413
        )
    name = (exc.name or "error").lower()
    response = json_response(error_body(name, exc.description or name), exc.code or 500)
    if exc.code == 405:
        response.headers["Allow"] = ", ".join(exc.valid_methods or [])
    return response


# Driver error codes an operator can act on; any other is named by its code.
_SQLITE_CAUSES = {
    "SQLITE_READONLY": "database is read-only",
    "SQLITE_CANTOPEN": "cannot open the database file (missing, or its folder unreadable)",
    "SQLITE_BUSY": "database is locked by another writer",
    "SQLITE_FULL": "disk is full",
    "SQLITE_IOERR": "disk I/O error",
    "SQLITE_CORRUPT": "database file is damaged",
    "SQLITE_NOTADB": "database file is not an SQLite database",
}
_MYSQL_CAUSES = {
    1045: "access denied to the database user",
    1153: "a statement larger than the server's max_allowed_packet",
    1205: "lock wait timeout",
    2002: "cannot connect to the database server",
    2003: "cannot connect to the database server",
    2006: "lost the connection to the database server",
    2013: "lost the connection to the database server",
}
_POSTGRES_CAUSES = {"57014": "statement timeout", "25006": "database is read-only",
                    "53100": "disk is full", "57P01": "the database server is shutting down"}


def database_cause(exc: BaseException) -> str:
    """Why the database failed, in words, from error codes only: drivers' messages
    can quote the statement's values."""
    if isinstance(exc, DatabaseFileChanged):
        return str(exc)
    if isinstance(exc, PoolTimeoutError):
        return "every pooled connection is busy (pool timeout)"
    orig = getattr(exc, "orig", None)
    name = getattr(orig, "sqlite_errorname", None)
    if name:
        base = next((key for key in _SQLITE_CAUSES if name.startswith(key)), None)
        return f"{_SQLITE_CAUSES[base]} ({name})" if base else name
    code = getattr(orig, "sqlstate", None)
    if code:
        return f"{_POSTGRES_CAUSES.get(code, 'error')} (SQLSTATE {code})"
    args = getattr(orig, "args", ())
    if args and isinstance(args[0], int) and args[0]:
        return f"{_MYSQL_CAUSES.get(args[0], 'error')} (MySQL error {args[0]})"
    if getattr(exc, "connection_invalidated", False) or type(orig).__name__ == "OperationalError":
        return f"cannot reach the database ({type(orig).__name__})"
    return type(orig if orig is not None else exc).__name__


def handle_database_error(exc: DBAPIError | PoolTimeoutError | DatabaseFileChanged) -> Response:
    """The database is down or saturated: 503 with Retry-After, never a traceback."""
    log.error("database unavailable: %s", database_cause(exc))
    return handle_hutch_error(ServiceUnavailable())


def handle_unexpected(exc: Exception) -> Response:
    if isinstance(exc, HTTPException):
        return handle_http_exception(exc)
    if isinstance(exc, DBAPIError) and (
        isinstance(exc, OperationalError) or exc.connection_invalidated
    ):
        return handle_database_error(exc)
    log.error("unexpected error while answering a request\n%s", where_from(exc))
    return json_response(error_body("server_error", "internal server error"), 500)


def where_from(exc: BaseException) -> str:
    """Each exception's type and frames, causes included, but never its message.

    Messages can quote request data: SQLAlchemy's carry the bound parameters (coin
    data), a KeyError its key, a decoder the bytes it choked on.
    """
    lines: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        kind = type(current)
        lines.append(("" if not lines else "caused by ") + f"{kind.__module__}.{kind.__qualname__}"
                     " (message withheld)")
        lines += [f'  File "{frame.filename}", line {frame.lineno}, in {frame.name}'
                  for frame in traceback.extract_tb(current.__traceback__)]
        current = current.__cause__ or (
            None if current.__suppress_context__ else current.__context__)
    return "\n".join(lines)


def register_error_handlers(app: Flask) -> None:
    app.register_error_handler(HutchError, handle_hutch_error)
    app.register_error_handler(HTTPException, handle_http_exception)
    app.register_error_handler(OperationalError, handle_database_error)
    app.register_error_handler(PoolTimeoutError, handle_database_error)
    app.register_error_handler(DatabaseFileChanged, handle_database_error)
    app.register_error_handler(Exception, handle_unexpected)
