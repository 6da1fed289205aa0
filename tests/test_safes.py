"""Safes (HUTCH-API.md §7.2, §7.5, §8): create, read, replace, delete, and re-create."""

from __future__ import annotations

from tests.helpers import outcome, recent, rejected, written

NAME_ERROR = "name must be a string of maximum 128 characters"
DUPLICATE = "name already exist for a safe"
DISPLAY_NAME_ERROR = "display_name must be a string of maximum 512 characters"
ENC_TYPE_ERROR = "enc_type must be a string of maximum 128 characters"
ALG_TYPE_ERROR = "alg_type must be a string of maximum 128 characters"
FULL = {"name": "personal", "display_name": "Personal", "enc_type": "A256GCM",
        "alg_type": "A256GCMKW"}
BODIES = {"valid": {"json": {"name": "s1", "display_name": "x"}},
          "invalid": {"json": {"name": 42, "display_name": 42}},
          "not-json": {"data": b"{oops", "content_type": "application/json"},
          "array": {"json": []}}




def safe_names(api) -> list[str]:
    return [safe["name"] for safe in api.get("/api/safe").payload["list"]]


def test_create_read_back_and_list_in_creation_order(profile_ready):
    api = profile_ready
    assert api.get("/api/safe").payload == {"list": []}
    assert api.get("/api/safe/").payload == {"list": []}
    assert written(api.post("/api/safe", json={**FULL, "offline": False}))
    safe = api.get("/api/safe/personal").payload
    assert safe == {**FULL, "last_updated": safe["last_updated"]}
    assert recent(safe["last_updated"])
    assert api.get("/api/safe").payload == {"list": [safe]}

    assert written(api.post("/api/safe/", json={"name": "bare"}))
    bare = api.get("/api/safe/bare").payload
    assert bare == {"name": "bare", "display_name": None, "enc_type": None, "alg_type": None,
                    "last_updated": bare["last_updated"]}

    for name in ("zeta", "alpha", "Mid", "b2"):
        assert written(api.post("/api/safe", json={"name": name}))
    assert safe_names(api) == ["personal", "bare", "zeta", "alpha", "Mid", "b2"]
    # A re-created name is a new safe: it goes to the end.
    assert written(api.delete("/api/safe/alpha"))
    assert written(api.post("/api/safe", json={"name": "alpha"}))
    assert safe_names(api) == ["personal", "bare", "zeta", "Mid", "b2", "alpha"]
    assert all(recent(safe["last_updated"]) for safe in api.get("/api/safe").payload["list"])


def test_names_are_case_sensitive(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json={"name": "Safe", "display_name": "upper"}))
    assert written(api.post("/api/safe", json={"name": "safe", "display_name": "lower"}))
    assert safe_names(api) == ["Safe", "safe"]
    assert api.get("/api/safe/Safe").payload["display_name"] == "upper"
    assert api.get("/api/safe/safe").payload["display_name"] == "lower"
    assert api.get("/api/safe/SAFE").status_code == 404

    assert written(api.delete("/api/safe/safe"))
    assert api.get("/api/safe/Safe").payload["display_name"] == "upper"


def test_a_duplicate_name_is_400_and_reported_with_the_other_problems(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json=FULL))
    rejected(api.post("/api/safe", json={"name": "personal"}), DUPLICATE)
    answer = api.post("/api/safe", json={"alg_type": "a" * 129, "name": "personal",
                                         "display_name": 42})
    rejected(answer, DUPLICATE, DISPLAY_NAME_ERROR, ALG_TYPE_ERROR)
    rejected(api.post("/api/safe", json={"name": "personal", "enc_type": 1}),
             DUPLICATE, ENC_TYPE_ERROR)
    assert api.get("/api/safe/personal").payload["display_name"] == "Personal"
    assert safe_names(api) == ["personal"]


BAD_NAMES = ["", "a" * 129, "a-b", "é", "a b", "a.b", "a/b", "a%2Fb", 42, None, True, ["a"],
             {"a": 1}]


def test_a_bad_name_is_400(profile_ready):
    api = profile_ready
    answers = {repr(name): outcome(api.post("/api/safe", json={"name": name}))
               for name in BAD_NAMES}
    assert answers == {repr(name): (400, [NAME_ERROR]) for name in BAD_NAMES}
    assert outcome(api.post("/api/safe", json={"display_name": "x"})) == (400, [NAME_ERROR])
    assert outcome(api.post("/api/safe", json={})) == (400, [NAME_ERROR])
    assert safe_names(api) == []

    longest = "Az09" * 32  # 128 alphanumerics
    assert written(api.post("/api/safe", json={"name": longest}))
    assert api.get(f"/api/safe/{longest}").payload["name"] == longest


LIMITS = [("display_name", 512, DISPLAY_NAME_ERROR), ("enc_type", 128, ENC_TYPE_ERROR),
          ("alg_type", 128, ALG_TYPE_ERROR)]


