"""The ASGI side of ``hutch serve``: waiting on the network is a coroutine, never a thread.

granian runs this bridge on each worker's event loop (uvloop). A request's head is
checked (size, Host), its body read whole on the loop (``max_body_bytes``, and
``body_min_rate`` after ``body_grace``: 408), then the unchanged Flask WSGI app answers
it in a small thread pool from memory; the answer goes back part by part, a pool thread
producing the next part while the loop waits for the client to take the last one. A slow
uploader or a slow reader therefore holds a coroutine and its buffers, never one of the
pool's threads (issue 10 item 1). The hop costs 22-55 µs in-process, ~50-100 µs of CPU
a request in the server (bench/RESULTS.md).

Native async routes (the event stream of issue 14) plug in before the WSGI hop:
``Bridge(routes={"/api/events": stream})`` hands such a path to an ASGI callable that
runs on the loop, so thousands of open streams hold no thread.
"""

from __future__ import annotations

import asyncio
import io
import itertools
import json
import queue
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from contextlib import suppress
from typing import Any
from urllib.parse import unquote_to_bytes

from hutch.http import SECURITY_HEADERS, answer_headers, make_request_id
from hutch.intake import (
    Disconnected,
    Limits,
    Receive,
    Refused,
    Scope,
    check_head,
    header,
    read_body,
)

Send = Callable[[dict[str, Any]], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Bytes of an answer handed to granian at once. granian queues a few parts per
#: connection and then makes ``send`` wait, so a slow reader pins little beyond the answer.
SEND_PART = 256 * 1024


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


class Pool:
    """Threads that run the app, handing results back to the event loop.

    concurrent.futures' executor wraps every call in two futures and a callback chain;
    this hands the loop's own future straight to the thread: ~10 µs less a call.
    """

    def __init__(self, threads: int):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        for index in range(threads):
            threading.Thread(target=self._work, daemon=True,
                             name=f"hutch-app-{index}").start()

    def run(self, function: Callable, *args: Any) -> asyncio.Future:
        """``function(*args)`` in a pool thread; its result (or exception) on the loop."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self._jobs.put((loop, future, function, args))
        return future

    def _work(self) -> None:
        while True:
            loop, future, function, args = self._jobs.get()
            result, error = None, None
            try:
                result = function(*args)
            except BaseException as exc:  # noqa: BLE001 - the awaiting coroutine raises it
                error = exc
            with suppress(RuntimeError):  # the loop closed at the worker's exit
                loop.call_soon_threadsafe(_settle, future, result, error)


def _settle(future: asyncio.Future, result: Any, exc: BaseException | None) -> None:
    if future.cancelled():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)


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
        self.pool: Pool | None = None

    def start(self) -> None:
        """The thread pool, made in each worker (threads do not survive fork)."""
        self.pool = Pool(self.threads)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":  # no lifespan (asginl), no websockets
            return
        started = time.perf_counter()
        try:
            check_head(scope, self.limits.max_head)
            if self.routes:  # issue 14's event stream: on the loop, before the WSGI hop
                native = self.routes.get(
                    "/" + "/".join(s for s in scope["path"].split("/") if s))
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
        head: list[Any] = []
        written: list[bytes] = []  # PEP 3333's write(): sent before the iterable

        def start_response(status: str, headers: list[tuple[str, str]], exc_info=None):
            head[:] = [int(status[:3]), headers]
            return written.append

        def begin() -> tuple[Iterable[bytes], Iterator[bytes], bytes, bool]:
            result = self.app(environ, start_response)
            parts = itertools.chain(written, result)
            return (result, parts, *_take(parts, result))

        result, parts, chunk, done = await self.pool.run(begin)
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
                chunk, done = await self.pool.run(_take, parts, result)
        finally:
            if not done:  # the client went away mid-answer
                await self.pool.run(_close, result)

    async def _refuse(self, scope: Scope, send: Send, refused: Refused,
                      started: float) -> None:
        """Answer without the app; the connection closes (the body may be unread)."""
        rid = make_request_id(
            (header(scope, b"x-request-id") or b"")[:64].decode("latin-1"))
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
