"""A small keep-alive HTTP client for seeding and single calls, one connection per thread."""

from __future__ import annotations

import http.client
import json
import threading
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any


class ApiError(RuntimeError):
    pass


class Client:
    def __init__(self, host: str, port: int, prefix: str = "api", timeout: float = 120):
        self.host, self.port, self.prefix, self.timeout = host, port, prefix, timeout
        self._local = threading.local()

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(self.host, self.port,
                                                                 timeout=self.timeout)
        return conn

    def request(self, method: str, path: str, token: str | None = None,
                body: Any = None) -> tuple[int, bytes]:
        headers = {}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        for attempt in (1, 2):
            conn = self._connection()
            try:
                conn.request(method, path, body=data, headers=headers)
                answer = conn.getresponse()
                return answer.status, answer.read()
            except (http.client.HTTPException, ConnectionError, OSError):
                conn.close()
                self._local.conn = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def api(self, method: str, path: str, token: str, body: Any = None,
            expect: Iterable[int] = (200,)) -> bytes:
        status, data = self.request(method, f"/{self.prefix}/{path}", token, body)
        if status not in tuple(expect):
            raise ApiError(f"{method} /{self.prefix}/{path} answered {status}: "
                           f"{data[:300]!r}")
        return data

    def wait_ready(self, path: str, timeout: float, alive) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not alive():
                raise RuntimeError("the server exited during startup")
            try:
                if self.request("GET", path)[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"the server did not answer GET {path} within {timeout:g} s")

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            conn.close()
            self._local.conn = None


def parallel(calls: list, workers: int = 16) -> None:
    """Run zero-argument callables on a thread pool; the first failure is raised."""
    with ThreadPoolExecutor(workers) as pool:
        for future in [pool.submit(call) for call in calls]:
            future.result()
