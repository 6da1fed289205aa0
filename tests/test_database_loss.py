"""A SQLite file that disappears or is swapped under a running server (issue R, item 3).

SQLite keeps writing to a deleted file: without a check, `rm hutch.db*` under a
running server let writes answer 200 that were gone with the process, and the next
start created an empty database. Writes must answer 503, the log must say why, and
the next start must refuse.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys

import pytest
from sqlalchemy import event

from tests.helpers import Api
from tests.test_server import BIND_PROBLEM, Server, auth, free_port, send_json

UNAVAILABLE = {"error": "service unavailable",
               "message": "a backing service is unavailable, try again shortly"}


def _started(folder) -> tuple[Server, str]:
    server = Server(folder, free_port())
    server.start()
    token = server.hutch("token", "--sub", "loss").stdout.strip()
    assert send_json(server, "PUT", "/api/profile", token, {"name": "Loss"}).status_code == 200
    assert send_json(server, "POST", "/api/safe", token, {"name": "before"}).status_code == 200
    return server, token


def _assert_unavailable(answer) -> None:
    assert answer.status_code == 503, (answer.status_code, answer.data[:200])
    assert answer.headers["Content-Type"] == "application/json"
    assert json.loads(answer.data) == UNAVAILABLE
    assert answer.headers["Retry-After"]


@pytest.mark.skipif(BIND_PROBLEM is not None, reason=str(BIND_PROBLEM))
def test_writes_after_rm_of_the_database_answer_503_and_the_next_start_refuses(tmp_path):
    server, token = _started(tmp_path)
    database = tmp_path / "instance" / "hutch.db"
    try:
        for path in database.parent.glob("hutch.db*"):  # rm hutch.db*
            path.unlink()
        for number in range(50):
            _assert_unavailable(send_json(server, "POST", "/api/safe", token,
                                          {"name": f"lost{number}"}))
        _assert_unavailable(send_json(server, "PUT", "/api/profile", token, {"name": "Lost"}))
        _assert_unavailable(server.request("GET", "/api/safe", headers=auth(token)))
    finally:
        server.stop()
    assert f"database unavailable: database file {database} was removed or replaced" \
        in server.output()

    # The keys of that run are still there: starting again must not make an empty database.
    again = subprocess.run(
        [sys.executable, "-m", "hutch.cli", "serve", "--port", str(free_port())],
        cwd=tmp_path, env=server.env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 2, again.stdout + again.stderr
    assert again.stdout == ""
    assert again.stderr.count("\n") == 1, again.stderr
    assert f"the file {database} is missing" in again.stderr
    assert "hutch init" in again.stderr
    assert not database.exists()


@pytest.mark.skipif(BIND_PROBLEM is not None, reason=str(BIND_PROBLEM))
def test_writes_after_the_database_file_is_replaced_answer_503(tmp_path):
    server, token = _started(tmp_path)
    database = tmp_path / "instance" / "hutch.db"
    try:
        copy = database.with_name("copy.db")
        shutil.copyfile(database, copy)
        os.replace(copy, database)  # another file (another inode) at the same path
        for number in range(5):
            _assert_unavailable(send_json(server, "POST", "/api/safe", token,
                                          {"name": f"split{number}"}))
    finally:
        server.stop()
    assert f"database file {database} was removed or replaced" in server.output()


def test_a_read_only_database_is_named_in_the_log(make_app, idp, caplog):
    app = make_app()
    db = app.extensions["hutch"].db
    if db.backend != "sqlite":
        pytest.skip("SQLite's read-only mode; the other servers' causes are named by code")

    def read_only(dbapi_connection, _record):
        dbapi_connection.execute("PRAGMA query_only = 1")

    db.engine.dispose()
    event.listen(db.engine, "connect", read_only)
    try:
        with caplog.at_level(logging.ERROR, logger="hutch.errors"):
            answer = Api(app.test_client(), idp, "dev").put("/api/profile", json={"name": "x"})
    finally:
        event.remove(db.engine, "connect", read_only)
        db.engine.dispose()
    assert answer.status_code == 503
    assert answer.get_json() == UNAVAILABLE
    assert "database unavailable: database is read-only (SQLITE_READONLY)" in caplog.text
