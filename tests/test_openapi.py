"""The OpenAPI document (/openapi.json) describes exactly the routes the app serves."""

from __future__ import annotations

import re

from hutch.api.openapi import UNDOCUMENTED


def _app_operations(app) -> set[tuple[str, str]]:
    found = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint in UNDOCUMENTED or rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[a-z]+:)?([a-z_]+)>", r"{\1}", rule.rule)
        path = re.sub(r"/(key|coin)/\{item\}", r"/\1/{\1}", path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            found.add((path, method.lower()))
    return found


def test_document_is_public_json_openapi_31(client):
    answer = client.get("/openapi.json")
    assert answer.status_code == 200 and answer.mimetype == "application/json"
    assert answer.get_json()["openapi"] == "3.1.0"


def test_every_route_is_documented_and_nothing_else(app, client):
    document = client.get("/openapi.json").get_json()
    documented = {(path, method) for path, ops in document["paths"].items() for method in ops}
    assert documented == _app_operations(app)
    assert ("/api/safe/{safe}/coin/{coin}", "put") in documented


def test_signed_answers_name_their_payload_schema(client):
    document = client.get("/openapi.json").get_json()
    get_coin = document["paths"]["/api/safe/{safe}/coin/{coin}"]["get"]["responses"]["200"]
    jwt = get_coin["content"]["application/jwt"]
    assert jwt["x-jws-payload"] == {"$ref": "#/components/schemas/Coin"}
    listing = document["paths"]["/api/safe"]["get"]["responses"]["200"]
    items = listing["content"]["application/jwt"]["x-jws-payload"]["properties"]["list"]
    assert items["items"] == {"$ref": "#/components/schemas/Safe"}
    coin_in = document["components"]["schemas"]["CoinInput"]
    assert set(coin_in["required"]) == {"name", "data"}


def test_lists_document_their_pages_and_writes_the_quota(client):
    document = client.get("/openapi.json").get_json()
    for path in ("/api/safe", "/api/safe/{safe}/key", "/api/safe/{safe}/coin"):
        listing = document["paths"][path]["get"]
        query = {p["name"]: p for p in listing["parameters"] if p["in"] == "query"}
        assert set(query) == {"limit", "after"}
        assert query["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}
        payload = listing["responses"]["200"]["content"]["application/jwt"]["x-jws-payload"]
        assert set(payload["properties"]) == {"list", "next"} and payload["required"] == ["list"]
        assert "400" in listing["responses"]
    writes = [(path, method) for path, ops in document["paths"].items()
              for method, op in ops.items() if "507" in op["responses"]]
    assert sorted(writes) == sorted([
        ("/api/profile", "put"), ("/api/safe", "post"), ("/api/safe/{safe}", "put"),
        ("/api/safe/{safe}/key", "post"), ("/api/safe/{safe}/key/{key}", "put"),
        ("/api/safe/{safe}/coin", "post"), ("/api/safe/{safe}/coin/{coin}", "put")])
