"""A counting HTTP proxy: sees every request Hutch makes to the identity provider.

Glewlwyd is given the proxy's URL as its external URL, so its discovery document
sends Hutch's JWKS fetches through here, where they are counted and timed.
"""

from __future__ import annotations

import http.client
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class CountingProxy:
    """Forwards to ``127.0.0.1:upstream_port``; answers 502 while the upstream is down."""

    def __init__(self, upstream_port: int, port: int = 0):
        self.upstream_port = upstream_port
        self.seen: list[tuple[float, str, str, int]] = []  # (time, method, path, status)
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def times(self, method: str, path_end: str) -> list[float]:
        """When requests like ``GET .../jwks`` went through, oldest first."""
        with self._lock:
            return [t for t, m, p, _ in self.seen if m == method and p.endswith(path_end)]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _record(self, method: str, path: str, status: int) -> None:
        with self._lock:
            self.seen.append((time.monotonic(), method, path, status))

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            def _forward(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
                upstream = http.client.HTTPConnection("127.0.0.1", proxy.upstream_port, timeout=10)
                try:
                    upstream.request(self.command, self.path, body=body, headers=headers)
                    answer = upstream.getresponse()
                    status, reply = answer.status, answer.read()
                    reply_headers = [(k, v) for k, v in answer.getheaders()
                                     if k.lower() not in HOP_BY_HOP | {"content-length"}]
                except OSError:
                    status, reply, reply_headers = 502, b"upstream down", []
                finally:
                    upstream.close()
                proxy._record(self.command, self.path, status)
                self.send_response(status)
                for key, value in reply_headers:
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(reply)))
                self.end_headers()
                self.wfile.write(reply)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, *args):  # keep pytest output quiet
                pass

        return Handler
