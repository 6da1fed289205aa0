"""Concurrent creates (HUTCH-API.md §13 item 15): the database decides, one writer wins.

Sixteen threads, each with its own test client, wait at a barrier and send the
same create at once. The losers get the ordinary duplicate answer, never a 5xx,
and the database holds exactly one active row.
"""

from __future__ import annotations

import threading
from collections import Counter

from sqlalchemy import text

from tests.helpers import Api

THREADS = 16


def all_at_once(app, idp, method: str, path: str, body: dict) -> list[tuple[int, object]]:
    """Send the same request from THREADS clients released together; (status, body) each."""
    barrier = threading.Barrier(THREADS, timeout=30)
    callers = [Api(app.test_client(), idp, "dev") for _ in range(THREADS)]
    results: list = [None] * THREADS

    def run(index: int) -> None:
        barrier.wait()
        try:
            answer = callers[index].request(method, path, json=body)
            results[index] = (answer.status_code, answer.get_json(silent=True) or answer.data)
        except Exception as exc:  # an escaped exception is a server fault too
            results[index] = (599, repr(exc))

    threads = [threading.Thread(target=run, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return results


def count(app, sql: str, **params) -> int:
    with app.extensions["hutch"].db.engine.connect() as conn:
        return conn.execute(text(sql), params).scalar_one()


def test_one_safe_name_created_sixteen_times_at_once(app, idp, profile_ready):
    results = all_at_once(app, idp, "POST", "/api/safe", {"name": "race"})
    assert Counter(status for status, _ in results) == {200: 1, 400: THREADS - 1}, results
    assert all(body == ["name already exist for a safe"]
               for status, body in results if status == 400), results
    assert count(app, "SELECT COUNT(*) FROM h_safe WHERE hs_name = :n AND hs_deleted = 0",
                 n="race") == 1
    assert [safe["name"] for safe in profile_ready.get("/api/safe").payload["list"]] == ["race"]


def test_one_coin_name_created_sixteen_times_at_once(app, idp, profile_ready):
    assert profile_ready.post("/api/safe", json={"name": "s1"}).status_code == 200
    results = all_at_once(app, idp, "POST", "/api/safe/s1/coin", {"name": "race", "data": "x"})
    assert Counter(status for status, _ in results) == {200: 1, 400: THREADS - 1}, results
    assert all(body == ["name already exist for a safe coin"]
               for status, body in results if status == 400), results
    assert count(app, "SELECT COUNT(*) FROM h_coin WHERE hc_name = :n AND hc_deleted = 0",
                 n="race") == 1
    assert len(profile_ready.get("/api/safe/s1/coin").payload["list"]) == 1


def test_sixteen_first_profile_puts_at_once_make_one_profile(app, idp, api):
    results = all_at_once(app, idp, "PUT", "/api/profile", {"name": "Dev"})
    assert [status for status, _ in results] == [200] * THREADS, results
    assert count(app, "SELECT COUNT(*) FROM h_profile WHERE hp_sub = :sub", sub="dev") == 1
    assert api.get("/api/profile").payload["name"] == "Dev"
