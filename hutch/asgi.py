"""The ASGI side of ``hutch serve``: waiting on the network is a coroutine, never a thread.

granian runs this bridge on each worker's event loop (uvloop). A request's head is
checked (size, Host), its body read whole on the loop (``max_body_bytes``, and
``body_min_rate`` after ``body_grace``: 408), then the unchanged Flask WSGI app answers
it in a small thread pool from memory; the answer goes back part by part, a pool thread
producing the next part while the loop waits for the client to take the last one. A slow
uploader or a slow reader therefore holds a coroutine and its buffers, never one of the
pool's threads (issue 10 item 1). The hop costs ~35 µs a request (bench/RESULTS.md).

Native async routes (the event stream of issue 14) plug in before the WSGI hop:
``Bridge(routes={"/api/events": stream})`` hands such a path to an ASGI callable that
runs on the loop, so thousands of open streams hold no thread.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

from hutch.http import SECURITY_HEADERS, answer_headers, make_request_id

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bytes of an answer handed to granian at once. granian queues a few parts per
#: connection and then makes ``send`` wait, so a slow reader pins little beyond the answer.
SEND_PART = 256 * 1024


@dataclass(frozen=True)
class Limits:
    """What a request may cost before the app sees it."""

    max_head: int  # request line plus headers, bytes
    max_body: int  # max_body_bytes
    min_rate: int  # body_min_rate, bytes/s averaged from the start; 0 = no minimum
    grace: float  # body_grace, seconds before min_rate applies


class Refused(Exception):
    """A request answered by the bridge itself, with the JSON error shape of errors.py."""

    def __init__(self, status: int, error: str, message: str):
        super().__init__(message)
        self.status, self.error, self.message = status, error, message


class Disconnected(Exception):
    """The client went away before its body was complete: nobody to answer."""


def check_head(scope: Scope, max_head: int) -> None:
    """The head limits granian does not apply exactly (its buffer admits ~2× its size)."""
    headers = scope["headers"]
    size = (len(scope["method"]) + len(scope.get("raw_path") or scope["path"])
            + len(scope["query_string"]) + 14
            + sum(len(name) + len(value) + 4 for name, value in headers))
    if size > max_head:
        raise Refused(431, "request header fields too large",
                      f"the request line and headers are limited to {max_head} bytes")
    hosts = [value for name, value in headers if name == b"host"]
    # RFC 9112 §3.2: a server MUST answer 400 to an HTTP/1.1 request without a Host
    # header and to any request with more than one. granian shows a missing Host as an
    # empty one; an empty host is invalid for an http URI anyway (RFC 9110 §4.2.1).
    if len(hosts) > 1:
        raise Refused(400, "bad request", "the request has more than one Host header")
    if scope["http_version"] not in ("1", "1.0") and (not hosts or not hosts[0]):
        raise Refused(400, "bad request", "the request has no Host header (RFC 9112 section 3.2)")


def _header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


async def _receive_by(receive: Receive, deadline: float | None) -> dict[str, Any] | None:
    """The next message, or None at ``deadline`` (asyncio.wait: granian tasks cannot be
    cancelled, so asyncio.timeout would not fire on Python 3.12+)."""
    if deadline is None:
        return await receive()
    pending = asyncio.ensure_future(receive())
    done, _ = await asyncio.wait({pending}, timeout=max(0.0, deadline - time.monotonic()))
    if not done:
        pending.cancel()
        return None
    return pending.result()


async def read_body(scope: Scope, receive: Receive, limits: Limits) -> bytes:
    """The whole body, read on the loop. Above the cap it stops at ``max_body + 1`` bytes
    (a declared one is not read at all): the app answers 413 from what it gets."""
    declared = _header(scope, b"content-length")
    if declared is None and _header(scope, b"transfer-encoding") is None:
        return b""
    if declared is not None and int(declared) > limits.max_body:
        return b""  # granian has checked it is a number
    started = time.monotonic()
    parts: list[bytes] = []
    size = 0
    while True:
        deadline = (started + max(limits.grace, size / limits.min_rate)
                    if limits.min_rate else None)
        message = await _receive_by(receive, deadline)
        if message is None:
            raise Refused(408, "request timeout",
                          f"the request body arrived slower than {limits.min_rate} bytes "
                          f"a second (body_min_rate, after {limits.grace:g} s)")
        if message["type"] == "http.disconnect":
            raise Disconnected
        chunk = message.get("body", b"")
        if chunk:
            parts.append(chunk)
            size += len(chunk)
        if size > limits.max_body or not message.get("more_body", False):
            return b"".join(parts)


def wsgi_environ(scope: Scope, body: bytes) -> dict[str, Any]:
    """The environ granian's WSGI interface gave: decoded path as latin-1, no raw URI."""
    raw_path = scope.get("raw_path") or scope["path"].encode()
    version = scope["http_version"]
    server = scope.get("server") or ("", 0)
    environ: dict[str, Any] = {
        "GATEWAY_INTERFACE": "CGI/1.1",
        "SCRIPT_NAME": "",
        "SERVER_SOFTWARE": "Granian",
        "SERVER_PROTOCOL": "HTTP/1.0" if version in ("1", "1.0") else f"HTTP/{version}",
        "SERVER_NAME": str(server[0]),
        "SERVER_PORT": str(server[1]),
        "REMOTE_ADDR": (scope.get("client") or ("-",))[0],
        "REQUEST_METHOD": scope["method"],
        "PATH_INFO": unquote_to_bytes(raw_path).decode("latin-1"),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "wsgi.url_scheme": scope.get("scheme", "http"),
        "wsgi.input": io.BytesIO(body),
        "wsgi.input_terminated": True,
        "wsgi.errors": sys.stderr,
        "wsgi.multiprocess": False,
        "wsgi.multithread": True,
        "wsgi.run_once": False,
        "wsgi.version": (1, 0),
    }
    for raw_name, raw_value in scope["headers"]:
        name = raw_name.decode("latin-1").upper().replace("-", "_")
        value = raw_value.decode("latin-1")
        if name in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            environ[name] = value
            continue
        key = "HTTP_" + name
        environ[key] = f"{environ[key]},{value}" if key in environ else value
    return environ


