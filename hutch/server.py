"""``hutch serve``: gunicorn embedded, draining gracefully on SIGTERM and SIGINT."""

from __future__ import annotations

import logging
import re

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

from hutch.errors import where_from

GRACEFUL_TIMEOUT = 30
# Every line says which request it belongs to (hutch/http.py RequestIds).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
# The path only: a query string may carry what a client should not have sent.
ACCESS_LOG_FORMAT = '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms rid=%({x-request-id}o)s'
_QUOTED = re.compile(r"""(['"]).*""", re.DOTALL)
_QUERY = re.compile(r"\?\S*")


class WithholdRequestText(logging.Filter):
    """gunicorn's own log quotes what it could not parse, and the URI of a request that
    failed: a malformed ``Authorization`` line or a token in a query string would be
    written out. Keep the kind of error; drop the quote, the query and the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if message.startswith("Invalid request from ip="):
            message = _QUOTED.sub("[withheld]", message)
        elif message.startswith("Error handling request"):
            message = _QUERY.sub("", message)
            if record.exc_info and record.exc_info[1] is not None:
                message += "\n" + where_from(record.exc_info[1])
                record.exc_info = None
                record.exc_text = None
        else:
            return True
        record.msg, record.args = message, ()
        return True


def configure_logging() -> None:
    """Request ids on the root handlers; gunicorn's quotes of request text withheld."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))
    error_log = logging.getLogger("gunicorn.error")
    if not any(isinstance(f, WithholdRequestText) for f in error_log.filters):
        error_log.addFilter(WithholdRequestText())


class DrainingArbiter(Arbiter):
    """SIGINT drains like SIGTERM (gunicorn's default SIGINT stops at once)."""

    def handle_int(self):
        self.handle_term()


class HutchServer(BaseApplication):
    def __init__(self, app: Flask, options: dict):
        self.application = app
        self.options = options
        super().__init__()

    def load_config(self):
        for key, value in self.options.items():
            if key in self.cfg.settings:  # settings newer than the installed gunicorn are skipped
                self.cfg.set(key, value)

    def load(self):
        return self.application

    def run(self):
        DrainingArbiter(self).run()


def _post_fork(_server, worker) -> None:
    # The app was built in the master: each worker opens its own connections.
    worker.app.application.extensions["hutch"].db.engine.dispose(close=False)


def serve(app: Flask, host: str, port: int, workers: int) -> int:
    bind = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    configure_logging()
    HutchServer(app, {
        "bind": bind,
        "workers": workers,
        "worker_class": "gthread",
        "threads": 4,
        "graceful_timeout": GRACEFUL_TIMEOUT,
        "timeout": 60,
        "keepalive": 5,
        "preload_app": True,
        "post_fork": _post_fork,
        "accesslog": "-",
        "access_log_format": ACCESS_LOG_FORMAT,
        "errorlog": "-",
        "max_requests": 200000,
        "max_requests_jitter": 20000,
        # Oversized lines and headers reach the app, which answers them with JSON (a 100 KB
        # token gets 401, a 20 KB path 404) instead of gunicorn's HTML error page.
        "limit_request_line": 0,  # gunicorn caps "unlimited" at 1 MiB
        "limit_request_field_size": 256 * 1024,
        # One control socket per user by default: two instances would take it from each other.
        "control_socket_disable": True,
    }).run()
    return 0
