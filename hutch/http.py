"""URL handling (§2), CORS and default headers (§3), the authentication gate (§4), and
request ids for the logs."""

from __future__ import annotations

import itertools
import logging
import os
import re
import secrets
from contextvars import ContextVar
from urllib.parse import unquote_to_bytes

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from hutch.api.common import hutch, no_content
from hutch.errors import NOT_FOUND_BODY, AuthError, json_response

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers":
        "Origin, X-Requested-With, Content-Type, Accept, Bearer, Authorization, DPoP",
    "Access-Control-Max-Age": "1800",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": API_CSP,
}
REQUEST_ID_HEADER = "X-Request-Id"
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
# The id of the request this thread is answering; '-' outside a request.
request_id: ContextVar[str] = ContextVar("hutch_request_id", default="-")


class _RequestIdSource:
    """Ids unique across processes and restarts, without a system call each: a random
    16-hex prefix per process (a new one in every forked child) and an 8-hex counter."""

    def __init__(self):
        self.renew()

    def renew(self) -> None:
        self._prefix = secrets.token_hex(8)
        self._counter = itertools.count()

    def __call__(self) -> str:
        return f"{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}"


_new_request_id = _RequestIdSource()
os.register_at_fork(after_in_child=_new_request_id.renew)


def make_request_id(incoming: str) -> str:
    """The client's ``X-Request-Id`` when it is sane, else a new one."""
    return incoming if _SANE_REQUEST_ID.fullmatch(incoming) else _new_request_id()


class RequestIds:
    """WSGI middleware: one id per request, in every log record and in ``X-Request-Id``.

    A client's (or proxy's) ``X-Request-Id`` is kept when it is 1-64 characters of
    ``[A-Za-z0-9._-]`` (nothing that could forge a log line); otherwise one is made.
    It also adds any security header an answer lacks, should one skip ``default_headers``.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        rid = make_request_id(environ.get("HTTP_X_REQUEST_ID", ""))
        environ["hutch.request_id"] = rid

        def start(status, headers, exc_info=None):
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            present = {k.lower() for k, _ in headers}
            headers += [(k, v) for k, v in SECURITY_HEADERS.items() if k.lower() not in present
                        and not (k == "Content-Security-Policy" and environ.get("hutch.page"))]
            headers.append((REQUEST_ID_HEADER, rid))
            return start_response(status, headers, exc_info)

        token = request_id.set(rid)
        try:
            return self.app(environ, start)
        finally:
            request_id.reset(token)


def _with_request_id(factory):
    def make_record(*args, **kwargs):
        record = factory(*args, **kwargs)
        record.request_id = request_id.get()
        return record

    make_record.hutch_request_id = True
    return make_record


def log_request_ids() -> None:
    """Give every log record a ``request_id`` attribute, for any handler's format."""
    factory = logging.getLogRecordFactory()
    if not getattr(factory, "hutch_request_id", False):
        logging.setLogRecordFactory(_with_request_id(factory))


class SegmentRouter:
    """WSGI middleware: route on the path split on '/', empty segments dropped (§2.1).

    ``//api//profile/`` and ``/api/profile`` reach the same view, with no redirect.
    A server that hands over the raw request target (``RAW_URI``/``REQUEST_URI``:
    gunicorn, werkzeug's) has it split before decoding, so ``%2F`` stays inside its
    segment. granian, which ``hutch serve`` runs, gives only the decoded ``PATH_INFO``:
    there ``%2F`` is a separator like '/' (``/api%2Fprofile`` is the profile). Names
    are alphanumeric, so this changes only which 404 or 400 such a request gets.
    """

    def __init__(self, app):
        self.app = app

    def __call__(self, environ, start_response):
        raw = environ.get("RAW_URI") or environ.get("REQUEST_URI")
        if raw and not environ.get("SCRIPT_NAME"):
            path = raw.split("?", 1)[0].split("#", 1)[0]
            if "://" in path:  # absolute-form request target
                path = "/" + path.split("://", 1)[1].partition("/")[2]
            segments = [
                unquote_to_bytes(segment).replace(b"/", b"%2F").decode("latin-1")
                for segment in path.split("/")
                if segment
            ]
        else:
            path = environ.get("PATH_INFO", "")
            segments = [segment for segment in path.split("/") if segment]
        environ["hutch.raw_path"] = path
        environ["PATH_INFO"] = "/" + "/".join(segments)
        environ["REQUEST_METHOD"] = environ.get("REQUEST_METHOD", "GET").upper()
        return self.app(environ, start_response)


def is_api_path(path: str) -> bool:
    prefix = hutch().settings.prefix_segments
    return tuple(path.split("/")[1 : 1 + len(prefix)]) == prefix


def preflight() -> Response:
    response = Response(b"", status=200)
    del response.headers["Content-Type"]
    response.headers.update(PREFLIGHT_HEADERS)
    return response


def authenticate_api_requests():
    """Preflights first, without auth; then every request under the prefix is authenticated."""
    if request.method == "OPTIONS":
        return preflight()
    if is_api_path(request.path):
        try:
            g.access = hutch().authenticator.authenticate(request)
        except AuthError:
            g.auth_failed = True  # counted by the failed_auth limit (hutch/limits.py)
            raise
    return None


def is_resource_path(path: str) -> bool:
    """True for the shape of one of routes 3-20 (every one of them answers GET)."""
    try:
        endpoint, _ = current_app.url_map.bind("localhost").match(path, method="GET")
    except HTTPException:
        return False
    return is_api_path(path) and not endpoint.startswith("webapp.")


def unrouted_method(_exc: MethodNotAllowed) -> Response:
    """A method a path does not route (§2.2, §13.14).

    On a known resource path the original answers 200 and changes nothing, which
    its test suite relies on [T]; any other path gets the default 404.
    """
    if is_resource_path(request.path):
        return no_content()
    return json_response(NOT_FOUND_BODY, 404)


def answer_headers(origin: str | None) -> dict[str, str]:
    """CORS and caching headers of every answer (§3.1), also those made outside Flask."""
    headers = {}
    if origin:
        headers["Access-Control-Allow-Origin"] = origin
        if origin != "*":  # §13.12: credentials mean nothing with a wildcard origin
            headers["Access-Control-Allow-Credentials"] = "true"
    headers.update({"Cache-Control": "no-store", "Pragma": "no-cache",
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"})
    return headers


def default_headers(response: Response) -> Response:
    """Headers on every answer (§3.1), plus the security headers we add."""
    response.headers.update(answer_headers(hutch().settings.allow_origin))
    if request.blueprint != "webapp" or response.status_code >= 400:
        response.headers["Content-Security-Policy"] = API_CSP
    else:
        request.environ["hutch.page"] = True  # a web app file: its scripts must run
    return response


def register_http(app: Flask) -> None:
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.wsgi_app = RequestIds(SegmentRouter(app.wsgi_app))
    log_request_ids()
    app.before_request(authenticate_api_requests)
    app.after_request(default_headers)
    app.register_error_handler(MethodNotAllowed, unrouted_method)
