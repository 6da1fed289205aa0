"""What a request may cost before the app sees it, checked on the event loop by the ASGI
bridge (hutch/asgi.py): the size of its head, its Host header, and its body, read whole
within ``max_body_bytes`` and at ``body_min_rate`` once ``body_grace`` has passed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]


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


def header(scope: Scope, name: bytes) -> bytes | None:
    for key, value in scope["headers"]:
        if key == name:
            return value
    return None


def _length(declared: bytes) -> int:
    try:  # granian checks Content-Length; this is only a second line of defence
        return int(declared)
    except ValueError:
        raise Refused(400, "bad request", "Content-Length is not a number") from None


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
    declared = header(scope, b"content-length")
    if declared is None and header(scope, b"transfer-encoding") is None:
        return b""
    if declared is not None and _length(declared) > limits.max_body:
        return b""
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
