"""``hutch backup`` / ``hutch restore`` through the CLI, checked through signed GETs.

A backup moves every user's data between SQLite, MariaDB and PostgreSQL unchanged
(ids included); a backup taken under 16 writing clients holds every write answered
before it started and is consistent; every refusal is one line, exit 2, nothing written.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import pty
import re
import secrets
import stat
import subprocess
import sys
import threading
import time
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from sqlalchemy import create_engine, func, inspect, select, text

from hutch import create_app
from hutch.cli import main
from hutch.settings import load_settings
from hutch.store import migrate
from hutch.store.db import DatabaseSettings, create_db_engine
from hutch.store.schema import metadata
from tests.databases import BACKENDS, fresh_database, unavailable
from tests.helpers import ISSUER, Api, decode_signed
from tests.security.live import LiveHutch

BACKED_UP = [table for table in metadata.sorted_tables if table.name != "h_dpop_jti"]
PAIRS = [(a, b) for a in BACKENDS for b in BACKENDS if a != b]
USERS = ("alice", "bob", "carol")


def _need(*backends: str) -> None:
    for backend in backends:
        reason = unavailable(backend)
        if reason:
            pytest.skip(reason)


def _config(folder: Path, key_files, url: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"hutch-{secrets.token_hex(3)}.config"
    path.write_text("\n".join([
        'api_prefix = "api"', 'external_url = "http://localhost:4884/"',
        'hutch_scope = "hutch"', f"sign_key = {json.dumps(str(key_files['sign']))}",
        "[database]", f"url = {json.dumps(url)}", "[oidc]",
        f"server_public_jwks = {json.dumps(str(key_files['idp']))}",
        f"iss = {json.dumps(ISSUER)}"]) + "\n")
    return path


@pytest.fixture(autouse=True)
def _no_hutch_environment(monkeypatch):
    for name in [name for name in os.environ if name.startswith("HUTCH_")]:
        monkeypatch.delenv(name)


def hutch(*args: str) -> subprocess.CompletedProcess:
    """The ``hutch`` command's ``main`` in this process (a subprocess costs a second here)."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        status = main(list(args))
    return subprocess.CompletedProcess(args, status, out.getvalue(), err.getvalue())