def test_field_limits_are_counted_in_utf8_bytes(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json={"name": "full", **{
        field: "x" * limit for field, limit, _ in LIMITS}}))
    euros = {field: "€" * (limit // 3) for field, limit, _ in LIMITS}  # 3 bytes each
    assert written(api.post("/api/safe", json={"name": "euros", **euros}))
    stored = api.get("/api/safe/euros").payload
    assert stored == {"name": "euros", **euros, "last_updated": stored["last_updated"]}
    before = api.get("/api/safe/full").payload

    for field, limit, message in LIMITS:
        bad_values = ["x" * (limit + 1), "€" * (limit // 3 + 1), 42, None, ["x"]]
        posts = {repr(bad): outcome(api.post("/api/safe", json={"name": "bad", field: bad}))
                 for bad in bad_values}
        puts = {repr(bad): outcome(api.put("/api/safe/full", json={field: bad}))
                for bad in bad_values}
        assert posts == puts == {repr(bad): (400, [message]) for bad in bad_values}, field
    assert safe_names(api) == ["full", "euros"]
    assert api.get("/api/safe/full").payload == before


def test_put_replaces_every_mutable_field_and_keeps_the_name(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json=FULL))
    assert written(api.put("/api/safe/personal", json={"display_name": "Renamed",
                                                       "name": "other", "last_updated": 1}))
    safe = api.get("/api/safe/personal").payload
    assert safe == {"name": "personal", "display_name": "Renamed", "enc_type": None,
                    "alg_type": None, "last_updated": safe["last_updated"]}
    assert recent(safe["last_updated"])
    assert api.get("/api/safe/other").status_code == 404

    assert written(api.put("/api/safe/personal", json={}))
    safe = api.get("/api/safe/personal").payload
    assert safe == {"name": "personal", "display_name": None, "enc_type": None,
                    "alg_type": None, "last_updated": safe["last_updated"]}
    assert safe_names(api) == ["personal"]


def test_a_rejected_put_changes_nothing(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json=FULL))
    before = api.get("/api/safe/personal").payload
    rejected(api.put("/api/safe/personal", json={"display_name": "ok", "enc_type": 7}),
             ENC_TYPE_ERROR)
    rejected(api.put("/api/safe/personal", json=[]), "safe must be a JSON object")
    assert api.get("/api/safe/personal").payload == before


def test_a_missing_or_deleted_safe_is_404_whatever_the_body(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json={"name": "here"}))
    assert written(api.post("/api/safe", json=FULL))
    assert written(api.delete("/api/safe/personal"))
    for name in ("nothere", "personal"):
        answers = {"GET": api.get(f"/api/safe/{name}").status_code,
                   "DELETE": api.delete(f"/api/safe/{name}").status_code}
        for kind, body in BODIES.items():
            answers[f"PUT {kind}"] = api.put(f"/api/safe/{name}", **body).status_code
        assert answers == dict.fromkeys(answers, 404), name
    assert safe_names(api) == ["here"]


def test_a_re_created_name_is_a_new_empty_safe(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json=FULL))
    assert written(api.post("/api/safe/personal/key", json={"name": "k1", "data": "old key"}))
    assert written(api.post("/api/safe/personal/coin", json={"name": "c1", "data": "old"}))
    assert written(api.delete("/api/safe/personal"))

    assert written(api.post("/api/safe", json={"name": "personal"}))
    assert api.get("/api/safe/personal").payload["display_name"] is None
    assert api.get("/api/safe/personal/key").payload == {"list": []}
    assert api.get("/api/safe/personal/coin").payload == {"list": []}
    assert api.get("/api/safe/personal/key/k1").status_code == 404
    assert api.get("/api/safe/personal/coin/c1").status_code == 404

    # The old names are free in the new safe.
    assert written(api.post("/api/safe/personal/coin", json={"name": "c1", "data": "new"}))
    assert api.get("/api/safe/personal/coin").payload["list"][0]["data"] == "new"


def test_without_a_profile_every_safe_route_is_403_before_any_other_check(api):
    answers = {f"{method} {path}": api.request(method, path).status_code
               for method, path in [("GET", "/api/safe"), ("GET", "/api/safe/"),
                                    ("GET", "/api/safe/s1"), ("DELETE", "/api/safe/s1")]}
    for kind, body in BODIES.items():
        answers[f"POST {kind}"] = api.post("/api/safe", **body).status_code
        answers[f"PUT {kind}"] = api.put("/api/safe/s1", **body).status_code
    assert answers == dict.fromkeys(answers, 403)
    assert api.get("/api/profile").status_code == 404


def test_a_deleted_profile_takes_its_safes_with_it(profile_ready):
    api = profile_ready
    assert written(api.post("/api/safe", json=FULL))
    assert written(api.delete("/api/profile"))
    assert api.get("/api/safe/").status_code == 403
    assert api.get("/api/safe/personal").status_code == 403
    assert api.post("/api/safe", json={"name": "personal"}).status_code == 403

    assert written(api.put("/api/profile", json={}))
    assert api.get("/api/safe").payload == {"list": []}
    assert api.get("/api/safe/personal").status_code == 404
    assert written(api.post("/api/safe", json={"name": "personal"}))
    assert api.get("/api/safe/personal").payload["display_name"] is None
