"""``python -m bench.serving --old PATH``: the slow-client attack of issue 10 item 1, the
server of this tree against another tree's (``git worktree add --detach PATH main``),
side by side in one run, plus profile GET throughput and CPU per request (wrk).

Each server: ``hutch serve --workers 2`` on a fresh embedded default (SQLite). One user
(the attacker) stores a 16 MiB coin, then holds 64 uploads sending one body byte every
3 s (reconnecting when the server cuts one off) and 16 readers of that coin taking
1 KiB a second. Meanwhile 4 other users GET their profile in a loop (5 s timeout each);
their latency is the figure. Printed as a markdown table for bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import suppress
from pathlib import Path

import uvloop

from bench import proc, wrk
from bench.client import Client
from bench.targets import READY_PATH, free_port
from hutch.asgi import Bridge, Limits, wsgi_environ

HERE = Path(__file__).resolve().parents[1]
BIG_COIN = 16 * 1024 * 1024 - 1
UPLOADS, READERS, VICTIMS = 64, 16, 4


class Served:
    """``hutch serve`` from one source tree on a fresh embedded default."""

    def __init__(self, label: str, source: Path, folder: Path):
        self.label, self.source, self.folder = label, source, folder
        self.port = free_port()
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
        self.env.update(HUTCH_INSTANCE=str(folder / "instance"), PYTHONPATH=str(source))
        self.client = Client("127.0.0.1", self.port, timeout=60)
        self.process: subprocess.Popen | None = None

    def hutch(self, *args: str) -> str:
        return subprocess.run([sys.executable, "-m", "hutch.cli", *args], cwd=self.source,
                              env=self.env, capture_output=True, text=True,
                              check=True).stdout.strip()

    def start(self) -> None:
        with (self.folder / "server.log").open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "hutch.cli", "serve", "--port", str(self.port),
                 "--workers", "2"], cwd=self.source, env=self.env, stdout=log,
                stderr=subprocess.STDOUT, start_new_session=True)
        self.client.wait_ready(READY_PATH, 60, lambda: self.process.poll() is None)

    def stop(self) -> None:
        self.client.close()
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(60)

    def user(self, sub: str) -> str:
        token = self.hutch("token", "--sub", sub)
        self.client.api("PUT", "profile", token, {"name": sub})
        return token


class Attack:
    """64 slow uploads and 16 slow readers of one user, in one thread."""

    def __init__(self, served: Served, token: str):
        self.port = served.port
        self.put = (f"PUT /api/safe/big/coin/c1 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                    f"{token}\r\nContent-Type: application/json\r\nContent-Length: 1000"
                    "\r\n\r\n{").encode()
        self.get = (f"GET /api/safe/big/coin/c1 HTTP/1.1\r\nHost: x\r\n"
                    f"Authorization: Bearer {token}\r\n\r\n").encode()
        self.stop = threading.Event()
        self.cut_off = 0  # uploads the server closed (408 after body_grace), reopened
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _open(self, reader: bool) -> socket.socket:
        sock = socket.socket()
        if reader:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(0.05)
        sock.connect(("127.0.0.1", self.port))
        sock.sendall(self.get if reader else self.put)
        return sock

    def _run(self) -> None:
        uploads = [self._open(False) for _ in range(UPLOADS)]
        readers = [self._open(True) for _ in range(READERS)]
        tick = 0
        while not self.stop.wait(1):
            tick += 1
            for sock in readers:
                with suppress(OSError):
                    sock.recv(1024)
            for index, sock in enumerate(uploads):
                try:
                    if sock.recv(65536, socket.MSG_DONTWAIT | socket.MSG_PEEK):
                        raise ConnectionError  # an answer (408): the server cut it off
                except (BlockingIOError, TimeoutError):
                    if tick % 3 == 0:
                        with suppress(OSError):
                            sock.send(b" ")
                    continue
                except OSError:
                    pass
                sock.close()
                self.cut_off += 1
                uploads[index] = self._open(False)
        for sock in uploads + readers:
            sock.close()

    def __enter__(self) -> Attack:
        self.thread.start()
        time.sleep(3)  # all open, uploads waiting, readers stuck
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def victims_latency(served: Served, tokens: list[str], seconds: float) -> dict[str, float]:
    """Other users GET their profile in a loop: p50, p99, max (ms) and timeouts."""
    took: list[float] = []
    failed = [0]
    deadline = time.monotonic() + seconds

    def loop(token: str) -> None:
        client = Client("127.0.0.1", served.port, timeout=5)
        while time.monotonic() < deadline:
            started = time.monotonic()
            try:
                client.api("GET", "profile", token)
                took.append(time.monotonic() - started)
            except OSError:
                failed[0] += 1
        client.close()

    threads = [threading.Thread(target=loop, args=(t,)) for t in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    took.sort()
    pick = (lambda q: took[min(len(took) - 1, int(len(took) * q))] * 1000) if took else \
        (lambda q: float("nan"))
    return {"n": len(took), "p50": pick(0.5), "p99": pick(0.99),
            "max": took[-1] * 1000 if took else float("nan"), "timeouts": failed[0]}


def seed(served: Served) -> tuple[str, list[str]]:
    """The attacker with its 16 MiB coin, and the other users."""
    attacker = served.user("attacker")
    victims = [served.user(f"victim{i}") for i in range(VICTIMS)]
    served.client.api("POST", "safe", attacker, {"name": "big"})
    served.client.api("POST", "safe/big/coin", attacker, {"name": "c1", "data": "x" * BIG_COIN})
    return attacker, victims


def throughput(served: Served, token: str, script: Path, seconds: float) -> tuple:
    """One wrk round of profile GETs at c=16: req/s, p99 ms, server CPU µs a request."""
    cpu_before = proc.tree_cpu_seconds(served.process.pid)
    result = wrk.run(f"http://127.0.0.1:{served.port}/api/profile", script, ["GET"], token,
                     connections=16, threads=2, duration=seconds)
    cpu = proc.tree_cpu_seconds(served.process.pid) - cpu_before
    return result.rps, result.p99_ms, cpu / max(1, result.requests) * 1e6


def attacked(served: Served, attacker: str, victims: list[str], seconds: float) -> dict:
    with Attack(served, attacker) as attack:
        rss = proc.RssSampler(lambda: proc.descendants(served.process.pid), interval=0.2)
        with rss:
            latency = victims_latency(served, victims, seconds)
    return {"attacked": latency, "cut_off": attack.cut_off,
            "rss_mib": sum(rss.peak.values()) / 1024, "load": os.getloadavg()[0]}


def measure(servers: list[Served], scripts: dict[str, Path], seconds: float,
            rounds: int) -> dict[str, dict[str, object]]:
    """Both servers run at once: wrk rounds alternate between them (the machine's noise
    hits both alike), then each is attacked in turn, this tree's first."""
    users = {s.label: seed(s) for s in servers}
    results: dict[str, dict[str, object]] = {
        s.label: {"quiet": victims_latency(s, users[s.label][1], seconds)} for s in servers}
    rows: dict[str, list[tuple]] = {s.label: [] for s in servers}
    for _ in range(rounds):
        for s in servers:
            rows[s.label].append(throughput(s, users[s.label][1][0], scripts["static"], seconds))
    for s in servers:
        runs = sorted(rows[s.label])
        middle = runs[len(runs) // 2]
        results[s.label].update(rps=middle[0], p99_wrk=middle[1],
                                cpu_us=sorted(r[2] for r in runs)[len(runs) // 2])
    for s in reversed(servers):
        results[s.label].update(attacked(s, *users[s.label], seconds))
        print(f"{s.label}: {results[s.label]}", file=sys.stderr, flush=True)
    return results


def hop_cost(requests: int = 20000) -> tuple[float, float]:
    """µs per request of a trivial WSGI app called directly, and through the bridge on
    uvloop (fake receive/send, one pool thread): what the ASGI hop itself costs."""
    def app(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", "2")])
        return [b"ok"]

    scope = {"type": "http", "http_version": "1.1", "method": "GET", "path": "/jwks",
             "raw_path": b"/jwks", "query_string": b"", "headers": [(b"host", b"x")],
             "server": ("127.0.0.1", 4884), "client": ("127.0.0.1", 5000), "scheme": "http"}
    bridge = Bridge(app, Limits(512 * 1024, 1024, 1024, 10), threads=1)
    bridge.start()

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_message):
        return None

    async def through_bridge() -> float:
        started = time.perf_counter()
        for _ in range(requests):
            await bridge(scope, receive, send)
        return time.perf_counter() - started

    started = time.perf_counter()
    for _ in range(requests):
        b"".join(app(wsgi_environ(scope, b""), lambda status, headers: None))
    direct = time.perf_counter() - started
    bridged = uvloop.run(through_bridge())
    return direct / requests * 1e6, bridged / requests * 1e6


def _ms(value: float, digits: int = 1) -> str:
    return "none answered" if value != value else f"{value:,.{digits}f}"  # NaN: no answer


def table(results: dict[str, dict[str, object]]) -> str:
    rows = [
        ("other users' GET p50, no attack (ms)", lambda r: _ms(r['quiet']['p50'])),
        ("other users' GET p99, no attack (ms)", lambda r: _ms(r['quiet']['p99'])),
        ("other users' GET p50, under attack (ms)", lambda r: _ms(r['attacked']['p50'])),
        ("other users' GET p99, under attack (ms)", lambda r: _ms(r['attacked']['p99'])),
        ("other users' GET max, under attack (ms)", lambda r: _ms(r['attacked']['max'], 0)),
        ("GETs answered / timed out (5 s), under attack",
         lambda r: f"{r['attacked']['n']} / {r['attacked']['timeouts']}"),
        ("slow uploads cut off (408) and reopened", lambda r: f"{r['cut_off']}"),
        ("server RSS under attack, all processes (MiB)", lambda r: f"{r['rss_mib']:.0f}"),
        ("profile GET, wrk c=16, median of rounds (req/s)", lambda r: f"{r['rps']:,.0f}"),
        ("profile GET p99, wrk c=16 (ms)", lambda r: f"{r['p99_wrk']:.1f}"),
        ("server CPU per profile GET (µs)", lambda r: f"{r['cpu_us']:.0f}"),
        ("machine load average (1 min) after its attack", lambda r: f"{r['load']:.1f}"),
    ]
    labels = list(results)
    lines = ["| | " + " | ".join(labels) + " |", "|---|" + "--:|" * len(labels)]
    lines += [f"| {name} | " + " | ".join(cell(results[label]) for label in labels) + " |"
              for name, cell in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serving", description=__doc__)
    parser.add_argument("--old", type=Path, required=True,
                        help="source tree of the server to compare with (a git worktree)")
    parser.add_argument("--seconds", type=float, default=10, help="each measurement (10)")
    parser.add_argument("--rounds", type=int, default=3,
                        help="wrk rounds per server, alternating; the median is shown (3)")
    args = parser.parse_args(argv)
    wrk.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="hutch-serving-") as work:
        scripts = wrk.write_scripts(Path(work))
        servers = []
        for index, (label, source) in enumerate(
                (("before (" + args.old.name + ")", args.old.resolve()),
                 ("after (this tree)", HERE))):
            folder = Path(work) / f"s{index}"
            folder.mkdir()
            servers.append(Served(label, source, folder))
        try:
            for served in servers:
                served.start()
            results = measure(servers, scripts, args.seconds, args.rounds)
        finally:
            for served in servers:
                served.stop()
    print(table(results))
    direct, bridged = hop_cost()
    print(f"\nASGI hop, in-process on uvloop: {bridged - direct:.0f} µs a request "
          f"({direct:.1f} µs calling a trivial WSGI app directly, {bridged:.1f} µs through "
          "hutch/asgi.py)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