def _take(parts: Iterator[bytes], result: Iterable[bytes]) -> tuple[bytes, bool]:
    """In a pool thread: the answer's next ``SEND_PART`` bytes or more, and whether that
    was the end (then the WSGI iterable is closed, as PEP 3333 asks)."""
    collected: list[bytes] = []
    size = 0
    for part in parts:
        if part:
            collected.append(part)
            size += len(part)
            if size >= SEND_PART:
                return b"".join(collected) if len(collected) > 1 else collected[0], False
    _close(result)
    return b"".join(collected), True


def _close(result: Iterable[bytes]) -> None:
    close = getattr(result, "close", None)
    if close is not None:
        close()


class Bridge:
    """The ASGI app granian serves: native routes on the loop, the rest through WSGI."""

    def __init__(self, wsgi_app: Callable, limits: Limits, threads: int,
                 allow_origin: str | None = None,
                 access: Callable[[Scope, int, int, str, float], None] | None = None,
                 routes: Mapping[str, AsgiApp] | None = None):
        self.app = wsgi_app
        self.limits = limits
        self.threads = threads
        self.allow_origin = allow_origin
        self.access = access
        self.routes = dict(routes or {})
        self.pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """The thread pool, made in each worker (threads do not survive fork)."""
        self.pool = ThreadPoolExecutor(self.threads, thread_name_prefix="hutch-app")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan (asginl), no websockets
            return
        started = time.perf_counter()
        try:
            check_head(scope, self.limits.max_head)
            native = self.routes.get("/" + "/".join(s for s in scope["path"].split("/") if s))
            if native is not None:
                await native(scope, receive, send)
                return
            body = await read_body(scope, receive, self.limits)
        except Refused as refused:
            await self._refuse(scope, send, refused, started)
            return
        except Disconnected:
            return
        await self._answer(wsgi_environ(scope, body), send)

    async def _answer(self, environ: dict[str, Any], send: Send) -> None:
        loop = asyncio.get_running_loop()
        head: list[Any] = []
        written: list[bytes] = []  # PEP 3333's write(): sent before the iterable

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            head[:] = [int(status[:3]), headers]
            return written.append

        def begin() -> tuple[Iterable[bytes], Iterator[bytes], bytes, bool]:
            result = self.app(environ, start_response)
            parts = itertools.chain(written, result)
            return (result, parts, *_take(parts, result))

        result, parts, chunk, done = await loop.run_in_executor(self.pool, begin)
        try:
            await send({"type": "http.response.start", "status": head[0], "headers": [
                (name.lower().encode("latin-1"), value.encode("latin-1"))
                for name, value in head[1]]})
            while True:
                for start in range(0, max(len(chunk), 1), SEND_PART):
                    last = done and start + SEND_PART >= len(chunk)
                    await send({"type": "http.response.body",
                                "body": chunk[start:start + SEND_PART], "more_body": not last})
                if done:
                    return
                chunk, done = await loop.run_in_executor(self.pool, _take, parts, result)
        finally:
            if not done:  # the client went away mid-answer
                await loop.run_in_executor(self.pool, _close, result)

    async def _refuse(self, scope: Scope, send: Send, refused: Refused,
                      started: float) -> None:
        """Answer without the app; the connection closes (the body may be unread)."""
        rid = make_request_id(
            (_header(scope, b"x-request-id") or b"")[:64].decode("latin-1"))
        body = json.dumps({"error": refused.error, "message": refused.message},
                          separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "Content-Length": str(len(body)),
                   **answer_headers(self.allow_origin), **SECURITY_HEADERS,
                   "X-Request-Id": rid, "Connection": "close"}
        await send({"type": "http.response.start", "status": refused.status,
                    "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        if self.access is not None:
            self.access(scope, refused.status, len(body), rid,
                        time.perf_counter() - started)
