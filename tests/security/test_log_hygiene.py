"""Hygiene (issue 3 item 8): nothing secret in any log line at any level, a request id on
every answer and every log line, security headers on every kind of answer.

Secrets here are access tokens, DPoP proofs, ``Authorization`` values, request bodies
and the ``data``/``picture`` values they carry, each with a recognisable marker.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import socket

import pytest
from sqlalchemy.exc import IntegrityError, OperationalError

from hutch.http import API_CSP
from hutch.signing import generate_jwks
from tests.helpers import Api, IdP
from tests.security.test_auth_dpop import Holder

TEST_NET = "192.0.2.77"
GENERATED_ID = re.compile(r"^[0-9a-f]{24}$")
FORMAT = logging.Formatter("%(levelname)s %(name)s [%(request_id)s] %(message)s")


class Secrets:
    """Recognisable secret strings, and every request's answer, for the final checks."""

    def __init__(self):
        self.values: list[str] = []
        self.answers = []

    def new(self, what: str) -> str:
        value = f"{what}-SECRET-{secrets.token_hex(8)}"
        self.values.append(value)
        return value

    def token(self, token: str) -> str:
        self.values += [token, token.rsplit(".", 1)[-1]]  # whole, and its signature
        return token

    def seen(self, answer):
        self.answers.append(answer)
        return answer


def rendered(record: logging.LogRecord) -> str:
    return " ".join([FORMAT.format(record), repr(record.msg), repr(record.args)])


def assert_nothing_secret(records, kept: Secrets):
    leaks = [(record.name, record.levelname, value[:24]) for record in records
             for value in kept.values if value in rendered(record)]
    assert not leaks, leaks


