"""The ASGI bridge in-process (hutch/asgi.py): settings, the WSGI hop, the native-route
seam, body limits. The real server is exercised in test_slow_clients.py."""

from __future__ import annotations

import asyncio
import json

import pytest

from hutch.asgi import Bridge, Limits
from hutch.settings import ConfigError, load_settings

LIMITS = Limits(max_head=4096, max_body=100, min_rate=1000, grace=0.3)


def scope(path: str = "/echo", method: str = "POST", headers=(), raw_path=None) -> dict:
    return {"type": "http", "http_version": "1.1", "method": method, "path": path,
            "raw_path": raw_path or path.encode(), "query_string": b"a=1",
            "headers": [(b"host", b"x"), *headers], "server": ("127.0.0.1", 4884),
            "client": ("10.0.0.1", 5000), "scheme": "http"}


def echo(environ, start_response):
    """WSGI: the environ's interesting parts and the body, in JSON."""
    body = environ["wsgi.input"].read()
    document = {"path": environ["PATH_INFO"], "query": environ["QUERY_STRING"],
                "x": environ.get("HTTP_X"), "length": environ.get("CONTENT_LENGTH"),
                "body": body.decode("latin-1"), "protocol": environ["SERVER_PROTOCOL"]}
    start_response("201 Created", [("Content-Type", "application/json")])
    return [json.dumps(document).encode()]


def run(bridge: Bridge, request_scope: dict, messages: list[dict],
        pause: float = 0.0) -> list[dict]:
    """Drive one request; ``pause`` seconds before each body message after the first."""
    sent: list[dict] = []

    async def receive():
        if len(messages) > 1 and pause:
            await asyncio.sleep(pause)
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    bridge.start()
    asyncio.run(bridge(request_scope, receive, send))
    return sent


def body_of(sent: list[dict]) -> bytes:
    return b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")


def test_a_request_reaches_the_wsgi_app_as_granian_gave_it():
    headers = [(b"x", b"1"), (b"x", b"2"), (b"content-length", b"5")]
    sent = run(Bridge(echo, LIMITS, threads=1),
               scope("/a/b%2Fc/%ff", headers=headers, raw_path=b"/a/b%2Fc/%ff"),
               [{"type": "http.request", "body": b"he", "more_body": True},
                {"type": "http.request", "body": b"llo", "more_body": False}])
    assert sent[0]["status"] == 201
    assert json.loads(body_of(sent)) == {"path": "/a/b/c/\xff", "query": "a=1", "x": "1,2",
                                         "length": "5", "body": "hello",
                                         "protocol": "HTTP/1.1"}
    assert sent[-1]["more_body"] is False


def test_a_large_answer_goes_out_in_parts():
    def large(environ, start_response):
        start_response("200 OK", [("Content-Length", str(3 * 1024 * 1024))])
        return (b"y" * (1024 * 1024) for _ in range(3))

    sent = run(Bridge(large, LIMITS, threads=1), scope(method="GET"), [])
    parts = [m for m in sent if m["type"] == "http.response.body"]
    assert [len(m["body"]) for m in parts if m["body"]] == [256 * 1024] * 12
    assert parts[-1]["more_body"] is False
    assert body_of(sent) == b"y" * (3 * 1024 * 1024)


def test_native_routes_run_on_the_loop_before_the_wsgi_hop():
    """The seam for issue 14's event stream: a path check, no thread."""
    async def native(scope, receive, send):
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"native", "more_body": False})

    def never(environ, start_response):
        raise AssertionError("the WSGI app must not see a native route")

    bridge = Bridge(never, LIMITS, threads=1, routes={"/api/events": native})
    assert body_of(run(bridge, scope("//api//events/", method="GET"), [])) == b"native"


def test_a_body_slower_than_the_minimum_rate_is_408():
    messages = [{"type": "http.request", "body": b"x", "more_body": True}] * 5
    sent = run(Bridge(echo, LIMITS, threads=1),
               scope(headers=[(b"content-length", b"90")]), list(messages), pause=0.2)
    assert sent[0]["status"] == 408
    assert (b"connection", b"close") in sent[0]["headers"]
    assert json.loads(body_of(sent))["error"] == "request timeout"


def test_a_chunked_body_over_the_cap_stops_at_cap_plus_one():
    messages = [{"type": "http.request", "body": b"z" * 60, "more_body": True}] * 4
    sent = run(Bridge(echo, LIMITS, threads=1),
               scope(headers=[(b"transfer-encoding", b"chunked")]), list(messages))
    assert len(json.loads(body_of(sent))["body"]) == 120  # the app answers 413 from it


def test_a_client_gone_before_its_body_ends_gets_nothing():
    sent = run(Bridge(echo, LIMITS, threads=1), scope(headers=[(b"content-length", b"50")]),
               [{"type": "http.request", "body": b"x", "more_body": True}])
    assert sent == []


def test_body_rate_settings_from_file_and_environment(make_settings, tmp_path):
    settings = make_settings()
    assert (settings.body_min_rate, settings.body_grace) == (1024, 10)
    assert make_settings(body_min_rate=0, body_grace=60).body_min_rate == 0
    config = tmp_path / "hutch.config"
    loaded = load_settings(config, environ={"HUTCH_BODY_MIN_RATE": "2048",
                                            "HUTCH_BODY_GRACE": "5"})
    assert (loaded.body_min_rate, loaded.body_grace) == (2048, 5)
    with pytest.raises(ConfigError, match=r"^body_min_rate: must be 0 \(no minimum\)"):
        make_settings(body_min_rate=-1)
    with pytest.raises(ConfigError, match="^body_grace: must be between 1 and 3600"):
        make_settings(body_grace=0)
