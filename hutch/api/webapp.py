"""The optional static web app (``app_files_path``, HUTCH-API.md §11) and unrouted GETs."""

from __future__ import annotations

import mimetypes

from flask import Blueprint, Response, send_from_directory
from werkzeug.exceptions import NotFound as WerkzeugNotFound

from hutch.api.common import hutch
from hutch.errors import NotFound

bp = Blueprint("webapp", __name__)

DEFAULT_TYPES = {".json": "application/json", ".html": "text/html", ".js": "text/javascript",
                 ".css": "text/css", ".svg": "image/svg+xml", ".woff2": "font/woff2"}


def _empty_404() -> Response:
    response = Response(b"", status=404)
    del response.headers["Content-Type"]
    return response


@bp.get("/", defaults={"path": ""})
@bp.get("/<path:path>")
def static_file(path: str) -> Response:
    settings = hutch().settings
    if path.split("/")[: len(settings.prefix_segments)] == list(settings.prefix_segments):
        raise NotFound()  # an API path no resource matches (§2.2)
    if settings.app_files_path is None:
        return _empty_404()
    path = path or "index.html"
    suffix = "." + path.rsplit(".", 1)[-1].lower() if "." in path.rsplit("/", 1)[-1] else ""
    mimetype = (settings.app_files_mime_types.get(suffix) or DEFAULT_TYPES.get(suffix)
                or mimetypes.guess_type(path)[0] or "application/octet-stream")
    try:
        # send_from_directory refuses paths that leave the folder (werkzeug.safe_join).
        return send_from_directory(settings.app_files_path, path, mimetype=mimetype,
                                   max_age=0, etag=True)
    except WerkzeugNotFound:
        return _empty_404()
