"""The storage quota (``quota_bytes``): off by default and free when off; a write that
would pass it gets 507 with the limit and writes nothing; parallel writes of one user
pass it by at most the other writes in flight, as documented; on every backend."""

from __future__ import annotations

import json
import threading

import pytest

from hutch.settings import ConfigError, load_settings
from hutch.store import quota
from tests.helpers import Api, written

ROW = quota.ROW_BYTES


def send(api: Api, method: str, url: str, document: dict):
    """A compact JSON body, so its size is known to the byte."""
    return api.request(method, url, data=json.dumps(document, separators=(",", ":")),
                       content_type="application/json")


def body_size(document: dict) -> int:
    return len(json.dumps(document, separators=(",", ":")).encode())


def refused(answer, limit: int) -> None:
    assert answer.status_code == 507, (answer.status_code, answer.data)
    body = answer.get_json()
    assert body["error"] == "insufficient storage"
    assert f"of your {limit} bytes are in use" in body["message"]


@pytest.fixture
def quota_api(make_app, idp):
    """(api for 'dev' with a profile 'Dev' and safe 's1', its app) under a quota."""
    def build(limit: int):
        app = make_app(quota_bytes=limit)
        api = Api(app.test_client(), idp, "dev")
        assert api.put("/api/profile", json={"name": "Dev"}).status_code == 200
        assert written(api.post("/api/safe", json={"name": "s1"}))
        return api, app
    return build


def used(app, sub: str = "dev") -> int:
    return quota.usage(app.extensions["hutch"].db, sub)


def test_off_by_default_and_costs_no_query_when_off(make_app, idp, monkeypatch):
    counts = {}
    for limit in (0, 10**9):
        app = make_app(quota_bytes=limit)
        assert app.extensions["hutch"].settings.quota_bytes == limit
        db = app.extensions["hutch"].db
        api = Api(app.test_client(), idp, f"u{limit}")
        api.put("/api/profile", json={"name": "U"})
        api.post("/api/safe", json={"name": "s1"})
        calls: list = []

        def counted(*args, calls=calls, select=db.select, **kwargs):
            calls.append(args)
            return select(*args, **kwargs)

        monkeypatch.setattr(db, "select", counted)
        assert written(api.post("/api/safe/s1/coin", json={"name": "c", "data": "x"}))
        assert written(api.put("/api/safe/s1/coin/c", json={"data": "y"}))
        counts[limit] = len(calls)
    assert counts[10**9] == counts[0] + 2  # one usage query per write, none without quota
    assert load_settings(None, environ={}).quota_bytes == 0


def test_the_accounting_is_bytes_of_strings_plus_a_row_charge(quota_api):
    api, app = quota_api(10**6)
    assert used(app) == len("Dev") + len("s1") + ROW
    assert written(send(api, "POST", "/api/safe/s1/coin", {"name": "c1", "data": "é" * 100}))
    assert written(send(api, "POST", "/api/safe/s1/key",
                        {"name": "k1", "type": "t", "display_name": "K", "data": "abc"}))
    expected = 3 + (2 + ROW) + (2 + 200 + ROW) + (1 + 2 + 1 + 3 + ROW)  # é is 2 bytes
    assert used(app) == expected
    assert api.put("/api/profile", json={"name": "Dev", "picture": "p" * 50}).status_code == 200
    assert used(app) == expected + 50
    assert api.delete("/api/safe/s1/coin/c1").status_code == 200
    assert used(app) == expected + 50 - (2 + 200 + ROW)


def test_a_write_over_the_quota_is_507_and_writes_nothing(quota_api):
    limit = 2000
    api, app = quota_api(limit)
    base = used(app)  # 133: "Dev", "s1" and its row
    first = {"name": "c1", "data": "x" * 1000}
    assert written(send(api, "POST", "/api/safe/s1/coin", first))
    after_first = used(app)
    assert after_first == base + 2 + 1000 + ROW
    # Weighed: body + row charge against what is stored.
    room = limit - after_first - ROW - body_size({"name": "c2", "data": ""})
    too_big = {"name": "c2", "data": "x" * (room + 1)}
    assert body_size(too_big) + ROW + after_first == limit + 1
    refused(send(api, "POST", "/api/safe/s1/coin", too_big), limit)
    assert api.get("/api/safe/s1/coin/c2").status_code == 404
    assert used(app) == after_first
    fits = {"name": "c2", "data": "x" * room}
    assert written(send(api, "POST", "/api/safe/s1/coin", fits))
    assert used(app) <= limit
    # Full: keys, safes, a profile picture and bigger coin data are refused too...
    refused(send(api, "POST", "/api/safe/s1/key", {"name": "k", "data": "k"}), limit)
    refused(send(api, "POST", "/api/safe", {"name": "s2"}), limit)
    refused(send(api, "PUT", "/api/profile", {"name": "Dev", "picture": "p" * 100}), limit)
    refused(send(api, "PUT", "/api/safe/s1/coin/c1", {"data": "x" * 1100}), limit)
    assert api.get("/api/safe/s1/coin/c1").payload["data"] == "x" * 1000
    assert [s["name"] for s in api.get("/api/safe").payload["list"]] == ["s1"]
    # ...but a replacement no larger than what it replaces still fits, and reads still work.
    assert written(send(api, "PUT", "/api/safe/s1/coin/c1", {"data": "z" * 990}))
    assert api.get("/api/safe/s1/coin/c1").payload["data"] == "z" * 990
    # Deleting frees room.
    assert api.delete("/api/safe/s1/coin/c2").status_code == 200
    assert written(send(api, "POST", "/api/safe/s1/key", {"name": "k", "data": "k"}))


