"""``hutch serve``: gunicorn embedded, draining gracefully on SIGTERM and SIGINT."""

from __future__ import annotations

from flask import Flask
from gunicorn.app.base import BaseApplication
from gunicorn.arbiter import Arbiter

GRACEFUL_TIMEOUT = 30


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
        # The path only: a query string may carry what a client should not have sent.
        "access_log_format": '%(h)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms',
        "errorlog": "-",
        "max_requests": 10000,
        "max_requests_jitter": 1000,
        "limit_request_line": 8190,
        "limit_request_field_size": 16384,
        # One control socket per user by default: two instances would take it from each other.
        "control_socket_disable": True,
    }).run()
    return 0
