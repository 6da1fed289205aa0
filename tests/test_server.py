"""A real ``hutch serve`` (granian, two workers) on the embedded default, over TCP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from tests.helpers import decode_signed

READY_TIMEOUT = 30
STOP_TIMEOUT = 35


def _bind_problem() -> str | None:
    try:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            sock.listen()
    except OSError as exc:
        return f"cannot bind a TCP port on 127.0.0.1 for a real server: {exc}"
    return None


BIND_PROBLEM = _bind_problem()
pytestmark = pytest.mark.skipif(BIND_PROBLEM is not None, reason=str(BIND_PROBLEM))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class Answer:
    """An http.client answer shaped like a Flask test response, for decode_signed."""

    status_code: int
    headers: dict[str, str]
    data: bytes
    raw_headers: list[tuple[str, str]] = field(default_factory=list)

    def get_data(self, as_text: bool = False):
        return self.data.decode() if as_text else self.data


@dataclass
class Server:
    folder: Path
    port: int
    process: subprocess.Popen | None = None
    log: Path | None = None

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items()
               if not k.startswith("HUTCH_") and k != "WEB_CONCURRENCY"}
        env["HUTCH_INSTANCE"] = str(self.folder / "instance")
        return env

    def hutch(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "hutch.cli", *args], cwd=self.folder,
                              env=self.env, capture_output=True, text=True, timeout=60,
                              check=False)

    def start(self) -> None:
        self.log = self.folder / f"serve-{time.monotonic_ns()}.log"
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hutch.cli", "serve", "--port", str(self.port),
                 "--workers", "2"],
                cwd=self.folder, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                output = self.output()
                if "in use" in output or "Permission denied" in output:
                    pytest.skip(f"the server cannot bind 127.0.0.1:{self.port}: {output[-300:]}")
                pytest.fail(f"hutch serve exited with {self.process.returncode}:\n{output}")
            try:
                if self.request("GET", "/.well-known/hutch-configuration").status_code == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"hutch serve not ready within {READY_TIMEOUT} s:\n{self.output()}")

    def stop(self) -> int | None:
        """SIGTERM and wait; the exit status, or None if it had to be killed."""
        if self.process is None or self.process.poll() is not None:
            return self.process.returncode if self.process else None
        self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log else ""

    def request(self, method: str, target: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> Answer:
        """Send ``target`` on the request line exactly as given."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.putrequest(method, target, skip_host=False, skip_accept_encoding=True)
            for name, value in (headers or {}).items():
                conn.putheader(name, value)
            if body is not None:
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body)
            response = conn.getresponse()
            raw = response.getheaders()
            return Answer(response.status, CaseInsensitiveDict(raw), response.read(), raw)
        finally:
            conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = Server(tmp_path_factory.mktemp("serve"), free_port())
    running.start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def token(server) -> str:
    result = server.hutch("token", "--sub", "live")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def auth(token: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", **extra}


def send_json(server: Server, method: str, target: str, token: str, document) -> Answer:
    return server.request(method, target, json.dumps(document).encode(),
                          auth(token, **{"Content-Type": "application/json"}))


def jwks(server: Server) -> dict:
    return json.loads(server.request("GET", "/jwks").data)


def test_embedded_default_announces_itself(server):
    output = server.output()
    assert "hutch-local" in output and "hutch token" in output
    assert (server.folder / "instance" / "sign.jwks").exists()


def test_write_then_signed_list(server, token):
    kid = jwks(server)["keys"][0]["kid"]
    answer = send_json(server, "PUT", "/api/profile", token, {"name": "Live", "sign_kid": kid})
    assert answer.status_code == 200
    answer = send_json(server, "POST", "/api/safe", token, {"name": "vault1"})
    assert answer.status_code == 200
    listed = server.request("GET", "/api/safe", headers=auth(token))
    signed = decode_signed(listed, jwks(server))
    assert signed.header["kid"] == kid
    assert [s["name"] for s in signed.payload["list"]] == ["vault1"]


def test_write_answers_carry_no_content_type(server, token):
    for answer in (send_json(server, "PUT", "/api/profile", token, {"name": "Live"}),
                   send_json(server, "POST", "/api/safe", token, {"name": "vault2"}),
                   server.request("DELETE", "/api/safe/vault2", headers=auth(token))):
        assert answer.status_code == 200
        assert answer.data == b""
        assert "content-type" not in {name.lower() for name, _ in answer.raw_headers}


def test_raw_double_slash_jwks_is_a_jwt(server):
    """§9: the original suite requests //jwks; the server must not treat it as a host."""
    answer = server.request("GET", "//jwks", headers={"accept": "application/jwt"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/jwt"
    published = jwks(server)
    assert decode_signed(answer, published).payload == published


def test_doubled_slashes_on_the_api_are_not_redirected(server, token):
    answer = server.request("GET", "//api//profile/", headers=auth(token))
    assert answer.status_code == 200 and "Location" not in answer.headers


def test_no_token_is_401(server):
    answer = server.request("GET", "/api/profile")
    assert answer.status_code == 401
    assert answer.headers["Cache-Control"] == "no-store"
    assert "WWW-Authenticate" in answer.headers


def test_oversized_token_and_path_get_json_answers_not_server_pages(server, token):
    """The HTTP server lets a 100 KB header and a 20 KB path through to the app."""
    huge = "A" * 100_000
    answer = server.request("GET", "/api/profile", headers={"Authorization": f"Bearer {huge}"})
    assert answer.status_code == 401
    assert json.loads(answer.data)["error"] == "invalid_token"
    assert answer.headers["WWW-Authenticate"].startswith("Bearer")
    long_path = "/api/safe/" + "a" * 20_000
    answer = server.request("GET", long_path, headers=auth(token))
    assert answer.status_code in (403, 404) and json.loads(answer.data)["error"]


def test_preflight_over_tcp(server):
    answer = server.request("OPTIONS", "/api/safe/x", headers={
        "Origin": "https://app.example", "Access-Control-Request-Method": "PUT"})
    assert answer.status_code == 200
    assert answer.headers["Access-Control-Max-Age"] == "1800"


def test_two_workers_are_running(server):
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc to count worker processes")
    children = [p for p in Path("/proc").glob("[0-9]*") if _parent(p) == server.process.pid]
    assert len(children) == 2


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def test_sigterm_exits_0_and_data_survives_a_restart(server, token):
    assert send_json(server, "PUT", "/api/profile", token, {"name": "Live"}).status_code == 200
    assert send_json(server, "POST", "/api/safe", token, {"name": "kept"}).status_code == 200
    started = time.monotonic()
    assert server.stop() == 0, server.output()[-2000:]
    assert time.monotonic() - started < STOP_TIMEOUT
    with pytest.raises(OSError):
        server.request("GET", "/jwks")
    server.start()
    listed = server.request("GET", "/api/safe", headers=auth(token))
    names = [s["name"] for s in decode_signed(listed, jwks(server)).payload["list"]]
    assert "kept" in names


def test_access_lines_are_one_per_request_escaped_and_without_the_query(server):
    answer = server.request("GET", "/forged%0A2026-01-01%20INFO%20fake?access_token=qs-secret",
                            headers={"X-Request-Id": "access-1"})
    assert answer.status_code == 404
    deadline = time.monotonic() + 5  # written in batches, at most 0.5 s late
    while time.monotonic() < deadline and "rid=access-1" not in server.output():
        time.sleep(0.1)
    lines = [line for line in server.output().splitlines() if "rid=access-1" in line]
    assert len(lines) == 1, lines
    assert '"GET /forged\\n2026-01-01 INFO fake HTTP/1.1" 404 ' in lines[0]
    assert "qs-secret" not in server.output()
    assert not any(line.startswith("2026-01-01 INFO") for line in server.output().splitlines())


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_a_request_in_flight_when_the_signal_comes_is_answered_and_kept(server, token,
                                                                          stop_signal):
    """Draining: an upload half-sent when SIGTERM/SIGINT arrives still gets its 200."""
    assert send_json(server, "PUT", "/api/profile", token, {"name": "Live"}).status_code == 200
    send_json(server, "POST", "/api/safe", token, {"name": "drain"})
    name = f"late{int(stop_signal)}"
    body = json.dumps({"name": name, "data": "x" * 300_000}).encode()
    head = (f"POST /api/safe/drain/coin HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}"
            f"\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    with socket.create_connection(("127.0.0.1", server.port), timeout=20) as sock:
        sock.sendall(head + body[:1000])
        time.sleep(0.5)  # the app is reading the body now
        server.process.send_signal(stop_signal)
        time.sleep(0.5)
        sock.sendall(body[1000:])
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
    assert server.process.wait(STOP_TIMEOUT) == 0, server.output()[-2000:]
    server.start()
    found = server.request("GET", f"/api/safe/drain/coin/{name}", headers=auth(token))
    assert decode_signed(found, jwks(server)).payload["data"] == "x" * 300_000


def test_granian_decodes_percent_2f_before_routing(server, token):
    """What hutch/http.py SegmentRouter says: granian gives no raw path, so under
    ``hutch serve`` ``%2F`` separates segments (the test client keeps it, test_http.py)."""
    assert send_json(server, "PUT", "/api/profile", token, {"name": "Live"}).status_code == 200
    for target in ("/api%2Fprofile", "/api%2fprofile/"):
        answer = server.request("GET", target, headers=auth(token))
        assert decode_signed(answer, jwks(server)).payload["name"] == "Live"