def hutch_process(*args: str, stderr=subprocess.PIPE) -> subprocess.CompletedProcess:
    """The ``hutch`` command in its own process, as an operator runs it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUTCH_")}
    return subprocess.run([sys.executable, "-m", "hutch.cli", *args], env=env, text=True,
                          stdout=subprocess.PIPE, stderr=stderr, timeout=300, check=False)


def _app(config: Path):
    app = create_app(load_settings(config, environ={}))
    app.testing = True
    return app


def _fill(client, idp) -> None:
    """Three users with profiles, safes, keys, coins, and some deletions, over HTTP."""
    for number, sub in enumerate(USERS):
        api = Api(client, idp, sub)
        assert api.put("/api/profile", json={"name": f"{sub} ✓", "message": "hé\u2028",
                                             "picture": "p" * 300, "sign_kid": "ES256"}
                       ).status_code == 200
        for safe in ("s1", "s2", "gone"):
            assert api.post("/api/safe", json={"name": safe, "display_name": f"Safe {safe} é",
                                               "enc_type": "A256GCM", "alg_type": "RSA-OAEP"}
                            ).status_code == 200
            assert api.post(f"/api/safe/{safe}/key", json={
                "name": "k1", "type": "jwk", "display_name": "Key", "data": "kd" * 50}
            ).status_code == 200
            for coin in range(number + 2):
                assert api.post(f"/api/safe/{safe}/coin", json={
                    "name": f"c{coin}", "data": secrets.token_urlsafe(200)}).status_code == 200
        assert api.put("/api/safe/s1/coin/c1", json={"data": "updated"}).status_code == 200
        assert api.delete("/api/safe/s1/coin/c0").status_code == 200
        assert api.delete("/api/safe/gone").status_code == 200


def _view(client, idp) -> dict:
    """Every signed GET each user can make: profile, safes, keys and coins (lists and items)."""
    seen: dict = {}
    for sub in USERS:
        api = Api(client, idp, sub)
        seen[sub] = {"profile": api.get("/api/profile").payload,
                     "safes": api.get("/api/safe").payload}
        for safe in seen[sub]["safes"]["list"]:
            name = safe["name"]
            seen[sub][name] = api.get(f"/api/safe/{name}").payload
            for kind in ("key", "coin"):
                listed = api.get(f"/api/safe/{name}/{kind}").payload
                seen[sub][f"{name}/{kind}"] = listed
                for item in listed["list"]:
                    path = f"/api/safe/{name}/{kind}/{item['name']}"
                    seen[sub][path] = api.get(path).payload
    return seen


def _rows(url: str) -> dict[str, list[tuple]]:
    """Every row of every backed-up table, in primary key order, ids included."""
    engine = create_db_engine(DatabaseSettings(url=url))
    try:
        with engine.connect() as conn:
            conn = conn.execution_options(hutch_readonly=True)
            return {table.name: [tuple(row) for row in conn.execute(
                select(table).order_by(*table.primary_key.columns))] for table in BACKED_UP}
    finally:
        engine.dispose()


def _table_count(url: str) -> int:
    engine = create_engine(url)
    try:
        return len(inspect(engine).get_table_names())
    finally:
        engine.dispose()


@pytest.mark.parametrize(("source", "target"), PAIRS, ids=[f"{a}-to-{b}" for a, b in PAIRS])
def test_backup_restores_on_another_backend_with_the_same_answers(
        source, target, key_files, idp, tmp_path):
    _need(source, target)
    with fresh_database(source, tmp_path / "a") as source_url, \
            fresh_database(target, tmp_path / "b") as target_url:
        source_config = _config(tmp_path / "a", key_files, source_url)
        target_config = _config(tmp_path / "b", key_files, target_url)
        assert hutch("init", "--config", str(source_config)).returncode == 0
        app = _app(source_config)
        _fill(app.test_client(), idp)
        before = _view(app.test_client(), idp)
        app.extensions["hutch"].db.dispose()

        file = tmp_path / "hutch.backup"
        made = hutch("backup", str(file), "--config", str(source_config))
        assert (made.returncode, made.stderr) == (0, ""), made.stderr
        assert stat.S_IMODE(file.stat().st_mode) == 0o600
        loaded = hutch("restore", str(file), "--config", str(target_config))
        assert (loaded.returncode, loaded.stderr) == (0, ""), loaded.stderr
        assert loaded.stdout.startswith("restored ")

        assert _rows(target_url) == _rows(source_url)  # every row, ids and timestamps
        moved = _app(target_config)
        client = moved.test_client()
        assert _view(client, idp) == before
        # Sequences follow the restored ids: new rows get new ids, on every backend.
        alice = Api(client, idp, "alice")
        assert alice.post("/api/safe", json={"name": "after"}).status_code == 200
        assert alice.post("/api/safe/after/coin", json={"name": "c", "data": "x"}
                          ).status_code == 200
        assert alice.get("/api/safe/after/coin/c").payload["data"] == "x"
        moved.extensions["hutch"].db.dispose()


def _packet(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(text("SELECT @@max_allowed_packet")).scalar())
    finally:
        engine.dispose()


@pytest.mark.parametrize(("source", "target"), [("sqlite", "postgresql"),
                                                ("postgresql", "mariadb"),
                                                ("mariadb", "sqlite")])
def test_a_16_mib_coin_moves(source, target, key_files, idp, tmp_path):
    """16 MiB - 1 byte, the largest coin; 4 MiB where MariaDB's max_allowed_packet is below
    the 40 MiB that Hutch needs for 16 MiB (README), so large rows still cross it."""
    _need(source, target)
    with fresh_database(source, tmp_path / "a") as source_url, \
            fresh_database(target, tmp_path / "b") as target_url:
        size = 16 * 1024 * 1024 - 1
        for url in (source_url, target_url):
            if url.startswith("mysql") and _packet(url) < 40 * 1024 * 1024:
                size = 4 * 1024 * 1024
                print(f"\nMariaDB max_allowed_packet is {_packet(url)}: a 4 MiB coin instead")
        source_config = _config(tmp_path / "a", key_files, source_url)
        target_config = _config(tmp_path / "b", key_files, target_url)
        assert hutch("init", "--config", str(source_config)).returncode == 0
        app = _app(source_config)
        api = Api(app.test_client(), idp, "big")
        data = secrets.token_urlsafe(size)[:size]
        small = secrets.token_urlsafe(3000)
        assert api.put("/api/profile", json={}).status_code == 200
        assert api.post("/api/safe", json={"name": "s"}).status_code == 200
        for number in range(200):  # small rows in the same table, before the large one
            assert api.post("/api/safe/s/coin", json={"name": f"a{number}", "data": small}
                            ).status_code == 200
        assert api.post("/api/safe/s/coin", json={"name": "big", "data": data}).status_code == 200
        app.extensions["hutch"].db.dispose()
        file = tmp_path / "big.backup"
        assert hutch("backup", str(file), "--config", str(source_config)).returncode == 0
        loaded = hutch("restore", str(file), "--config", str(target_config))
        assert loaded.returncode == 0, loaded.stderr
        moved = _app(target_config)
        got = Api(moved.test_client(), idp, "big").get("/api/safe/s/coin/big").payload["data"]
        assert got == data
        moved.extensions["hutch"].db.dispose()


# ------------------------------------------------------------ a backup under 16 writers

WRITERS = 16


def _read_backup(file: Path) -> tuple[dict, dict[str, list[dict]]]:
    """The documented format, read independently of hutch.backup: header, rows, trailer."""
    lines = gzip.decompress(file.read_bytes()).splitlines(keepends=True)
    header, trailer = json.loads(lines[0]), json.loads(lines[-1])
    assert header["format"] == "hutch-backup" and header["version"] == 1
    assert trailer["sha256"] == hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    columns = {table["name"]: table["columns"] for table in header["tables"]}
    rows: dict[str, list[dict]] = {}
    current = None
    for line in lines[1:-1]:
        document = json.loads(line)
        if isinstance(document, dict):
            current = document["table"]
            rows[current] = []
        else:
            rows[current].append(dict(zip(columns[current], document, strict=True)))
    assert trailer["rows"] == {name: len(found) for name, found in rows.items()}
    return header, rows


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_backup_under_16_writers_holds_every_acknowledged_write(backend, idp, key_files,
                                                                   tmp_path):
    _need(backend)
    with fresh_database(backend, tmp_path) as url:
        server = LiveHutch(tmp_path / "serve", idp, url)
        acknowledged: list[dict[str, str]] = [{} for _ in range(WRITERS)]
        latest: list[int] = [0] * WRITERS  # the last acknowledged version of coin "c0"
        unexpected: list[tuple[int, bytes]] = []
        stop = threading.Event()

        def writer(index: int) -> None:
            token = idp.token(f"w{index}")
            conn = server.connect(timeout=30)
            n = 0
            while not stop.is_set():
                n += 1
                if n % 4 == 0:  # an update of one coin, version n
                    answer = server.call(token, "PUT", "/api/safe/s/coin/c0", {"data": f"v{n}"},
                                         conn=conn)
                    if answer.status == 200:
                        latest[index] = n
                else:
                    name, data = f"n{n}", secrets.token_urlsafe(100 + n % 300)
                    answer = server.call(token, "POST", "/api/safe/s/coin",
                                         {"name": name, "data": data}, conn=conn)
                    if answer.status == 200:
                        acknowledged[index][name] = data
                if answer.status != 200:
                    unexpected.append((answer.status, answer.data[:200]))
            conn.close()

        try:
            server.start()
            for index in range(WRITERS):
                token = idp.token(f"w{index}")
                assert server.call(token, "PUT", "/api/profile", {"name": "w"}).status == 200
                assert server.call(token, "POST", "/api/safe", {"name": "s"}).status == 200
                assert server.call(token, "POST", "/api/safe/s/coin",
                                   {"name": "c0", "data": "v0"}).status == 200
            threads = [threading.Thread(target=writer, args=(i,), daemon=True)
                       for i in range(WRITERS)]
            for thread in threads:
                thread.start()
            time.sleep(1.5)
            # Everything answered so far was acknowledged before the backup started.
            before = [dict(found) for found in acknowledged]
            before_latest = list(latest)
            file = tmp_path / "live.backup"
            made = hutch_process("backup", str(file), "--config", str(server.config))
            time.sleep(0.3)
            stop.set()
            for thread in threads:
                thread.join(30)
        finally:
            stop.set()
            server.stop()
        assert made.returncode == 0, made.stderr
        assert not unexpected, unexpected[:5]
        assert sum(map(len, before)) > WRITERS, "the writers wrote almost nothing"

        _header, rows = _read_backup(file)
        profiles = {row["hp_id"]: row["hp_sub"] for row in rows["h_profile"]}
        safes = {row["hs_id"]: row for row in rows["h_safe"]}
        assert all(row["hp_id"] in profiles for row in rows["h_safe"])
        for table in ("h_key", "h_coin"):
            assert all(row["hs_id"] in safes for row in rows[table]), table
        coins: dict[str, dict[str, str]] = {}
        for row in rows["h_coin"]:
            sub = profiles[safes[row["hs_id"]]["hp_id"]]
            coins.setdefault(sub, {})[row["hc_name"]] = row["hc_data"]
        total = sum(map(len, coins.values()))
        print(f"\n{backend}: {sum(map(len, before))} writes acknowledged before the backup, "
              f"{total} coins in it, {sum(map(len, acknowledged))} acknowledged in all")
        for index in range(WRITERS):
            held = coins[f"w{index}"]
            missing = {name for name, data in before[index].items() if held.get(name) != data}
            assert not missing, (index, sorted(missing)[:5])
            assert int(held["c0"][1:]) >= before_latest[index]
        # And the file loads: its checksum and counts hold for hutch restore too.
        with fresh_database("sqlite", tmp_path / "copy") as copy_url:
            copy = _config(tmp_path / "copy", key_files, copy_url)
            loaded = hutch("restore", str(file), "--config", str(copy))
            assert loaded.returncode == 0, loaded.stderr
            assert {name: len(found) for name, found in _rows(copy_url).items()} == \
                {name: len(found) for name, found in rows.items()}


# ------------------------------------------------------------------------ refusals


def _rewrite(source: Path, target: Path, edit) -> None:
    """A copy of a backup with its header edited and a valid checksum again."""
    lines = gzip.decompress(source.read_bytes()).splitlines(keepends=True)
    header = json.loads(lines[0])
    edit(header)
    lines[0] = json.dumps(header).encode() + b"\n"
    trailer = json.loads(lines[-1])
    trailer["sha256"] = hashlib.sha256(b"".join(lines[:-1])).hexdigest()
    lines[-1] = json.dumps(trailer).encode() + b"\n"
    target.write_bytes(gzip.compress(b"".join(lines)))


@pytest.fixture
def good_backup(tmp_path, key_files, idp) -> Path:
    """A backup of a small SQLite vault."""
    config = _config(tmp_path / "src", key_files, f"sqlite:///{tmp_path / 'src' / 'a.db'}")
    assert hutch("init", "--config", str(config)).returncode == 0
    app = _app(config)
    _fill(app.test_client(), idp)
    app.extensions["hutch"].db.dispose()
    file = tmp_path / "good.backup"
    assert hutch("backup", str(file), "--config", str(config)).returncode == 0
    return file


def _bad_files(good: Path, folder: Path) -> dict[str, tuple[Path, str]]:
    """Each kind of bad file, and the words its refusal must say."""
    content = gzip.decompress(good.read_bytes())
    packed = good.read_bytes()
    files = {
        "missing": (folder / "nothing-here", "no such file"),
        "text file": (folder / "notes.txt", "not a Hutch backup"),
        "other gzip": (folder / "other.gz", "not a Hutch backup"),
        "truncated": (folder / "truncated", "truncated"),
        "cut at a line": (folder / "cut-line", "truncated"),
        "flipped byte": (folder / "flipped", "corrupted"),
        "edited row": (folder / "edited", "corrupted (checksum mismatch)"),
        "newer format": (folder / "newer", "newer than this Hutch reads"),
        "other revision": (folder / "old", "schema revision 0001"),
    }
    files["text file"][0].write_text("hello\n")
    files["other gzip"][0].write_bytes(gzip.compress(b'{"format": "something else"}\n'))
    files["truncated"][0].write_bytes(packed[: len(packed) * 2 // 3])
    lines = content.splitlines(keepends=True)
    files["cut at a line"][0].write_bytes(gzip.compress(b"".join(lines[:-3])))
    middle = len(packed) // 2
    files["flipped byte"][0].write_bytes(packed[:middle] + bytes([packed[middle] ^ 0xFF])
                                         + packed[middle + 1:])
    edited = content.replace(b'"updated"', b'"UPDATED"', 1)
    assert edited != content
    files["edited row"][0].write_bytes(gzip.compress(edited))
    _rewrite(good, files["newer format"][0], lambda header: header.update(version=2))
    _rewrite(good, files["other revision"][0], lambda header: header.update(revision="0001"))
    return files


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_bad_files_are_refused_and_nothing_is_written(backend, good_backup, key_files,
                                                       tmp_path):
    _need(backend)
    with fresh_database(backend, tmp_path / "t") as url:
        config = _config(tmp_path / "t", key_files, url)
        for kind, (file, words) in _bad_files(good_backup, tmp_path).items():
            refused = hutch("restore", str(file), "--config", str(config))
            assert refused.returncode == 2, (kind, refused.stdout, refused.stderr)
            assert refused.stdout == ""
            assert refused.stderr.startswith(f"hutch: restore: {file}: "), (kind, refused.stderr)
            assert words in refused.stderr, (kind, refused.stderr)
            assert refused.stderr.count("\n") == 1, (kind, refused.stderr)
            if backend == "sqlite":
                assert not any((tmp_path / "t").glob("*.db*")), kind  # not even created
            else:
                assert _table_count(url) == 0, kind  # not even migrated


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_target_that_is_not_empty_is_refused_unchanged(backend, good_backup, key_files, idp,
                                                         tmp_path):
    _need(backend)
    with fresh_database(backend, tmp_path / "t") as url:
        config = _config(tmp_path / "t", key_files, url)
        assert hutch("init", "--config", str(config)).returncode == 0
        app = _app(config)
        api = Api(app.test_client(), idp, "zed")
        assert api.put("/api/profile", json={"name": "Zed"}).status_code == 200
        app.extensions["hutch"].db.dispose()
        before = _rows(url)
        refused = hutch("restore", str(good_backup), "--config", str(config))
        assert refused.returncode == 2
        assert re.fullmatch(r"hutch: restore: the target database is not empty \(h_\w+ has "
                            r"rows\): restore only into an empty database\n", refused.stderr)
        assert _rows(url) == before


def test_an_initialised_empty_target_is_accepted(good_backup, key_files, tmp_path):
    url = f"sqlite:///{tmp_path / 't' / 'b.db'}"
    config = _config(tmp_path / "t", key_files, url)
    assert hutch("init", "--config", str(config)).returncode == 0
    assert hutch("restore", str(good_backup), "--config", str(config)).returncode == 0
    assert sum(len(rows) for rows in _rows(url).values()) > 20


def test_backup_refusals_write_no_file(key_files, tmp_path):
    folder = tmp_path / "db"
    url = f"sqlite:///{folder / 'a.db'}"
    config = _config(folder, key_files, url)
    out = tmp_path / "out.backup"
    # No database yet: refused, and none is created.
    missing = hutch("backup", str(out), "--config", str(config))
    assert missing.returncode == 2
    assert missing.stderr == f"hutch: backup: database file {folder / 'a.db'} does not exist\n"
    assert not (folder / "a.db").exists()
    # A schema behind the code's.
    engine = create_db_engine(DatabaseSettings(url=url))
    migrate.upgrade(engine, "0001")
    behind = hutch("backup", str(out), "--config", str(config))
    assert behind.returncode == 2
    assert "run 'hutch db upgrade'" in behind.stderr and behind.stderr.count("\n") == 1
    # A table Hutch does not know would be left out: refused rather than half copied.
    migrate.upgrade(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE h_extra (x INTEGER)")
    unknown = hutch("backup", str(out), "--config", str(config))
    assert unknown.returncode == 2
    assert "table h_extra is not part of Hutch's schema" in unknown.stderr
    # A folder that does not exist.
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE h_extra")
    engine.dispose()
    nowhere = hutch("backup", str(tmp_path / "no" / "out"), "--config", str(config))
    assert nowhere.returncode == 2 and "no such folder" in nowhere.stderr
    folder_named = hutch("backup", str(folder), "--config", str(config))
    assert folder_named.stderr == f"hutch: backup: cannot write {folder}: Is a directory\n"
    assert folder_named.returncode == 2 and folder.is_dir()
    assert not out.exists()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["db"]  # no temporary files


def test_a_backup_replaces_the_old_file_atomically_and_stays_private(good_backup, key_files,
                                                                     tmp_path):
    config = next((tmp_path / "src").glob("*.config"))
    good_backup.chmod(0o644)
    first = good_backup.stat().st_ino
    made = hutch("backup", str(good_backup), "--config", str(config))
    assert made.returncode == 0
    assert stat.S_IMODE(good_backup.stat().st_mode) == 0o600
    assert good_backup.stat().st_ino != first  # a new file renamed over the old one
    assert not [path for path in tmp_path.iterdir() if path.name.startswith(".")]


def test_progress_shows_on_a_terminal_only(good_backup, key_files, tmp_path):
    config = next((tmp_path / "src").glob("*.config"))
    quiet = hutch_process("backup", str(tmp_path / "quiet"), "--config", str(config))
    assert quiet.returncode == 0 and quiet.stderr == ""
    leader, follower = pty.openpty()
    try:
        shown = hutch_process("backup", str(tmp_path / "tty"), "--config", str(config),
                              stderr=follower)
        assert shown.returncode == 0
        os.set_blocking(leader, False)
        printed = os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)
    rows = sum(len(found) for found in _read_backup(tmp_path / "tty")[1].values())
    assert f"backup: {rows} rows, " in printed and "MiB" in printed
    target = _config(tmp_path / "t", key_files, f"sqlite:///{tmp_path / 't' / 'b.db'}")
    leader, follower = pty.openpty()
    try:
        loaded = hutch_process("restore", str(tmp_path / "tty"), "--config", str(target),
                               stderr=follower)
        assert loaded.returncode == 0
        os.set_blocking(leader, False)
        printed = os.read(leader, 65536).decode()
    finally:
        os.close(leader)
        os.close(follower)
    assert f"restore: checking: {rows} rows, " in printed
    assert f"restore: {rows} rows, " in printed


def test_the_file_format_is_documented_json_lines(good_backup):
    header, rows = _read_backup(good_backup)
    assert header["revision"] == migrate.head_revision()
    assert [table["name"] for table in header["tables"]] == [table.name for table in BACKED_UP]
    assert "h_dpop_jti" not in rows
    profile = next(row for row in rows["h_profile"] if row["hp_sub"] == "alice")
    assert profile["hp_name"] == "alice ✓" and isinstance(profile["hp_last_updated"], int)
    assert abs(profile["hp_last_updated"] - time.time()) < 600


def test_restore_counts_rows_it_loaded(good_backup, key_files, tmp_path):
    url = f"sqlite:///{tmp_path / 't' / 'b.db'}"
    config = _config(tmp_path / "t", key_files, url)
    assert hutch("restore", str(good_backup), "--config", str(config)).returncode == 0
    engine = create_engine(url)
    with engine.connect() as conn:
        counted = {table.name: conn.execute(select(func.count()).select_from(table)).scalar()
                   for table in BACKED_UP}
    engine.dispose()
    assert counted == {name: len(found) for name, found in _read_backup(good_backup)[1].items()}
    assert stat.S_IMODE((tmp_path / "t" / "b.db").stat().st_mode) == 0o600


def test_signed_answers_still_verify_after_a_move(good_backup, key_files, idp, tmp_path):
    url = f"sqlite:///{tmp_path / 't' / 'b.db'}"
    config = _config(tmp_path / "t", key_files, url)
    assert hutch("restore", str(good_backup), "--config", str(config)).returncode == 0
    app = _app(config)
    client = app.test_client()
    answer = client.get("/api/profile", headers={"Authorization": f"Bearer {idp.token('bob')}"})
    assert decode_signed(answer, client.get("/jwks").get_json()).payload["name"] == "bob ✓"
    app.extensions["hutch"].db.dispose()
