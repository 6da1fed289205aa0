"""Slow clients hold no thread, and the HTTP edges of issue 10 (items 1, 4 and 8), against
real ``hutch serve`` processes over raw TCP sockets. Bounded: every socket has a timeout
and every test ends within ~30 s."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field

import pytest

from tests.test_server import BIND_PROBLEM, Server, auth, free_port, send_json

pytestmark = pytest.mark.skipif(BIND_PROBLEM is not None, reason=str(BIND_PROBLEM))

COIN_BYTES = 4 * 1024 * 1024
SLOW_UPLOADS = 64
SLOW_READERS = 16


@dataclass
class TunedServer(Server):
    """A ``hutch serve`` with extra ``HUTCH_*`` settings in its environment."""

    settings: dict[str, str] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        return {**super().env, **self.settings}


def _start(tmp_path_factory, **settings: str):
    running = TunedServer(tmp_path_factory.mktemp("slow"), free_port(), settings=settings)
    running.start()
    return running


@pytest.fixture(scope="module")
def patient(tmp_path_factory):
    """Slow bodies are tolerated for two minutes: the attack below stays open."""
    running = _start(tmp_path_factory, HUTCH_BODY_GRACE="120")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def strict(tmp_path_factory):
    """A body must average 1000 bytes a second after one second."""
    running = _start(tmp_path_factory, HUTCH_BODY_GRACE="1", HUTCH_BODY_MIN_RATE="1000")
    yield running
    running.stop()


def _token(server: Server, sub: str) -> str:
    result = server.hutch("token", "--sub", sub)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert send_json(server, "PUT", "/api/profile", token, {"name": sub}).status_code == 200
    return token


def _connect(server: Server, timeout: float = 10, rcvbuf: int | None = None) -> socket.socket:
    sock = socket.socket()
    sock.settimeout(timeout)
    if rcvbuf is not None:  # before connect, so the window stays small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(("127.0.0.1", server.port))
    return sock


def _raw(server: Server, request: bytes) -> tuple[int, bytes, bytes]:
    """Send bytes as they are (HTTP/1.1 ones ask to close); status, head and body of the
    answer, read to EOF."""
    with _connect(server) as sock:
        sock.sendall(request)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), head.lower(), body


def test_slow_uploads_and_slow_readers_do_not_hold_the_server(patient):
    """64 uploads sending a byte every 2 s and 16 readers taking a 4 MiB coin at a trickle,
    from one user: another user's GETs keep answering (issue 10 item 1). The WSGI server
    before the ASGI bridge had 2 × 4 threads and froze here."""
    attacker, victim = _token(patient, "attacker"), _token(patient, "victim")
    assert send_json(patient, "POST", "/api/safe", attacker, {"name": "big"}).status_code == 200
    coin = {"name": "c1", "data": "x" * COIN_BYTES}
    assert send_json(patient, "POST", "/api/safe/big/coin", attacker, coin).status_code == 200
    put = (f"PUT /api/safe/big/coin/c1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {attacker}"
           "\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n").encode()
    get = (f"GET /api/safe/big/coin/c1 HTTP/1.1\r\nHost: x\r\n"
           f"Authorization: Bearer {attacker}\r\n\r\n").encode()
    sockets: list[socket.socket] = []
    stop = threading.Event()

    def trickle() -> None:
        while not stop.wait(2):  # a byte every 2 s up, 1 KiB every 2 s down
            for sock in sockets:
                with suppress(OSError):
                    if sock.slow_upload:
                        sock.send(b" ")
                    else:
                        sock.recv(1024)

    try:
        for index in range(SLOW_UPLOADS + SLOW_READERS):
            reader = index >= SLOW_UPLOADS
            sock = _SlowSocket(patient, reader)
            sock.sendall(get if reader else put + b"{")
            sockets.append(sock)
        worker = threading.Thread(target=trickle, daemon=True)
        worker.start()
        time.sleep(2)  # the uploads are waiting for their bodies, the readers stuck
        took = []
        for _ in range(60):
            started = time.monotonic()
            answer = patient.request("GET", "/api/profile", headers=auth(victim))
            took.append(time.monotonic() - started)
            assert answer.status_code == 200
        took.sort()
        p99 = took[int(len(took) * 0.99) - 1]
        assert p99 < 1.0, f"p99 {p99:.3f} s, slowest {took[-1]:.3f} s"
        # The attacker's connections are all still open: the server waits, it did not shed them.
        assert sum(1 for sock in sockets if not sock.closed_by_server()) == len(sockets)
    finally:
        stop.set()
        for sock in sockets:
            sock.close()


class _SlowSocket(socket.socket):
    """A client socket that is either a slow uploader or a slow reader."""

    def __init__(self, server: Server, reader: bool):
        super().__init__()
        self.slow_upload = not reader
        self.settimeout(0.2)
        if reader:
            self.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.connect(("127.0.0.1", server.port))

    def closed_by_server(self) -> bool:
        try:
            return self.recv(1, socket.MSG_PEEK) == b"" if self.slow_upload else False
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:
            return True


def test_a_body_slower_than_the_minimum_rate_gets_408_and_the_connection_closes(strict):
    token = _token(strict, "slow")
    head = (f"POST /api/safe HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n"
            "Content-Type: application/json\r\nContent-Length: 5000\r\n"
            "X-Request-Id: slow-1\r\n\r\n").encode()
    started = time.monotonic()
    with _connect(strict, timeout=10) as sock:
        sock.sendall(head + b'{"name":')
        data = b""
        sock.settimeout(0.5)
        while time.monotonic() - started < 8:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                sock.send(b" ")  # 2 bytes a second, far under 1000
                continue
            if not chunk:
                break
            data += chunk
    took = time.monotonic() - started
    assert data.startswith(b"HTTP/1.1 408 "), data[:200]
    assert 1 <= took < 5, took  # after body_grace, and the server closed the connection
    head, _, body = data.partition(b"\r\n\r\n")
    assert b"x-request-id: slow-1" in head.lower() and b"connection: close" in head.lower()
    document = json.loads(body)
    assert document["error"] == "request timeout" and "1000 bytes a second" in document["message"]
    assert "rid=slow-1" in _wait_for(strict, "rid=slow-1")
    # A body at an ordinary speed is unaffected.
    assert send_json(strict, "POST", "/api/safe", token, {"name": "fast"}).status_code == 200


def _wait_for(server: Server, text: str) -> str:
    deadline = time.monotonic() + 5  # access lines are written at most 0.5 s late
    while time.monotonic() < deadline and text not in server.output():
        time.sleep(0.1)
    return server.output()


def test_a_header_over_512_kib_gets_431_with_a_json_body(strict):
    for size in (530_000, 1_000_000, 1_500_000, 1_000_000, 1_000_000):
        status, head, body = _raw(strict, b"GET /jwks HTTP/1.1\r\nHost: x\r\nX-Big: "
                                  + b"a" * size + b"\r\n\r\n")
        assert status == 431 and b"content-type: application/json" in head, (size, head)
        assert json.loads(body)["message"] == \
            "the request line and headers are limited to 524288 bytes"
    status, _, _ = _raw(strict, b"GET /jwks HTTP/1.1\r\nHost: x\r\nX-Big: "
                        + b"a" * 500_000 + b"\r\nConnection: close\r\n\r\n")
    assert status == 200


@pytest.mark.parametrize("hosts", [b"", b"Host:\r\n", b"Host: x\r\nHost: x\r\n",
                                   b"Host: a\r\nHost: b\r\n"])
def test_http_1_1_needs_exactly_one_host(strict, hosts):
    """RFC 9112 §3.2: no Host (or an empty one) in HTTP/1.1, or two of them: 400."""
    status, head, body = _raw(strict, b"GET /jwks HTTP/1.1\r\n" + hosts
                              + b"Connection: close\r\n\r\n")
    assert status == 400 and b"content-type: application/json" in head
    assert json.loads(body)["error"] == "bad request"


def test_http_1_0_may_omit_host_but_not_repeat_it(strict):
    assert _raw(strict, b"GET /jwks HTTP/1.0\r\n\r\n")[0] == 200
    assert _raw(strict, b"GET /jwks HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n")[0] == 400


def test_a_second_server_on_a_taken_port_exits_2_and_the_first_keeps_serving(strict,
                                                                              tmp_path):
    second = Server(tmp_path, strict.port)
    result = subprocess.run(
        [sys.executable, "-m", "hutch.cli", "serve", "--port", str(strict.port),
         "--workers", "1"], cwd=tmp_path, env=second.env, capture_output=True, text=True,
        timeout=60, check=False)
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and f"port {strict.port}" in lines[0] and "in use" in lines[0]
    assert "listening" not in result.stdout.lower()
    assert strict.process.poll() is None
    assert strict.request("GET", "/.well-known/hutch-configuration").status_code == 200
