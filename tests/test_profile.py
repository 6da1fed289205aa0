"""Profile routes (HUTCH-API.md §7.1) and the odd cases of §9 that touch them."""

from __future__ import annotations

import time


def test_no_profile_is_404(api):
    assert api.get("/api/profile").status_code == 404


def test_put_then_get_round_trip(api):
    body = {"name": "Dev", "message": "hello", "picture": "data:image/png;base64,AA",
            "sign_kid": "ES256", "fortune": "ignored", "last_updated": 1}
    assert api.put("/api/profile", json=body).status_code == 200
    answer = api.get("/api/profile")
    assert answer.payload == {"name": "Dev", "message": "hello",
                              "picture": "data:image/png;base64,AA", "sign_kid": "ES256",
                              "last_updated": answer.payload["last_updated"]}
    assert abs(answer.payload["last_updated"] - time.time()) <= 2
    assert answer.jose_header["kid"] == "ES256" and answer.jose_header["alg"] == "ES256"


def test_empty_put_clears_every_field_and_signs_with_first_key(api):
    api.put("/api/profile", json={"name": "Dev", "sign_kid": "ES256"})
    assert api.put("/api/profile/", json={}).status_code == 200
    answer = api.get("/api/profile/")
    assert answer.payload["name"] is None and answer.payload["sign_kid"] is None
    assert answer.jose_header["kid"] == "RS256"


def test_write_answers_are_empty_and_unlabelled(api):
    answer = api.put("/api/profile", json={})
    assert answer.status_code == 200 and answer.data == b""
    assert "Content-Type" not in answer.headers


def test_delete_profile_is_200_even_when_missing(api):
    assert api.delete("/api/profile/").status_code == 200
    api.put("/api/profile", json={"name": "x"})
    assert api.delete("/api/profile").status_code == 200
    assert api.get("/api/profile").status_code == 404