@pytest.fixture
def app(make_app, caplog):
    """Every logger as talkative as it gets before the app exists: the root logger, and
    SQLAlchemy's (which alone would log statements with their bound parameters)."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")
    caplog.set_level(logging.DEBUG, logger="sqlalchemy.engine")
    return make_app(log_level="DEBUG", max_body_bytes=4096,
                    rate_limit={"failed_auth": "4/minute", "per_user": "500/minute"})


def test_a_representative_flow_logs_no_secret(app, idp, caplog, monkeypatch):
    caplog.clear()
    kept = Secrets()
    client = app.test_client()
    ext = app.extensions["hutch"]
    dev = Api(client, idp, "dev")
    kept.token(dev.token)

    def send(method, path, api=dev, **kwargs):
        return kept.seen(api.request(method, path, **kwargs))

    # Writes and reads carrying secret data.
    picture, data, key_data = kept.new("picture"), kept.new("coin-data"), kept.new("key-data")
    assert send("PUT", "/api/profile", json={"name": "Dev", "picture": picture}).status_code == 200
    assert send("POST", "/api/safe", json={"name": "vault"}).status_code == 200
    assert send("POST", "/api/safe/vault/key", json={"name": "k", "data": key_data}).status_code \
        == 200
    assert send("POST", "/api/safe/vault/coin", json={"name": "c", "data": data}).status_code \
        == 200
    assert send("PUT", "/api/safe/vault/coin/c", json={"data": kept.new("update")}).status_code \
        == 200
    for path in ("/api/profile", "/api/safe/vault/coin/c", "/api/safe/vault/coin",
                 "/api/safe/vault/key/k"):
        assert send("GET", path).status_code == 200
    # Bad input carrying secrets: broken JSON, wrong types, a body over max_body_bytes.
    broken = '{"name": "c2", "data": "' + kept.new("broken-json")
    assert send("POST", "/api/safe/vault/coin", data=broken,
                content_type="application/json").status_code == 400
    assert send("POST", "/api/safe/vault/coin",
                json={"name": "c3", "data": {"x": kept.new("wrong-type")}}).status_code == 400
    assert send("PUT", "/api/safe/vault/coin/c",
                json={"data": kept.new("too-large") * 200}).status_code == 413
    # Refused tokens: garbage, forged, expired, wrong scope, and headers naming them.
    for token in (kept.new("garbage"), IdP().token("dev"), idp.token("dev", exp=1),
                  idp.token("dev", scope="other")):
        kept.token(token)
        assert send("GET", "/api/profile", headers={"Authorization": f"Bearer {token}"}) \
            .status_code in (401, 403)
    # DPoP: a good proof, a replayed one, one for another method.
    holder = Holder(idp, generate_jwks("ES256", "holder")["keys"][0])
    kept.token(holder.token)
    proof = kept.token(holder.proof("GET"))
    assert kept.seen(client.get("/api/profile", headers=holder.headers(proof))).status_code == 200
    assert kept.seen(client.get("/api/profile", headers=holder.headers(proof))).status_code == 401
    wrong = kept.token(holder.proof("PUT"))
    assert kept.seen(client.get("/api/profile", headers=holder.headers(wrong))).status_code == 401
    # The failed-auth limit trips for an address sending bad tokens (logged by flask-limiter).
    for _ in range(5):
        token = kept.token(IdP().token("dev"))
        kept.seen(client.get("/api/profile", headers={"Authorization": f"Bearer {token}"},
                             environ_base={"REMOTE_ADDR": TEST_NET}))
    assert kept.answers[-1].status_code == 429
    # A 500 and a 503 whose exception messages quote the secret data being written.
    leaked = kept.new("in-exception")

    def explode(*_args, **_kwargs):
        raise RuntimeError(f"cannot store {leaked} for {dev.token}")

    def integrity(*_args, **_kwargs):
        raise IntegrityError("INSERT INTO coin VALUES (?)", {"data": leaked}, Exception(leaked))

    def database_gone(*_args, **_kwargs):
        raise OperationalError("SELECT ?", {"data": leaked}, Exception(leaked))

    monkeypatch.setattr(ext.coins, "update_one", explode)
    crash = send("PUT", "/api/safe/vault/coin/c", json={"data": leaked},
                 headers={"X-Request-Id": "hygiene-trace.500"})
    assert crash.status_code == 500 and crash.headers["X-Request-Id"] == "hygiene-trace.500"
    monkeypatch.setattr(ext.coins, "create", integrity)
    assert send("POST", "/api/safe/vault/coin", json={"name": "c9", "data": leaked}).status_code \
        == 500
    monkeypatch.setattr(ext.coins, "get", database_gone)
    gone = send("GET", "/api/safe/vault/coin/c")
    assert gone.status_code == 503

    records = caplog.records
    assert_nothing_secret(records, kept)
    # The logs did see the failures, and each line names the request it belongs to.
    errors = [r for r in records if r.name == "hutch.errors"]
    assert [r.request_id for r in errors] == [
        "hygiene-trace.500", kept.answers[-2].headers["X-Request-Id"],
        gone.headers["X-Request-Id"]]
    assert "RuntimeError (message withheld)" in errors[0].getMessage()
    assert "IntegrityError (message withheld)" in errors[1].getMessage()
    assert any("ratelimit" in r.getMessage() for r in records)
    answered = {answer.headers["X-Request-Id"] for answer in kept.answers}
    assert {r.request_id for r in records} <= answered


def test_sqlalchemy_never_logs_statements_and_parameters(app):
    engine_log = logging.getLogger("sqlalchemy.engine")
    assert engine_log.getEffectiveLevel() >= logging.WARNING
    assert not app.extensions["hutch"].db.engine.echo


# Request ids -------------------------------------------------------------------------


def test_a_request_id_is_made_for_every_answer(client):
    ids = [client.get(path).headers["X-Request-Id"] for path in ("/jwks", "/jwks", "/api/x")]
    assert all(GENERATED_ID.match(rid) for rid in ids) and len(set(ids)) == 3


@pytest.mark.parametrize("incoming", ["abc", "trace-1.2_3", "A" * 64])
def test_a_sane_incoming_request_id_is_kept(client, incoming):
    assert client.get("/jwks", headers={"X-Request-Id": incoming}).headers["X-Request-Id"] \
        == incoming


@pytest.mark.parametrize("incoming", ["", "A" * 65, "a b", "a;b", "a/b", "é", "%0d%0a", "a,b"])
def test_an_odd_incoming_request_id_is_replaced(client, incoming):
    answer = client.get("/jwks", headers={"X-Request-Id": incoming})
    assert GENERATED_ID.match(answer.headers["X-Request-Id"])
    assert answer.headers.getlist("X-Request-Id") == [answer.headers["X-Request-Id"]]


def test_a_forked_worker_makes_request_ids_of_its_own():
    """Workers fork from one master: ids must not repeat across them."""
    import os

    from hutch.http import _new_request_id

    parent = _new_request_id()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one id down the pipe, then out at once
        os.write(write, _new_request_id().encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert GENERATED_ID.match(child) and child[:16] != parent[:16]


def test_log_records_outside_requests_say_so(caplog, app):
    caplog.set_level(logging.INFO)
    logging.getLogger("hutch.test").info("outside")
    assert caplog.records[-1].request_id == "-"


# Security headers on every kind of answer --------------------------------------------


def _every_kind(app, idp, monkeypatch, tmp_path) -> dict[str, object]:
    client = app.test_client()
    dev = Api(client, idp, "dev")
    auth = {"Authorization": f"Bearer {dev.token}"}
    bad = {"Authorization": "Bearer x.y.z"}
    answers = {"403 profile not set": client.get("/api/safe", headers=auth)}
    dev.put("/api/profile", json={"name": "Dev"})
    dev.post("/api/safe", json={"name": "vault"})
    answers.update({
        "200 signed": client.get("/api/profile", headers=auth),
        "200 write": client.put("/api/profile", headers=auth, json={"name": "Dev"}),
        "200 unrouted no-op": client.post("/api/profile", headers=auth),
        "200 configuration": client.get("/.well-known/hutch-configuration"),
        "200 jwks": client.get("/jwks"),
        "200 openapi": client.get("/openapi.json"),
        "200 preflight": client.options("/api/profile"),
        "400 validation": client.post("/api/safe", headers=auth, json={}),
        "401 no token": client.get("/api/profile"),
        "401 bad token": client.get("/api/profile", headers=bad),
        "403 scope": client.get("/api/profile", headers={
            "Authorization": f"Bearer {idp.token('dev', scope='other')}"}),
        "404 api": client.get("/api/safe/none", headers=auth),
        "404 outside the prefix": client.get("/nothing.html"),
        "405 outside the prefix": client.post("/jwks"),
        "413": client.put("/api/profile", headers=auth, data=b"x" * 5000,
                          content_type="application/json"),
    })
    for _ in range(3):
        client.get("/api/profile", headers=bad, environ_base={"REMOTE_ADDR": TEST_NET})
    answers["429"] = client.get("/api/profile", headers=bad,
                                environ_base={"REMOTE_ADDR": TEST_NET})
    ext = app.extensions["hutch"]

    def explode(*_args, **_kwargs):
        raise RuntimeError("boom")

    def database_gone(*_args, **_kwargs):
        raise OperationalError("SELECT 1", {}, Exception("gone"))

    monkeypatch.setattr(ext.coins, "list_all", explode)
    answers["500"] = client.get("/api/safe/vault/coin", headers=auth)
    monkeypatch.setattr(ext.coins, "list_all", database_gone)
    answers["503"] = client.get("/api/safe/vault/coin", headers=auth)
    return answers


EXPECTED = {"400": 400, "401": 401, "403": 403, "404": 404, "405": 404, "413": 413, "429": 429,
            "500": 500, "503": 503, "200": 200}


def test_security_headers_on_every_kind_of_answer(make_app, idp, monkeypatch, tmp_path):
    app = make_app(max_body_bytes=4096, rate_limit={"failed_auth": "3/minute"})
    for name, answer in _every_kind(app, idp, monkeypatch, tmp_path).items():
        assert answer.status_code == EXPECTED[name.split()[0]], (name, answer.status_code)
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", name
        assert answer.headers.get("Referrer-Policy") == "no-referrer", name
        assert answer.headers.get("Content-Security-Policy") == API_CSP, name
        assert answer.headers.get("Cache-Control") == "no-store", name
        assert GENERATED_ID.match(answer.headers.get("X-Request-Id", "")), name


def test_web_app_files_keep_nosniff_without_the_api_policy(make_app, tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    (site / "index.html").write_text("<!doctype html><script src=app.js></script>")
    client = make_app(app_files_path=str(site)).test_client()
    page = client.get("/index.html")
    assert page.status_code == 200
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert page.headers["Referrer-Policy"] == "no-referrer"
    assert "Content-Security-Policy" not in page.headers  # the front end runs its scripts
    missing = client.get("/missing.js")
    assert missing.status_code == 404
    assert missing.headers["Content-Security-Policy"] == API_CSP


def test_headers_survive_an_answer_that_skipped_the_flask_hooks(make_app, caplog):
    """If an after-request hook fails, Flask answers without the others: the WSGI layer
    still adds the security headers and the request id."""
    app = make_app()
    app.testing = False  # answer the failure, as in production, instead of raising it

    @app.after_request
    def broken(_response):
        raise RuntimeError("a hook failed")

    caplog.set_level(logging.CRITICAL)
    answer = app.test_client().get("/jwks")
    assert answer.status_code == 500
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Referrer-Policy"] == "no-referrer"
    assert answer.headers["Content-Security-Policy"] == API_CSP
    assert GENERATED_ID.match(answer.headers["X-Request-Id"])


# A real server: the access log and granian's own log -------------------------------------


def _raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_served_logs_carry_request_ids_and_no_secrets(tmp_path):
    from tests.test_server import BIND_PROBLEM, Server, free_port

    if BIND_PROBLEM:
        pytest.skip(BIND_PROBLEM)
    server = Server(tmp_path, free_port())
    server.start()
    try:
        token = server.hutch("token", "--sub", "logs").stdout.strip()
        kept = Secrets()
        kept.token(token)
        data = kept.new("served-data")
        auth = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        assert server.request("PUT", "/api/profile", json.dumps({"name": "L"}).encode(),
                              {**auth, "X-Request-Id": "served-1"}).status_code == 200
        assert server.request("POST", "/api/safe", json.dumps({"name": "v"}).encode(),
                              auth).status_code == 200
        answer = server.request("POST", "/api/safe/v/coin",
                                json.dumps({"name": "c", "data": data}).encode(), auth)
        assert answer.status_code == 200
        generated = answer.headers["X-Request-Id"]
        query = kept.new("query-token")
        assert server.request("GET", f"/api/profile?access_token={query}").status_code == 401
        garbage = kept.new("garbage")
        assert server.request("GET", "/api/profile",
                              headers={"Authorization": f"Bearer {garbage}"}).status_code == 401
        # What the HTTP server cannot parse never reaches the log with its text: a header
        # line without its colon, a broken request line.
        header_line = kept.new("headerline")
        assert b" 400 " in _raw(server.port, (
            f"GET /api/profile HTTP/1.1\r\nHost: x\r\nAuthorization Bearer {header_line}\r\n"
            "\r\n").encode())
        request_line = kept.new("requestline")
        assert b" 400 " in _raw(server.port, (
            f"GET /api/profile?t={request_line} HTTP/1.1 extra\r\nHost: x\r\n\r\n").encode())
    finally:
        server.stop()
    output = server.output()
    leaks = [value[:24] for value in kept.values if value in output]
    assert not leaks, leaks
    access = [line for line in output.splitlines() if '"PUT /api/profile' in line]
    assert access and access[0].endswith("rid=served-1"), access
    assert any(line.endswith(f"rid={generated}") for line in output.splitlines())
