"""Isolation between users (HUTCH-API.md §7): another user's safe is a missing safe.

'mallory', with her own profile, tries every route on the names of 'dev''s safe,
key and coin. Each answer must be byte for byte the answer for names that do not
exist at all, and 'dev''s data must be untouched afterwards.
"""

from __future__ import annotations

import pytest

ROUTES = [
    ("GET", "/api/safe/{safe}", None),
    ("PUT", "/api/safe/{safe}", {"display_name": "mine now"}),
    ("PUT", "/api/safe/{safe}", {"display_name": 42}),
    ("GET", "/api/safe/{safe}/{kind}", None),
    ("POST", "/api/safe/{safe}/{kind}", {"name": "planted", "data": "x"}),
    ("POST", "/api/safe/{safe}/{kind}", {"name": "{item}", "data": "x"}),
    ("POST", "/api/safe/{safe}/{kind}", {"name": "{item}"}),
    ("GET", "/api/safe/{safe}/{kind}/{item}", None),
    ("PUT", "/api/safe/{safe}/{kind}/{item}", {"data": "overwritten"}),
    ("PUT", "/api/safe/{safe}/{kind}/{item}", {"data": 42}),
    ("DELETE", "/api/safe/{safe}/{kind}/{item}", None),
    ("DELETE", "/api/safe/{safe}", None),  # last: it would take the items with it
]


@pytest.fixture
def victim(profile_ready):
    """'dev' with safe 'vault' holding key 'kv' and coin 'cv'."""
    api = profile_ready
    assert api.post("/api/safe", json={"name": "vault", "display_name": "V"}).status_code == 200
    assert api.post("/api/safe/vault/key", json={"name": "kv", "data": "wrapped"}
                    ).status_code == 200
    assert api.post("/api/safe/vault/coin", json={"name": "cv", "data": "secret"}
                    ).status_code == 200
    return api


@pytest.fixture
def mallory(other):
    """The second user, with her own profile and a safe of her own."""
    assert other.put("/api/profile", json={"name": "Mallory"}).status_code == 200
    assert other.post("/api/safe", json={"name": "hers"}).status_code == 200
    return other


def everything(api) -> dict:
    return {path: api.get(path).payload for path in
            ("/api/profile", "/api/safe", "/api/safe/vault", "/api/safe/vault/key",
             "/api/safe/vault/coin", "/api/safe/vault/key/kv", "/api/safe/vault/coin/cv")}


def fill(value, **names):
    if isinstance(value, str):
        return value.format(**names)
    if isinstance(value, dict):
        return {key: fill(item, **names) for key, item in value.items()}
    return value


def answer(api, method: str, path: str, body, **names) -> tuple:
    response = api.request(method, fill(path, **names),
                           **({} if body is None else {"json": fill(body, **names)}))
    return response.status_code, response.headers.get("Content-Type"), response.data


@pytest.mark.parametrize("kind", ["key", "coin"])
def test_another_users_safe_looks_exactly_like_a_missing_one(victim, mallory, kind):
    before = everything(victim)
    item = {"key": "kv", "coin": "cv"}[kind]
    for method, path, body in ROUTES:
        theirs = answer(mallory, method, path, body, safe="vault", kind=kind, item=item)
        nowhere = answer(mallory, method, path, body, safe="nosuch", kind=kind, item="nosuch")
        assert theirs == nowhere, (method, path, body)
        assert theirs[0] == 404, (method, path, body)
    assert everything(victim) == before
    assert [safe["name"] for safe in mallory.get("/api/safe").payload["list"]] == ["hers"]


def test_the_same_safe_name_makes_two_separate_safes(victim, mallory):
    before = everything(victim)
    assert mallory.post("/api/safe", json={"name": "vault", "display_name": "M"}
                        ).status_code == 200
    assert mallory.get("/api/safe/vault/key").payload == {"list": []}
    assert mallory.get("/api/safe/vault/coin/cv").status_code == 404
    assert mallory.post("/api/safe/vault/coin", json={"name": "cv", "data": "hers"}
                        ).status_code == 200
    assert mallory.put("/api/safe/vault", json={"display_name": "Mine"}).status_code == 200
    assert mallory.delete("/api/safe/vault/coin/cv").status_code == 200
    assert mallory.delete("/api/safe/vault").status_code == 200
    assert everything(victim) == before


def test_lists_never_show_another_users_safes(victim, mallory):
    assert victim.post("/api/safe", json={"name": "second"}).status_code == 200
    assert mallory.post("/api/safe", json={"name": "vault"}).status_code == 200
    assert [safe["name"] for safe in victim.get("/api/safe").payload["list"]] == [
        "vault", "second"]
    assert [safe["name"] for safe in mallory.get("/api/safe").payload["list"]] == [
        "hers", "vault"]
    assert victim.get("/api/safe/hers").status_code == 404


def test_a_user_without_a_profile_sees_nothing_of_the_others(victim, other):
    for path in ("/api/safe", "/api/safe/vault", "/api/safe/vault/key",
                 "/api/safe/vault/coin/cv"):
        assert other.get(path).status_code == 403, path
    assert other.delete("/api/safe/vault").status_code == 403
    assert victim.get("/api/safe/vault").payload["display_name"] == "V"
