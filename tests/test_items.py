"""Safe keys (§7.3) and coins (§7.4): the items of a safe, with the rules of §7.5 and §8.

Both kinds follow the same story, so most tests run once per kind.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from sqlalchemy import text

from tests.helpers import outcome, recent, rejected, written

MAX_DATA = 16 * 1024 * 1024 - 1  # §13.9: one byte under 16 MiB, so MEDIUMBLOB holds it
NAME_ERROR = "name must be a string of maximum 128 characters"
DATA_ERROR = "data must be a string of maximum 16M characters"
DISPLAY_NAME_ERROR = "display_name must be a string of maximum 512 characters"
TYPE_ERROR = "type must be a string of maximum 128 characters"
BAD_NAMES = ["", "a" * 129, "a-b", "é", "a b", 42, None, ["a"]]
MISSING = object()
BAD_DATA = [MISSING, "", 42, None, ["x"]]
BODIES = {"valid": {"json": {"name": "i1", "data": "x"}},
          "invalid": {"json": {"name": 42, "data": 42}},
          "not-json": {"data": b"{oops", "content_type": "application/json"}}


@dataclass(frozen=True)
class Kind:
    segment: str              # "key" or "coin" in the URL
    duplicate: str            # the duplicate-name message
    not_an_object: str        # the "must be a JSON object" message
    extra: dict               # the optional members, fully set
    nulls: dict               # the optional members when unset

    def url(self, safe: str = "s1", item: str | None = None) -> str:
        base = f"/api/safe/{safe}/{self.segment}"
        return base if item is None else f"{base}/{item}"

    def body(self, name: str, data: str = "ciphertext", **more) -> dict:
        return {"name": name, **self.extra, "data": data, **more}


KEY = Kind("key", "name already exist for a safe key", "safe key must be a JSON object",
           extra={"type": "password", "display_name": "My password"},
           nulls={"type": None, "display_name": None})
COIN = Kind("coin", "name already exist for a safe coin", "safe coin must be a JSON object",
            extra={}, nulls={})


@pytest.fixture(params=[KEY, COIN], ids=["key", "coin"])
def kind(request) -> Kind:
    return request.param


@pytest.fixture
def safe_ready(profile_ready):
    """'dev' with a profile and an empty safe 's1'."""
    assert written(profile_ready.post("/api/safe", json={"name": "s1"}))
    return profile_ready




def listed(api, kind: Kind, safe: str = "s1") -> list[dict]:
    return api.get(kind.url(safe)).payload["list"]


def test_create_read_back_and_list_in_creation_order(safe_ready, kind):
    api = safe_ready
    assert api.get(kind.url()).payload == {"list": []}
    assert api.get(kind.url() + "/").payload == {"list": []}
    assert written(api.post(kind.url(), json=kind.body("i1", "jwe1", last_updated=1, x=2)))
    item = api.get(kind.url(item="i1")).payload
    assert item == {**kind.body("i1", "jwe1"), "last_updated": item["last_updated"]}
    assert recent(item["last_updated"])
    assert listed(api, kind) == [item]

    for name in ("zz", "aa", "Mm", "b1"):
        assert written(api.post(kind.url(), json=kind.body(name)))
    assert [item["name"] for item in listed(api, kind)] == ["i1", "zz", "aa", "Mm", "b1"]
    # A re-created name is a new item: it goes to the end.
    assert written(api.delete(kind.url(item="aa")))
    assert written(api.post(kind.url(), json=kind.body("aa")))
    assert [item["name"] for item in listed(api, kind)] == ["i1", "zz", "Mm", "b1", "aa"]
    assert all(recent(item["last_updated"]) for item in listed(api, kind))


def test_names_are_case_sensitive_and_local_to_their_safe(safe_ready, kind):
    api = safe_ready
    assert written(api.post("/api/safe", json={"name": "s2"}))
    assert written(api.post(kind.url(), json=kind.body("Item", "upper")))
    assert written(api.post(kind.url(), json=kind.body("item", "lower")))
    assert written(api.post(kind.url("s2"), json=kind.body("item", "other safe")))
    assert api.get(kind.url(item="Item")).payload["data"] == "upper"
    assert api.get(kind.url(item="item")).payload["data"] == "lower"
    assert api.get(kind.url("s2", "item")).payload["data"] == "other safe"
    assert api.get(kind.url(item="ITEM")).status_code == 404
    assert [item["name"] for item in listed(api, kind, "s2")] == ["item"]


def test_a_duplicate_name_is_400_and_reported_with_the_other_problems(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1", "first")))
    rejected(api.post(kind.url(), json=kind.body("i1", "second")), kind.duplicate)
    rejected(api.post(kind.url(), json={"data": 42, "name": "i1"}), kind.duplicate, DATA_ERROR)
    assert [item["data"] for item in listed(api, kind)] == ["first"]


def test_a_duplicate_key_with_every_field_wrong(safe_ready):
    api = safe_ready
    assert written(api.post(KEY.url(), json=KEY.body("k1")))
    answer = api.post(KEY.url(), json={"data": "", "type": "t" * 129, "display_name": 1,
                                       "name": "k1"})
    rejected(answer, KEY.duplicate, DISPLAY_NAME_ERROR, TYPE_ERROR, DATA_ERROR)


def test_a_bad_name_is_400(safe_ready, kind):
    answers = {repr(name): outcome(safe_ready.post(kind.url(), json=kind.body(name)))
               for name in BAD_NAMES}
    assert answers == {repr(name): (400, [NAME_ERROR]) for name in BAD_NAMES}
    assert listed(safe_ready, kind) == []


def without_data(body: dict, data) -> dict:
    body = dict(body)
    if data is MISSING:
        body.pop("data", None)
    else:
        body["data"] = data
    return body


def test_data_is_a_required_non_empty_string(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1", "kept")))
    expected = {repr(data): (400, [DATA_ERROR]) for data in BAD_DATA}
    posts = {repr(data): outcome(api.post(kind.url(), json=without_data(kind.body("i2"), data)))
             for data in BAD_DATA}
    puts = {repr(data): outcome(api.put(kind.url(item="i1"), json=without_data({}, data)))
            for data in BAD_DATA}
    assert posts == puts == expected
    assert [(item["name"], item["data"]) for item in listed(api, kind)] == [("i1", "kept")]


def test_key_fields_are_optional_and_limited_in_utf8_bytes(safe_ready):
    api = safe_ready
    limits = [("display_name", 512, DISPLAY_NAME_ERROR), ("type", 128, TYPE_ERROR)]
    full = {field: "x" * limit for field, limit, _ in limits}
    euros = {field: "€" * (limit // 3) for field, limit, _ in limits}  # 510 and 126 bytes
    for name, fields in (("full", full), ("euros", euros)):
        assert written(api.post(KEY.url(), json={"name": name, "data": "d", **fields}))
        stored = api.get(KEY.url(item=name)).payload
        assert stored == {"name": name, "data": "d", **fields,
                          "last_updated": stored["last_updated"]}
    assert written(api.post(KEY.url(), json={"name": "bare", "data": "d"}))
    bare = api.get(KEY.url(item="bare")).payload
    assert bare == {"type": None, "name": "bare", "display_name": None, "data": "d",
                    "last_updated": bare["last_updated"]}
    before = listed(api, KEY)

    for field, limit, message in limits:
        bad_values = ["x" * (limit + 1), "€" * (limit // 3 + 1), 42, None]
        posts = {repr(bad): outcome(api.post(KEY.url(), json=KEY.body("bad", **{field: bad})))
                 for bad in bad_values}
        puts = {repr(bad): outcome(api.put(KEY.url(item="full"),
                                           json={"data": "y", field: bad}))
                for bad in bad_values}
        assert posts == puts == {repr(bad): (400, [message]) for bad in bad_values}, field
    assert listed(api, KEY) == before


def test_a_missing_safe_or_item_is_404_on_every_route_whatever_the_body(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("here")))
    answers = {"GET list": api.get(kind.url("nosafe")).status_code,
               "GET": api.get(kind.url("nosafe", "here")).status_code,
               "DELETE": api.delete(kind.url("nosafe", "here")).status_code,
               "GET item": api.get(kind.url(item="gone")).status_code,
               "DELETE item": api.delete(kind.url(item="gone")).status_code}
    for name, body in BODIES.items():
        answers[f"POST {name}"] = api.post(kind.url("nosafe"), **body).status_code
        answers[f"PUT {name}"] = api.put(kind.url("nosafe", "here"), **body).status_code
        answers[f"PUT item {name}"] = api.put(kind.url(item="gone"), **body).status_code
    assert answers == dict.fromkeys(answers, 404)
    assert [item["name"] for item in listed(api, kind)] == ["here"]

    # §13.10: nothing was stored on the way, not even an orphan.
    assert written(api.post("/api/safe", json={"name": "nosafe"}))
    assert listed(api, kind, "nosafe") == []


def test_put_replaces_every_mutable_field_and_keeps_the_name(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1", "old")))
    assert written(api.put(kind.url(item="i1"), json={"data": "new", "name": "renamed",
                                                      "last_updated": 1}))
    item = api.get(kind.url(item="i1")).payload
    assert item == {"name": "i1", "data": "new", **kind.nulls,
                    "last_updated": item["last_updated"]}
    assert recent(item["last_updated"])
    assert api.get(kind.url(item="renamed")).status_code == 404


def test_put_on_the_collection_url_is_a_no_op(safe_ready, kind):
    """§2.2 and §9: the original routes nothing there and answers 200 [T]."""
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1", "before")))
    before = listed(api, kind)
    assert written(api.put(kind.url() + "/", json={"name": "i1", "data": "after"}))
    assert written(api.put(kind.url(), json={"name": "i2", "data": "after"}))
    assert listed(api, kind) == before


def test_delete_twice_is_404_the_second_time(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1", "old")))
    assert written(api.delete(kind.url(item="i1")))
    assert api.get(kind.url(item="i1")).status_code == 404
    assert api.delete(kind.url(item="i1")).status_code == 404
    assert api.put(kind.url(item="i1"), json={"data": "x"}).status_code == 404
    assert listed(api, kind) == []

    assert written(api.post(kind.url(), json=kind.body("i1", "new")))
    assert [item["data"] for item in listed(api, kind)] == ["new"]


def test_after_the_profile_is_deleted_every_route_is_403_first(safe_ready, kind):
    api = safe_ready
    assert written(api.post(kind.url(), json=kind.body("i1")))
    assert written(api.delete("/api/profile"))
    answers = {"GET list": api.get(kind.url()).status_code,
               "GET": api.get(kind.url(item="i1")).status_code,
               "DELETE": api.delete(kind.url(item="i1")).status_code}
    for name, body in BODIES.items():
        answers[f"POST {name}"] = api.post(kind.url(), **body).status_code
        answers[f"PUT {name}"] = api.put(kind.url(item="i1"), **body).status_code
    assert answers == dict.fromkeys(answers, 403)

    # A new profile starts empty: the old safe and its items are gone for good.
    assert written(api.put("/api/profile", json={}))
    assert api.get(kind.url()).status_code == 404
    assert api.get("/api/safe").payload == {"list": []}


def _max_allowed_packet(app) -> int | None:
    engine = app.extensions["hutch"].db.engine
    if engine.dialect.name not in ("mysql", "mariadb"):
        return None
    with engine.connect() as conn:
        return int(conn.execute(text("SELECT @@max_allowed_packet")).scalar())


def test_the_largest_data_is_stored_whole(app, safe_ready, kind):
    packet = _max_allowed_packet(app)
    if packet is not None and packet < 40 * 1024 * 1024:
        pytest.skip(f"MariaDB max_allowed_packet is {packet} bytes (< 40 MiB): "
                    "a 16 MiB value cannot be sent to this server")
    data = "€" + "a" * (MAX_DATA - 4) + "z"  # exactly 16,777,215 UTF-8 bytes
    assert len(data.encode()) == MAX_DATA
    body = json.dumps(kind.body("big", data), ensure_ascii=False).encode()
    assert written(safe_ready.post(kind.url(), data=body, content_type="application/json"))
    assert safe_ready.get(kind.url(item="big")).payload["data"] == data


def test_data_one_byte_over_the_limit_is_400(safe_ready, kind):
    api = safe_ready
    for data in ("a" * (MAX_DATA + 1),              # 16,777,216 ASCII bytes
                 "a" * (MAX_DATA - 2) + "€"):       # fewer characters, but one byte over
        body = json.dumps(kind.body("big", data), ensure_ascii=False).encode()
        rejected(api.post(kind.url(), data=body, content_type="application/json"), DATA_ERROR)
    assert listed(api, kind) == []
