"""DPoP replay across worker processes (HUTCH-API.md §4.4; RFC 9449 §11.1; issue 3 item 2).

A real ``hutch serve --workers 2``: every proof is accepted once, whichever
worker sees it first, and refused (401 ``invalid_dpop_proof``) on every other
worker and connection after that, also when the copies arrive at the same time.
Which worker answered is read from /proc (the process owning the server side of
the TCP connection), to show that replays did reach both workers.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path

import pytest
from requests.structures import CaseInsensitiveDict

from hutch.jose import json_bytes, sign_compact
from hutch.signing import generate_jwks
from tests.databases import BACKENDS, fresh_database, unavailable
from tests.helpers import decode_signed
from tests.security.live import Answer, LiveHutch
from tests.security.test_auth_dpop import ath, thumbprint
from tests.security.test_auth_tokens import parse_challenge, private_key

PATH = "/api/profile"
ROUNDS = 12        # fresh proofs, each accepted once then replayed
REPLAYS = 4        # sequential replays of each, each on a new connection
RACERS = 4         # copies of one proof sent at the same moment


class Holder:
    def __init__(self, idp, server: LiveHutch):
        jwk = generate_jwks("ES256", "holder")["keys"][0]
        self.key = private_key(jwk)
        self.jwk = {k: jwk[k] for k in ("crv", "kty", "x", "y")}
        self.token = idp.token("dpop-workers", cnf={"jkt": thumbprint(self.jwk)})
        self.server = server

    def proof(self, method: str, path: str = PATH) -> str:
        header = {"typ": "dpop+jwt", "alg": "ES256", "jwk": self.jwk}
        claims = {"jti": secrets.token_urlsafe(16), "htm": method,
                  "htu": self.server.external_url + path.lstrip("/"), "iat": int(time.time()),
                  "ath": ath(self.token)}
        return sign_compact(header, json_bytes(claims), self.key).decode("ascii")

    def send(self, method: str, proof: str, document=None) -> tuple[Answer, int | None]:
        """The answer, and the pid of the worker that gave it; on a new connection."""
        headers = {"Authorization": f"DPoP {self.token}", "DPoP": proof}
        body = None
        if document is not None:
            body, headers["Content-Type"] = json.dumps(document).encode(), "application/json"
        conn = self.server.connect()
        try:
            conn.request(method, PATH, body=body, headers=headers)
            response = conn.getresponse()
            data = response.read()
            pid = worker_of(conn, self.server)  # keep-alive: the connection is still open
            return Answer(response.status, CaseInsensitiveDict(response.getheaders()), data), pid
        finally:
            conn.close()


def _hex_port(address: str) -> int:
    return int(address.rsplit(":", 1)[1], 16)


def worker_of(conn, server: LiveHutch) -> int | None:
    """The worker process holding the server end of ``conn`` (Linux /proc), else None."""
    if not Path("/proc/net/tcp").exists() or conn.sock is None:
        return None
    client_port = conn.sock.getsockname()[1]
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if _hex_port(fields[1]) == server.port and _hex_port(fields[2]) == client_port:
            inode = fields[9]
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if _parent(proc) != server.process.pid:
                continue
            for fd in (proc / "fd").iterdir():
                if fd.readlink().as_posix() == target:
                    return int(proc.name)
        except OSError:
            continue
    return None


def _parent(proc: Path) -> int | None:
    try:
        return int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        return None


def assert_replay_refused(answer: Answer) -> None:
    assert answer.status == 401, (answer.status, answer.data[:300])
    assert answer.json()["error"] == "invalid_dpop_proof"
    scheme, params = parse_challenge(answer.headers["WWW-Authenticate"])
    assert scheme == "DPoP" and dict(params)["error"] == "invalid_dpop_proof", answer.headers


PROC = Path("/proc/net/tcp").exists()  # where the answering worker can be seen


@pytest.fixture(scope="module", params=BACKENDS)
def server(request, idp, tmp_path_factory):
    """One server per backend for the module: each test uses fresh proofs."""
    reason = unavailable(request.param)
    if reason:
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("dpop-" + request.param)
    with fresh_database(request.param, folder) as url:
        running = LiveHutch(folder / "serve", idp, url, workers=2).start()
        try:
            yield running
        finally:
            running.stop()


def test_a_proof_is_accepted_once_across_two_workers(server, idp):
    holder = Holder(idp, server)
    answer, _ = holder.send("PUT", holder.proof("PUT"), {"name": "first"})
    assert answer.status == 200, answer.data
    served_first, refused_by = set(), set()
    for _ in range(ROUNDS):
        proof = holder.proof("GET")
        answer, pid = holder.send("GET", proof)
        assert answer.status == 200, answer.data
        served_first.add(pid)
        for _ in range(REPLAYS):
            answer, pid = holder.send("GET", proof)
            assert_replay_refused(answer)
            refused_by.add(pid)
    if PROC:
        # ROUNDS × (1 + REPLAYS) connections over 2 workers: both take some, almost surely.
        assert len(served_first | refused_by) == 2, (served_first, refused_by)
        assert len(refused_by) == 2, f"replays reached only worker {refused_by}"


def test_copies_of_a_proof_sent_at_once_are_accepted_once(server, idp):
    holder = Holder(idp, server)
    assert holder.send("PUT", holder.proof("PUT"), {"name": "first"})[0].status == 200
    workers = set()
    for _ in range(ROUNDS // 2):
        proof = holder.proof("GET")
        gate = threading.Barrier(RACERS)
        results: list[tuple[Answer, int | None]] = []

        def race(proof=proof, gate=gate, results=results) -> None:
            gate.wait()
            results.append(holder.send("GET", proof))

        threads = [threading.Thread(target=race) for _ in range(RACERS)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        statuses = sorted(answer.status for answer, _ in results)
        assert statuses == [200] + [401] * (RACERS - 1), [(a.status, a.data) for a, _ in results]
        for answer, pid in results:
            workers.add(pid)
            if answer.status == 401:
                assert_replay_refused(answer)
    # Which worker answered is read from /proc after the fact and can be missed when a
    # connection closes first; the sequential test above shows both workers refusing.
    if PROC:
        assert workers - {None}, workers


def test_a_replayed_write_changes_nothing(server, idp):
    holder = Holder(idp, server)
    proof = holder.proof("PUT")
    assert holder.send("PUT", proof, {"name": "kept"})[0].status == 200
    for _ in range(REPLAYS):
        assert_replay_refused(holder.send("PUT", proof, {"name": "replayed"})[0])
    answer, _ = holder.send("GET", holder.proof("GET"))
    jwks = server.request("GET", "/jwks").json()
    assert decode_signed(answer, jwks).payload["name"] == "kept"
