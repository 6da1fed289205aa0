"""``hutch serve``: granian's HTTP in Rust, the ASGI bridge (hutch/asgi.py) on each
forked worker's event loop and the Flask app in its thread pool; drains on SIGTERM/SIGINT."""

from __future__ import annotations

import ctypes
import errno
import gc
import logging
import multiprocessing.util
import os
import socket
import sys
import threading
import time
from contextlib import suppress
from typing import Any

from flask import Flask

# granian's allocator (jemalloc) keeps freed pages for ~10 s by default: a worker that
# answered a 16 MiB coin would hold tens of MiB it no longer uses. Read when the
# library first allocates, so set before it is imported; an operator's setting wins.
os.environ.setdefault("_RJEM_MALLOC_CONF", "dirty_decay_ms:0,muzzy_decay_ms:0")

from granian import Granian  # noqa: E402
from granian.constants import HTTPModes, Interfaces, Loops  # noqa: E402
from granian.http import HTTP1Settings  # noqa: E402
from granian.log import LogLevels  # noqa: E402

from hutch.asgi import Bridge, Limits, Scope  # noqa: E402

GRACEFUL_TIMEOUT = 30
# Every line says which request it belongs to (hutch/http.py RequestIds).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s]: %(message)s"
#: Python threads per worker that run the app. It is CPU-bound on SQLite (more
#: threads only queue on the GIL) and waits on the network for MariaDB and
#: PostgreSQL; four cover both (bench/RESULTS.md). Clients never hold them: bodies
#: are read and answers written by the event loop (hutch/asgi.py).
THREADS_PER_WORKER = 4
#: Requests a worker's event loop holds at once; more wait, cheaply, in the Rust side.
#: A slow client costs a coroutine and its buffers here, not a thread, so this is
#: sized for many (and for issue 14's open event streams); the pool bounds the work.
BACKPRESSURE_PER_WORKER = 2048
#: Request line plus headers: a 100 KB token still reaches the app (JSON 401), more
#: is 431 with a JSON body, from the bridge (hutch/intake.py). granian's read buffer
#: checks its size only between reads, so a head a little over it may pass or not
#: depending on how the bytes arrive: it is set 4× larger, and answers a bare 431
#: itself only beyond that.
MAX_HEAD_BYTES = 512 * 1024
HEAD_BUFFER_BYTES = 4 * MAX_HEAD_BYTES


def configure_logging() -> None:
    """Request ids on the root handlers (granian's own loggers propagate to them)."""
    for handler in logging.getLogger().handlers:
        handler.setFormatter(logging.Formatter(LOG_FORMAT))


# granian configures logging again in every worker: route its loggers to the root
# handlers configured above instead of its own stdout handlers.
_GRANIAN_LOGGING: dict[str, Any] = {
    "loggers": {
        "_granian": {"handlers": [], "propagate": True, "level": "INFO"},
    },
}


#: Access lines reach stdout in batches, at most this late.
ACCESS_FLUSH_SECONDS = 0.5


class AccessLines:
    """The access log: lines written to stdout in batches by a background thread.

    One write per request costs far more than the line: the request thread gives
    up the GIL for the system call and queues to get it back. Lines are written at
    most ``ACCESS_FLUSH_SECONDS`` late, and at the worker's exit. (Not a logging
    handler: a LogRecord and a Formatter per request cost as much as the rest.)
    """

    def __init__(self, stream):
        self._stream = stream
        self._pending: list[str] = []
        self._pending_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._second = -1
        self._stamp = ""

    def start(self) -> None:
        """Start the flusher (threads do not survive fork: call in each worker)."""
        threading.Thread(target=self._flush_periodically, daemon=True,
                         name="hutch-access-log").start()
        # multiprocessing runs these at a worker's exit (atexit handlers it skips).
        multiprocessing.util.Finalize(self, self.flush, exitpriority=10)

    def add(self, text: str) -> None:
        now = time.time()
        second = int(now)
        if second != self._second:
            self._stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(second))
            self._second = second
        line = f"{self._stamp},{int(now * 1000) % 1000:03d} {text}\n"
        with self._pending_lock:
            self._pending.append(line)

    def flush(self) -> None:
        with self._write_lock:
            with self._pending_lock:
                pending, self._pending = self._pending, []
            if pending:
                with suppress(OSError, ValueError):  # stdout gone: never fail a request
                    self._stream.write("".join(pending))
                    self._stream.flush()

    def _flush_periodically(self) -> None:
        while True:
            time.sleep(ACCESS_FLUSH_SECONDS)
            self.flush()


