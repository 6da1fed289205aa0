"""URL handling (§2), CORS and default headers (§3), and the authentication gate (§4)."""

from __future__ import annotations

from urllib.parse import unquote_to_bytes

from flask import Flask, Response, current_app, g, request
from werkzeug.exceptions import HTTPException, MethodNotAllowed

from hutch.api.common import hutch, no_content
from hutch.errors import NOT_FOUND_BODY, json_response

PREFLIGHT_HEADERS = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers":
        "Origin, X-Requested-With, Content-Type, Accept, Bearer, Authorization, DPoP",
    "Access-Control-Max-Age": "1800",
}
API_CSP = "default-src 'none'; frame-ancestors 'none'"


class SegmentRouter:
    """WSGI middleware: route on the raw path split on '/', empty segments dropped (§2.1).

    ``//api//profile/`` and ``/api/profile`` reach the same view, with no redirect.
    The raw path is split before decoding, so ``%2F`` stays inside its segment.
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
        g.access = hutch().authenticator.authenticate(request)
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


def default_headers(response: Response) -> Response:
    """Headers on every answer (§3.1), plus the security headers we add."""
    settings = hutch().settings
    origin = settings.allow_origin
    if origin:
        response.headers["Access-Control-Allow-Origin"] = origin
        if origin != "*":  # §13.12: credentials mean nothing with a wildcard origin
            response.headers["Access-Control-Allow-Credentials"] = "true"
    response.headers["Cache-Control"] = "no-store"
    response.headers["Pragma"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    if request.blueprint != "webapp" or response.status_code >= 400:
        response.headers["Content-Security-Policy"] = API_CSP
    return response


def register_http(app: Flask) -> None:
    app.url_map.strict_slashes = False
    app.url_map.merge_slashes = False
    app.wsgi_app = SegmentRouter(app.wsgi_app)
    app.before_request(authenticate_api_requests)
    app.after_request(default_headers)
    app.register_error_handler(MethodNotAllowed, unrouted_method)
