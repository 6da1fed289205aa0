"""The servers under test: ``hutch serve``, and optionally the original C server, each on a
fresh SQLite file or a fresh MariaDB database."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from bench import proc
from bench.client import Client

ISSUER = "https://idp.bench.invalid/"
READY_PATH = "/.well-known/hutch-configuration"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def hutch_command() -> str:
    beside = Path(sys.executable).with_name("hutch")
    return str(beside) if beside.exists() else (shutil.which("hutch") or "hutch")


# -- databases --------------------------------------------------------------------------


@dataclass
class MariaDBServer:
    host: str = "127.0.0.1"
    port: int = 3306
    user: str = "root"
    password: str = ""

    @classmethod
    def from_url(cls, url: str) -> MariaDBServer:
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
        return cls(parsed.host or "127.0.0.1", parsed.port or 3306, parsed.username or "root",
                   parsed.password or "")

    def connect(self, database: str | None = None):
        import pymysql

        return pymysql.connect(host=self.host, port=self.port, user=self.user,
                               password=self.password, database=database, connect_timeout=3,
                               autocommit=True)

    def unavailable(self) -> str | None:
        try:
            self.connect().close()
        except Exception as exc:  # noqa: BLE001 - any failure means "not here"
            return f"MariaDB not reachable at {self.host}:{self.port}: {str(exc)[:200]}"
        return None


class Database:
    """A fresh SQLite file, or a fresh MariaDB database dropped by ``drop()``."""

    def __init__(self, backend: str, folder: Path, mariadb: MariaDBServer | None):
        self.backend = backend
        self.mariadb = mariadb
        if backend == "sqlite":
            self.path = folder / "hutch.db"
            self.name = None
        else:
            self.path = None
            self.name = "hutch_bench_" + secrets.token_hex(5)
            with mariadb.connect() as conn, conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE {self.name} CHARACTER SET utf8mb4")

    def sqlalchemy_url(self) -> str:
        if self.backend == "sqlite":
            return f"sqlite:///{self.path}"
        m = self.mariadb
        auth = m.user + (f":{m.password}" if m.password else "")
        return f"mysql+pymysql://{auth}@{m.host}:{m.port}/{self.name}?charset=utf8mb4"

    def run_script(self, script: str) -> None:
        """Apply a plain SQL schema file (the original's docs/hutch.*.sql)."""
        if self.backend == "sqlite":
            with sqlite3.connect(self.path) as conn:
                conn.executescript(script)
            return
        lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
        with self.mariadb.connect(self.name) as conn, conn.cursor() as cur:
            for statement in "\n".join(lines).split(";"):
                if statement.strip():
                    cur.execute(statement)

    def drop(self) -> None:
        if self.backend == "mariadb" and self.name:
            with self.mariadb.connect() as conn, conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS {self.name}")
            self.name = None


# -- servers ----------------------------------------------------------------------------


class Target:
    """One server process on one database; ``label`` names it in the tables."""

    label = "?"

    def __init__(self, folder: Path, database: Database, sign_jwks: Path, idp_jwks: Path):
        self.folder = folder
        self.database = database
        self.sign_jwks = sign_jwks
        self.idp_jwks = idp_jwks
        self.port = free_port()
        self.log = folder / "server.log"
        self.process: subprocess.Popen | None = None
        self.client = Client("127.0.0.1", self.port)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command(), stdout=log, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, cwd=self.folder,
                                            start_new_session=True)
        try:
            self.client.wait_ready(READY_PATH, 60, lambda: self.process.poll() is None)
        except RuntimeError as exc:
            self.stop()
            raise RuntimeError(f"{self.label}: {exc}; its log:\n{self.tail_log()}") from None

    def stop(self) -> None:
        self.client.close()
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=40)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def tail_log(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    @property
    def root_pid(self) -> int:
        return self.process.pid

    def workers(self) -> list[int]:
        """The processes that answer requests (memory is read from these)."""
        return [self.root_pid]

    def cpu_seconds(self) -> float:
        return proc.tree_cpu_seconds(self.root_pid)


class HutchTarget(Target):
    label = "hutch"

    def __init__(self, folder: Path, database: Database, sign_jwks: Path, idp_jwks: Path,
                 workers: int):
        super().__init__(folder, database, sign_jwks, idp_jwks)
        self.n_workers = workers
        self.config = folder / "hutch.config"
        self.config.write_text(
            f'port = {self.port}\n'
            f'bind_address = "127.0.0.1"\n'
            f'api_prefix = "api"\n'
            f'external_url = "http://127.0.0.1:{self.port}/"\n'
            f'allow_origin = "*"\n'
            f'hutch_scope = "hutch"\n'
            f'sign_key = {json.dumps(str(sign_jwks))}\n'
            f'sign_exp = 600\n'
            f'\n[database]\nurl = {json.dumps(database.sqlalchemy_url())}\n'
            f'\n[oidc]\nserver_public_jwks = {json.dumps(str(idp_jwks))}\n'
            f'iss = {json.dumps(ISSUER)}\n')
        done = subprocess.run([hutch_command(), "init", "--config", str(self.config)],
                              capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"hutch init failed: {done.stderr.strip() or done.stdout}")

    def command(self) -> list[str]:
        return [hutch_command(), "serve", "--config", str(self.config),
                "--workers", str(self.n_workers)]

    def workers(self) -> list[int]:
        # granian's main process is the `hutch serve` process itself; workers are its children.
        return [pid for pid in proc.descendants(self.root_pid) if pid != self.root_pid]


def find_original_schema(binary: Path, backend: str, explicit: Path | None) -> Path:
    name = {"sqlite": "hutch.sqlite3.sql", "mariadb": "hutch.mariadb.sql"}[backend]
    places = [explicit] if explicit else [binary.parent / "docs", binary.parent.parent / "docs",
                                          binary.parent]
    for place in places:
        if place and (place / name).is_file():
            return place / name
    raise SystemExit(f"bench: the original's schema {name} was not found in "
                     f"{', '.join(str(p) for p in places if p)} (use --original-sql DIR)")


class OriginalTarget(Target):
    """The original C server (babelouest/hutch), configured with a libconfig file."""

    label = "original"

    def __init__(self, folder: Path, database: Database, sign_jwks: Path, idp_jwks: Path,
                 binary: Path, schema: Path):
        super().__init__(folder, database, sign_jwks, idp_jwks)
        self.binary = binary
        database.run_script(schema.read_text())
        self.config = folder / "hutch.conf"
        if database.backend == "sqlite":
            db = f'type = "sqlite3";\n  path = {json.dumps(str(database.path))};'
        else:
            m = database.mariadb
            db = (f'type = "mariadb";\n  host = "{m.host}";\n  user = "{m.user}";\n'
                  f'  password = "{m.password}";\n  dbname = "{database.name}";\n'
                  f'  port = {m.port};')
        self.config.write_text(
            f'port = {self.port}\n'
            f'api_prefix = "api"\n'
            f'external_url = "http://127.0.0.1:{self.port}/"\n'
            f'allow_origin = "*"\n'
            f'log_mode = "console"\n'
            f'log_level = "ERROR"\n'
            f'hutch_scope = "hutch"\n'
            f'sign_key = {json.dumps(str(sign_jwks))}\n'
            f'sign_exp = 600\n'
            f'database =\n{{\n  {db}\n}};\n'
            f'oidc =\n{{\n  server_public_jwks = {json.dumps(str(idp_jwks))};\n'
            f'  iss = {json.dumps(ISSUER)};\n}};\n')

    def command(self) -> list[str]:
        return [str(self.binary), f"--config-file={self.config}"]