def test_the_quota_is_per_user(quota_api, idp):
    api, app = quota_api(1500)
    assert written(send(api, "POST", "/api/safe/s1/coin", {"name": "c", "data": "x" * 1000}))
    refused(send(api, "POST", "/api/safe/s1/coin", {"name": "d", "data": "x" * 300}), 1500)
    mallory = Api(api.client, idp, "mallory")
    assert mallory.put("/api/profile", json={"name": "M"}).status_code == 200
    assert written(mallory.post("/api/safe", json={"name": "s1"}))
    assert written(send(mallory, "POST", "/api/safe/s1/coin", {"name": "d", "data": "x" * 300}))


def test_a_deleted_safe_no_longer_counts(quota_api):
    api, app = quota_api(1500)
    assert written(api.post("/api/safe", json={"name": "s2"}))
    assert written(send(api, "POST", "/api/safe/s2/coin", {"name": "c", "data": "x" * 1000}))
    refused(send(api, "POST", "/api/safe/s1/coin", {"name": "c", "data": "x" * 300}), 1500)
    assert api.delete("/api/safe/s2").status_code == 200
    assert written(send(api, "POST", "/api/safe/s1/coin", {"name": "c", "data": "x" * 300}))


def test_a_body_over_max_body_bytes_is_still_413(make_app, idp):
    app = make_app(quota_bytes=2000, max_body_bytes=4096)
    api = Api(app.test_client(), idp, "dev")
    assert api.put("/api/profile", json={"name": "Dev"}).status_code == 200
    answer = send(api, "PUT", "/api/profile", {"name": "Dev", "picture": "p" * 5000})
    assert answer.status_code == 413


def test_quota_setting_from_file_and_environment(make_settings, tmp_path):
    assert make_settings(quota_bytes=1048576).quota_bytes == 1048576
    config = tmp_path / "hutch.config"
    assert load_settings(config, environ={"HUTCH_QUOTA_BYTES": "5000"}).quota_bytes == 5000
    with pytest.raises(ConfigError, match=r"^quota_bytes: must be 0 \(no quota\)"):
        make_settings(quota_bytes=-1)
    with pytest.raises(ConfigError, match="^HUTCH_QUOTA_BYTES: expected an integer"):
        load_settings(config, environ={"HUTCH_QUOTA_BYTES": "1 GB"})


THREADS, DATA = 8, 400


def test_parallel_writes_overshoot_by_at_most_the_other_writes_in_flight(quota_api, idp):
    """Eight clients of one user write new coins as fast as they can until refused.

    Documented bound (README "Storage quota"): the check is not in the write's
    transaction, so k parallel writes can pass the quota by at most the k - 1 others'
    charges; and it never refuses while a write still fits."""
    charge = body_size({"name": "t0n00", "data": "x" * DATA}) + ROW
    limit = len("Dev") + len("s1") + ROW + 20 * charge + charge // 2
    api, app = quota_api(limit)
    start, results, barrier = used(app), [[] for _ in range(THREADS)], threading.Barrier(THREADS)

    def client(index: int) -> None:
        me = Api(app.test_client(), idp, "dev")
        barrier.wait()
        for n in range(40):
            answer = send(me, "POST", "/api/safe/s1/coin", {"name": f"t{index}n{n:02d}",
                                                            "data": "x" * DATA})
            results[index].append(answer.status_code)
            if answer.status_code != 200:
                return

    threads = [threading.Thread(target=client, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert start < limit
    assert all(codes and codes[-1] == 507 for codes in results), results  # all stopped
    accepted = sum(codes.count(200) for codes in results)
    listed = api.get("/api/safe/s1/coin").payload["list"]
    assert len(listed) == accepted  # a refused write wrote nothing
    final = used(app)
    assert final > limit - charge  # it never refused while a write still fitted
    assert final <= limit + (THREADS - 1) * charge  # the documented bound
    print(f"quota {limit} B, {THREADS} clients, {accepted} writes of {charge} B accepted, "
          f"overshoot {max(0, final - limit)} B (bound {(THREADS - 1) * charge} B)")
    # A full-size write no longer fits (final > limit - charge), whatever the overshoot.
    refused(send(api, "POST", "/api/safe/s1/coin", {"name": "late00", "data": "x" * DATA}),
            limit)