def _printable(text: str) -> str:
    """A decoded path can hold CR/LF (%0A): escape it so it cannot forge a log line."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


class AccessLog:
    """WSGI middleware: one line per answer, ``addr "METHOD path PROTO" status bytes
    ms rid=...``. The path goes without its query string, which may carry secrets."""

    def __init__(self, app, lines: AccessLines):
        self.app = app
        self.lines = lines

    def __call__(self, environ, start_response):
        started = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "-")
        path = environ.get("PATH_INFO", "")
        answer: list = ["-", "-", "-"]

        def start(status, headers, exc_info=None):
            answer[0] = status.split(" ", 1)[0]
            for name, value in headers:
                lowered = name.lower()
                if lowered == "content-length":
                    answer[1] = value
                elif lowered == "x-request-id":
                    answer[2] = value
            return start_response(status, headers, exc_info)

        try:
            return self.app(environ, start)
        finally:
            elapsed = int((time.perf_counter() - started) * 1000)
            self.lines.add(f'{environ.get("REMOTE_ADDR", "-")} "{_printable(method)} '
                           f'{_printable(path)} {environ.get("SERVER_PROTOCOL", "-")}" '
                           f'{answer[0]} {answer[1]} {elapsed}ms rid={answer[2]}')

    def refused(self, scope: Scope, status: int, length: int, rid: str,
                seconds: float) -> None:
        """The line of a request the bridge answered itself (408, 431, 400 on Host)."""
        version = scope["http_version"]
        protocol = "HTTP/1.0" if version in ("1", "1.0") else f"HTTP/{version}"
        self.lines.add(f'{(scope.get("client") or ("-",))[0]} "{_printable(scope["method"])} '
                       f'{_printable(scope["path"][:2048])} {protocol}" {status} {length} '
                       f'{int(seconds * 1000)}ms rid={rid}')


def _return_large_buffers_to_the_system() -> None:
    """Give buffers of 256 KiB and more their own mappings, unmapped when freed.

    glibc raises its mmap threshold after a large buffer is freed, so the next
    16 MiB coin lands on the heap and the worker keeps that memory. A fixed
    threshold keeps a worker's RSS close to what it really holds (glibc only).
    """
    with suppress(OSError, AttributeError):  # not glibc: leave the allocator alone
        libc = ctypes.CDLL(None)
        libc.mallopt(ctypes.c_int(_M_MMAP_THRESHOLD), ctypes.c_int(256 * 1024))


_M_MMAP_THRESHOLD = -3  # glibc's malloc.h


def _loader(app: Flask):
    settings = app.extensions["hutch"].settings
    lines = AccessLines(sys.stdout) if settings.access_log else None
    logged = AccessLog(app, lines) if lines is not None else None
    bridge = Bridge(
        logged or app,
        Limits(max_head=MAX_HEAD_BYTES, max_body=settings.max_body_bytes,
               min_rate=settings.body_min_rate, grace=settings.body_grace),
        threads=THREADS_PER_WORKER,
        allow_origin=settings.allow_origin,
        access=logged.refused if logged is not None else None,
    )

    def load(_target: str):
        # The app was built in the master and forked: each worker opens its own connections.
        app.extensions["hutch"].db.engine.dispose(close=False)
        bridge.start()
        if lines is not None:
            lines.start()
        return bridge

    return load


def ensure_port_free(host: str, port: int) -> None:
    """Refuse a port another server listens on (issue 10 item 4).

    granian binds with SO_REUSEPORT, so a second server on a taken port would start
    and the kernel would split connections between the two. A plain socket (with
    SO_REUSEADDR only, so a restart's TIME_WAIT connections do not count) cannot bind
    a port that any socket listens on: OSError(EADDRINUSE) naming the port.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise OSError(exc.errno, f"port {port} on {host} is in use (another "
                              "server listens there); choose another with --port") from None
            raise


def serve(app: Flask, host: str, port: int, workers: int) -> int:
    """Serve until SIGTERM/SIGINT; in-flight requests finish (up to GRACEFUL_TIMEOUT)."""
    configure_logging()
    _return_large_buffers_to_the_system()  # before the workers are forked
    # What the master built (app, settings, keys) lives as long as the workers: keep it
    # out of the garbage collector's scans, and its pages shared after fork.
    gc.collect()
    gc.freeze()
    server = Granian(
        "hutch",  # a label only: the loader hands over the app built here
        address=host,
        port=port,
        interface=Interfaces.ASGINL,
        loop=Loops.uvloop,
        http=HTTPModes.http1,
        workers=workers,
        blocking_threads=1,  # granian's own, for the loop; the app's are the bridge's pool
        backpressure=BACKPRESSURE_PER_WORKER,
        http1_settings=HTTP1Settings(max_buffer_size=HEAD_BUFFER_BYTES),
        websockets=False,
        log_level=LogLevels.info,
        log_dictconfig=_GRANIAN_LOGGING,
        respawn_failed_workers=True,
        workers_kill_timeout=GRACEFUL_TIMEOUT,
    )
    server.serve(target_loader=_loader(app))
    return 0
