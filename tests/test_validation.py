"""Request bodies and validation errors (HUTCH-API.md §6), on every resource that takes one.

A rejected body changes nothing, and every 400 is a JSON array of messages.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest


@dataclass(frozen=True)
class Endpoint:
    method: str
    path: str
    not_an_object: str
    valid: dict  # a body this endpoint accepts

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


ENDPOINTS = [
    Endpoint("PUT", "/api/profile", "profile must be a JSON object", {"name": "Dev 2"}),
    Endpoint("POST", "/api/safe", "safe must be a JSON object", {"name": "s2"}),
    Endpoint("PUT", "/api/safe/s1", "safe must be a JSON object", {"display_name": "S"}),
    Endpoint("POST", "/api/safe/s1/key", "safe key must be a JSON object",
             {"name": "k2", "data": "x"}),
    Endpoint("PUT", "/api/safe/s1/key/k1", "safe key must be a JSON object", {"data": "x"}),
    Endpoint("POST", "/api/safe/s1/coin", "safe coin must be a JSON object",
             {"name": "c2", "data": "x"}),
    Endpoint("PUT", "/api/safe/s1/coin/c1", "safe coin must be a JSON object", {"data": "x"}),
]
CREATES = [endpoint for endpoint in ENDPOINTS if endpoint.method == "POST" or
           endpoint.path == "/api/profile"]


@pytest.fixture
def ready(profile_ready):
    """'dev' with a profile, a safe 's1' holding key 'k1' and coin 'c1'."""
    api = profile_ready
    assert api.post("/api/safe", json={"name": "s1", "display_name": "One"}).status_code == 200
    assert api.post("/api/safe/s1/key", json={"name": "k1", "data": "key"}).status_code == 200
    assert api.post("/api/safe/s1/coin", json={"name": "c1", "data": "coin"}).status_code == 200
    return api


def everything(api) -> dict:
    """What 'dev' can read: a rejected request must leave all of it as it was."""
    return {path: api.get(path).payload for path in
            ("/api/profile", "/api/safe", "/api/safe/s1/key", "/api/safe/s1/coin")}


def send(api, endpoint: Endpoint, **kwargs):
    return api.request(endpoint.method, endpoint.path, **kwargs)


def outcome(answer) -> tuple[int, object]:
    """Status and body; the body is decoded only when labelled as JSON."""
    body = answer.get_json() if answer.mimetype == "application/json" else answer.data
    return answer.status_code, body


def raw(body: bytes, content_type: str = "application/json") -> dict:
    return {"data": body, "content_type": content_type}


def test_a_body_that_is_not_a_json_object_is_400(ready):
    api = ready
    before = everything(api)
    for endpoint in ENDPOINTS:
        valid = json.dumps(endpoint.valid)
        bodies = {
            "not json": raw(b"name=s2&data=x"),
            "plain text": raw(valid.encode(), "text/plain"),
            "form": raw(valid.encode(), "application/x-www-form-urlencoded"),
            "no content type": {"data": valid.encode()},
            "empty": raw(b""),
            "array": {"json": [endpoint.valid]},
            "string": {"json": "s2"},
            "number": raw(b"42"),
            "null": raw(b"null"),
            "truncated": raw(valid[:-1].encode()),
        }
        answers = {kind: outcome(send(api, endpoint, **body)) for kind, body in bodies.items()}
        assert answers == dict.fromkeys(bodies, (400, [endpoint.not_an_object])), endpoint
    assert everything(api) == before


CONTENT_TYPES = ["application/json; charset=UTF-8", "Application/JSON; Charset=utf-8",
                 "APPLICATION/JSON"]


def test_the_json_media_type_is_matched_without_regard_to_case(ready):
    """The front end sends `application/json; charset=UTF-8` (§12.4 item 5)."""
    api = ready
    for number, content_type in enumerate(CONTENT_TYPES):
        for endpoint in ENDPOINTS:
            body = dict(endpoint.valid)
            if endpoint.method == "POST":
                body["name"] += f"x{number}"
            answer = send(api, endpoint, **raw(json.dumps(body).encode(), content_type))
            assert (answer.status_code, answer.data) == (200, b""), (endpoint, content_type)
    assert api.get("/api/profile").payload["name"] == "Dev 2"
    assert [safe["name"] for safe in api.get("/api/safe").payload["list"]] == [
        "s1", "s2x0", "s2x1", "s2x2"]
    assert api.get("/api/safe/s1").payload["display_name"] == "S"
    assert [key["name"] for key in api.get("/api/safe/s1/key").payload["list"]] == [
        "k1", "k2x0", "k2x1", "k2x2"]
    assert [coin["data"] for coin in api.get("/api/safe/s1/coin").payload["list"]] == [
        "x", "x", "x", "x"]


def test_unknown_members_are_ignored(ready):
    """The front end sends whole objects back, and extra flags (§12.4 item 6)."""
    api = ready
    extra = {"last_updated": 1, "offline": False, "fortune": "f", "nested": {"a": [1, None]}}
    for endpoint in ENDPOINTS:
        assert send(api, endpoint, json={**extra, **endpoint.valid}).status_code == 200, endpoint
    assert "fortune" not in api.get("/api/profile").payload
    safe = api.get("/api/safe/s2").payload
    assert set(safe) == {"name", "display_name", "enc_type", "alg_type", "last_updated"}
    assert safe["last_updated"] != 1
    assert set(api.get("/api/safe/s1/coin/c2").payload) == {"name", "data", "last_updated"}


NULLS = [
    ("PUT", "/api/profile", "name", "name must be a string of maximum 256 characters"),
    ("PUT", "/api/profile", "message", "message must be a string of maximum 256 characters"),
    ("PUT", "/api/profile", "picture", "picture must be a string of maximum 16M characters"),
    ("PUT", "/api/profile", "sign_kid", "invalid kid"),
    ("POST", "/api/safe", "display_name",
     "display_name must be a string of maximum 512 characters"),
    ("POST", "/api/safe", "enc_type", "enc_type must be a string of maximum 128 characters"),
    ("PUT", "/api/safe/s1", "alg_type", "alg_type must be a string of maximum 128 characters"),
    ("POST", "/api/safe/s1/key", "type", "type must be a string of maximum 128 characters"),
    ("PUT", "/api/safe/s1/key/k1", "display_name",
     "display_name must be a string of maximum 512 characters"),
]


def test_an_explicit_null_for_an_optional_member_is_400(ready):
    api = ready
    before = everything(api)
    bodies = {"/api/safe": {"name": "s2"}, "/api/safe/s1/key": {"name": "k2", "data": "x"},
              "/api/safe/s1/key/k1": {"data": "x"}}
    answers = {f"{method} {path} {field}": outcome(api.request(
        method, path, json={**bodies.get(path, {}), field: None}))
        for method, path, field, _ in NULLS}
    assert answers == {f"{method} {path} {field}": (400, [message])
                       for method, path, field, message in NULLS}
    assert everything(api) == before


BAD_STRINGS = {
    "escaped NUL": b'"a\\u0000b"',
    "raw NUL": b'"a\x00b"',
    "lone high surrogate": b'"a\\ud800b"',
    "lone low surrogate": b'"\\udc00"',
    "reversed pair": b'"\\udc00\\ud800"',
    "invalid UTF-8": b'"caf\xe9"',
    "truncated UTF-8": b'"\xe2\x82"',
    "encoded surrogate": b'"\xed\xa0\x80"',
    "overlong UTF-8": b'"\xc0\xaf"',
}


def test_strings_with_nul_surrogates_or_bad_utf8_are_400_and_never_stored(ready):
    api = ready
    before = everything(api)
    for endpoint in ENDPOINTS:
        field = "data" if "data" in endpoint.valid else next(
            name for name in ("display_name", "name") if name in endpoint.valid)
        answers = {}
        for kind, bad in BAD_STRINGS.items():
            body = dict(endpoint.valid)
            body[field] = "@BAD@"
            document = json.dumps(body).encode().replace(b'"@BAD@"', bad)
            answers[f"{kind} in {field}"] = outcome(send(api, endpoint, **raw(document)))
            # Even in a member nobody reads, the document as a whole is refused.
            document = json.dumps({**endpoint.valid, "unused": "@BAD@"}).encode()
            answers[f"{kind} in an unknown member"] = outcome(
                send(api, endpoint, **raw(document.replace(b'"@BAD@"', bad))))
        assert answers == dict.fromkeys(answers, (400, [endpoint.not_an_object])), endpoint
    assert everything(api) == before


def test_non_standard_numbers_are_400(ready):
    api = ready
    before = everything(api)
    for endpoint in CREATES:
        valid = json.dumps(endpoint.valid)[:-1].encode()  # without its closing brace
        bodies = {constant: valid + b', "unused": ' + constant.encode() + b"}"
                  for constant in ("NaN", "Infinity", "-Infinity")}
        answers = {kind: outcome(send(api, endpoint, **raw(body))) for kind, body in bodies.items()}
        assert answers == dict.fromkeys(bodies, (400, [endpoint.not_an_object])), endpoint
    assert everything(api) == before


def test_deep_nesting_and_huge_integers_are_400_saying_what_is_wrong(ready):
    """Valid JSON the parser cannot take gets a message naming the fault, not "not an object"."""
    api = ready
    before = everything(api)
    deep = ["the JSON body is nested too deeply"]
    huge = ["a number in the JSON body has more than 4300 digits"]
    for endpoint in ENDPOINTS:
        valid = json.dumps(endpoint.valid)[:-1].encode()  # without its closing brace
        bodies = {
            "100000 [": (raw(b"[" * 100_000 + b"]" * 100_000), deep),
            "100000 [ in a member": (raw(valid + b', "unused": ' + b"[" * 100_000
                                         + b"]" * 100_000 + b"}"), deep),
            "5000 digits": (raw(b"9" * 5000), huge),
            "5000 digits in a member": (raw(valid + b', "unused": -' + b"9" * 5000 + b"}"),
                                        huge),
        }
        answers = {kind: outcome(send(api, endpoint, **body)) for kind, (body, _) in bodies.items()}
        assert answers == {kind: (400, messages) for kind, (_, messages) in bodies.items()}, \
            endpoint
    assert everything(api) == before


def test_a_repeated_member_is_400_naming_it(ready):
    """Two "data" members: which one the client meant is unknowable, so neither is stored."""
    api = ready
    before = everything(api)
    for endpoint in ENDPOINTS:
        valid = json.dumps(endpoint.valid)[:-1].encode()
        member = next(iter(endpoint.valid))
        bodies = {
            "top level": (valid + b', "' + member.encode() + b'": "other"}', member),
            "unknown member": (valid + b', "x": 1, "x": 2}', "x"),
            "nested": (valid + b', "unused": [{"a": {"b": 1, "b": 1}}]}', "b"),
            "escaped": (valid + b', "n\\u0061me": 1, "name": 2}', "name"),
        }
        answers = {kind: outcome(send(api, endpoint, **raw(body)))
                   for kind, (body, _) in bodies.items()}
        assert answers == {kind: (400, [f'member "{name}" appears more than once in the JSON body'])
                           for kind, (_, name) in bodies.items()}, endpoint
    assert everything(api) == before


def test_a_malformed_body_on_a_missing_item_is_still_404(ready):
    """§7.5: PUT on a missing item answers 404 before looking at the body."""
    answer = ready.put("/api/safe/s1/coin/nope", **raw(b'{"data": "a", "data": "b"}'))
    assert answer.status_code == 404


def test_a_body_over_17_mib_is_413_with_a_json_body(ready):
    api = ready
    before = everything(api)
    data = "a" * (17 * 1024 * 1024)
    answer = api.post("/api/safe/s1/coin", **raw(json.dumps({"name": "big", "data": data})
                                                 .encode()))
    assert answer.status_code == 413
    assert answer.mimetype == "application/json"
    assert isinstance(answer.get_json(), dict)
    assert everything(api) == before


def test_every_problem_is_reported_at_once_in_field_order(ready):
    api = ready
    answer = api.put("/api/profile", json={"sign_kid": "nope", "picture": 1, "message": 2,
                                           "name": 3})
    assert outcome(answer) == (400, ["name must be a string of maximum 256 characters",
                                     "message must be a string of maximum 256 characters",
                                     "picture must be a string of maximum 16M characters",
                                     "invalid kid"])
    answer = api.post("/api/safe", json={"alg_type": 1, "enc_type": 2, "display_name": 3})
    assert outcome(answer) == (400, [
        "name must be a string of maximum 128 characters",
        "display_name must be a string of maximum 512 characters",
        "enc_type must be a string of maximum 128 characters",
        "alg_type must be a string of maximum 128 characters"])
    answer = api.post("/api/safe/s1/key", json={"data": 1, "type": 2, "display_name": 3})
    assert outcome(answer) == (400, [
        "name must be a string of maximum 128 characters",
        "display_name must be a string of maximum 512 characters",
        "type must be a string of maximum 128 characters",
        "data must be a string of maximum 16M characters"])
    answer = api.post("/api/safe/s1/coin", json={"data": 1})
    assert outcome(answer) == (400, ["name must be a string of maximum 128 characters",
                                     "data must be a string of maximum 16M characters"])


PROFILE_LIMITS = [
    ("name", 256, "name must be a string of maximum 256 characters"),
    ("message", 512, "message must be a string of maximum 256 characters"),  # (sic)
    ("picture", 1024 * 1024, "picture must be a string of maximum 16M characters"),  # (sic)
]


def test_profile_limits_are_counted_in_utf8_bytes(api):
    for field, limit, message in PROFILE_LIMITS:
        for value in ("x" * limit, "x" * (limit - 3) + "€"):
            assert api.put("/api/profile", json={field: value}).status_code == 200, field
            assert api.get("/api/profile").payload[field] == value
        for value in ("x" * (limit + 1), "x" * (limit - 2) + "€", 42):
            assert outcome(api.put("/api/profile", json={field: value})) == (400, [message])
        assert api.get("/api/profile").payload[field] == "x" * (limit - 3) + "€"


BAD_KIDS = [42, "error", "", None, ["ES256"], {"kid": "ES256"}, "es256", "ES256 "]


def test_an_unknown_sign_kid_is_400_invalid_kid(profile_ready):
    api = profile_ready
    answers = {repr(kid): outcome(api.put("/api/profile", json={"name": "x", "sign_kid": kid}))
               for kid in BAD_KIDS}
    assert answers == {repr(kid): (400, ["invalid kid"]) for kid in BAD_KIDS}
    assert api.get("/api/profile").payload["sign_kid"] == "ES256"
    assert api.put("/api/profile", json={"sign_kid": "RS256"}).status_code == 200
    assert api.get("/api/profile").jose_header["kid"] == "RS256"
