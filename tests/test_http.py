"""URL handling (HUTCH-API.md §2), headers and CORS (§3), the configuration and JWKS
endpoints (§5.3, §5.4), the static web app (§11), and what the browser showed (§12.4)."""

from __future__ import annotations

import json
from urllib.parse import unquote

import pytest

from tests.helpers import Api, decode_signed

NOT_FOUND = b'{"error":"resource not found","message":"no resource available at this address"}'
PREFLIGHT = {
    "Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS",
    "Access-Control-Allow-Headers":
        "Origin, X-Requested-With, Content-Type, Accept, Bearer, Authorization, DPoP",
    "Access-Control-Max-Age": "1800",
}
CONFIGURATION = (
    b'{"profile_endpoint":"http://localhost:4884/api/profile",'
    b'"safe_endpoint":"http://localhost:4884/api/safe","scope":"hutch",'
    b'"jwks_uri":"http://localhost:4884/jwks"}'
)
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")


def send_raw(client, method: str, target: str, headers=None, **kwargs):
    """Send ``target`` as the request line's path, as a server giving RAW_URI hands it on.

    The Werkzeug test client would read ``//x`` as a host, so the raw target goes
    into RAW_URI/REQUEST_URI and its decoded form into PATH_INFO, like a real server.
    """
    path, _, query = target.partition("?")
    environ = {"RAW_URI": target, "REQUEST_URI": target, "PATH_INFO": unquote(path),
               "QUERY_STRING": query}
    return client.open("/", method=method, headers=headers, environ_overrides=environ, **kwargs)


def bearer(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.token}"}


def assert_not_found_json(response):
    assert response.status_code == 404
    assert response.data == NOT_FOUND
    assert response.headers["Content-Type"] == "application/json"


def assert_empty_404(response):
    assert response.status_code == 404
    assert response.data == b""
    assert "Content-Type" not in response.headers


def snapshot(api: Api) -> dict:
    """Everything 'dev' can read, to prove a request changed nothing."""
    state = {"profile": api.get("/api/profile").payload,
             "safes": api.get("/api/safe").payload}
    for item in state["safes"]["list"]:
        name = item["name"]
        state[f"{name}/key"] = api.get(f"/api/safe/{name}/key").payload
        state[f"{name}/coin"] = api.get(f"/api/safe/{name}/coin").payload
    return state


@pytest.fixture
def stocked(profile_ready) -> Api:
    """'dev' with a profile, safe s, key k and coin c in it."""
    api = profile_ready
    assert api.post("/api/safe", json={"name": "s", "display_name": "S"}).status_code == 200
    assert api.post("/api/safe/s/key", json={"name": "k", "data": "kd"}).status_code == 200
    assert api.post("/api/safe/s/coin", json={"name": "c", "data": "cd"}).status_code == 200
    return api


# §2.1 Segment splitting --------------------------------------------------------------


@pytest.mark.parametrize("target", ["//api//profile/", "/api/profile/", "///api///profile//"])
def test_empty_segments_are_dropped_without_redirect(profile_ready, client, target):
    answer = send_raw(client, "GET", target, headers=bearer(profile_ready))
    assert answer.status_code == 200 and "Location" not in answer.headers
    assert decode_signed(answer, profile_ready.jwks).payload["name"] == "Dev"


def test_writes_through_doubled_slashes_reach_the_route(profile_ready, client):
    answer = send_raw(client, "PUT", "//api//profile//", headers=bearer(profile_ready),
                      json={"name": "Renamed"})
    assert answer.status_code == 200
    assert profile_ready.get("/api/profile").payload["name"] == "Renamed"


def test_test_suite_double_slash_jwks_is_a_jwt_verified_by_its_own_keys(client):
    """§9: the original suite requests http://localhost:4884//jwks with a lower-case accept."""
    answer = send_raw(client, "GET", "//jwks", headers={"accept": "application/jwt"})
    assert answer.status_code == 200
    jwks = client.get("/jwks").get_json()
    signed = decode_signed(answer, jwks)
    assert signed.payload == jwks
    assert signed.header["kid"] == jwks["keys"][0]["kid"]


def test_front_end_doubled_slash_configuration_and_its_preflight(client):
    """§12.4 #2: {hutchRootUrl}/.well-known/... with hutchRootUrl ending in '/'."""
    answer = send_raw(client, "GET", "//.well-known/hutch-configuration")
    assert answer.status_code == 200 and answer.data == CONFIGURATION
    preflight = send_raw(client, "OPTIONS", "//.well-known/hutch-configuration",
                         headers={"Access-Control-Request-Method": "GET"})
    assert preflight.status_code == 200
    for name, value in PREFLIGHT.items():
        assert preflight.headers[name] == value


def test_segments_are_split_from_path_info_when_the_server_gives_no_raw_uri(
        profile_ready, client):
    environ = {"RAW_URI": "", "REQUEST_URI": "", "PATH_INFO": "//api//profile/"}
    answer = client.get("/", headers=bearer(profile_ready), environ_overrides=environ)
    assert decode_signed(answer, profile_ready.jwks).payload["name"] == "Dev"


def test_encoded_slash_stays_inside_its_segment(client):
    # One segment 'api/profile' lies outside the prefix: a GET there is a missing
    # static file, not the profile route asking for a token.
    assert_empty_404(send_raw(client, "GET", "/api%2Fprofile"))
    assert_empty_404(send_raw(client, "GET", "/api%2fprofile/"))


def test_encoded_slash_in_a_safe_name_keeps_the_route_shape(stocked, client):
    # safe/{safe} has no POST: unrouted, 200 no-op. Split after decoding, it would be
    # safe/a/b, an unknown path (404).
    before = snapshot(stocked)
    answer = send_raw(client, "POST", "/api/safe/a%2Fb", headers=bearer(stocked),
                      json={"name": "ab"})
    assert answer.status_code == 200 and answer.data == b""
    assert snapshot(stocked) == before
    # And the unknown shape itself is a 404, so the two cases really differ.
    assert_not_found_json(send_raw(client, "POST", "/api/safe/a/b", headers=bearer(stocked)))


def test_literal_segments_are_case_sensitive(api, client):
    # /API is outside the prefix: no authentication, a GET is a missing static file.
    assert_empty_404(client.get("/API/profile", headers=bearer(api)))
    assert_empty_404(client.get("/API/profile"))
    assert_not_found_json(client.put("/API/profile", headers=bearer(api), json={"name": "x"}))
    assert api.get("/api/profile").status_code == 404  # nothing was created
    # Under the prefix, a wrongly cased resource is an unknown API path.
    assert_not_found_json(client.get("/api/Profile", headers=bearer(api)))
    assert client.get("/api/Profile").status_code == 401


@pytest.mark.parametrize("method", ["get", "Get"])
def test_methods_are_case_insensitive(profile_ready, client, method):
    answer = client.get("/api/profile", headers=bearer(profile_ready),
                        environ_overrides={"REQUEST_METHOD": method})
    assert decode_signed(answer, profile_ready.jwks).payload["name"] == "Dev"


def test_query_string_is_ignored_for_routing(stocked, client):
    answer = send_raw(client, "GET", "/api/safe/s?safe=other&key=k", headers=bearer(stocked))
    assert decode_signed(answer, stocked.jwks).payload["name"] == "s"
    answer = send_raw(client, "GET", "/api/safe/s/key/k?key=zz", headers=bearer(stocked))
    assert decode_signed(answer, stocked.jwks).payload["name"] == "k"


def test_collection_url_with_trailing_slash_is_the_list(stocked):
    """§2.1 segment count: /api/safe/s/key/ is the key list, never a key named ''."""
    assert [k["name"] for k in stocked.get("/api/safe/s/key/").payload["list"]] == ["k"]
    assert [c["name"] for c in stocked.get("/api/safe/s/coin//").payload["list"]] == ["c"]


def test_multi_segment_prefix_is_matched_segment_wise(make_app, idp):
    app = make_app(api_prefix="/v1/api/")
    client = app.test_client()
    api = Api(client, idp, prefix="/v1/api")
    assert api.put("/v1/api/profile", json={"name": "V"}).status_code == 200
    assert api.get("/v1/api/profile").payload["name"] == "V"
    assert send_raw(client, "GET", "//v1//api//profile", headers=bearer(api)).status_code == 200
    assert client.get("/v1/api/profile").status_code == 401
    # /api is no longer the API: no auth there, a GET is a missing static file.
    assert_empty_404(client.get("/api/profile"))
    assert_empty_404(client.get("/v1/profile"))
    document = client.get("/.well-known/hutch-configuration").get_json()
    assert document["profile_endpoint"] == "http://localhost:4884/v1/api/profile"
    assert document["safe_endpoint"] == "http://localhost:4884/v1/api/safe"


# §2.2 Requests that match no route ---------------------------------------------------


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/api/profile"),
    ("POST", "/api/profile/"),
    ("PATCH", "/api/profile"),
    ("DELETE", "/api/safe"),
    ("DELETE", "/api/safe/"),
    ("PUT", "/api/safe"),
    ("POST", "/api/safe/x"),
    ("POST", "/api/safe/s"),
    ("PATCH", "/api/safe/s"),
    ("PUT", "/api/safe/s/key/"),
    ("DELETE", "/api/safe/s/key"),
    ("POST", "/api/safe/s/key/k"),
    ("PUT", "/api/safe/s/coin/"),
    ("DELETE", "/api/safe/s/coin"),
    ("POST", "/api/safe/s/coin/c"),
])
def test_unrouted_method_on_a_known_path_is_a_200_no_op(stocked, client, method, path):
    before = snapshot(stocked)
    body = {"name": "x", "display_name": "changed", "data": "changed", "sign_kid": "RS256"}
    answer = client.open(path, method=method, headers=bearer(stocked), json=body)
    assert answer.status_code == 200
    assert answer.data == b""
    assert "Content-Type" not in answer.headers
    assert snapshot(stocked) == before


UNKNOWN_API_PATHS = ["/api", "/api/", "/api/foo", "/api/safes", "/api/profile/x",
                     "/api/safe/a/b", "/api/safe/a/key/b/c", "/api/safe/a/coin/b/c",
                     "/api/safe/a/keys"]


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
def test_unknown_api_path_with_a_token_is_the_default_404(api, client, method, path):
    assert_not_found_json(client.open(path, method=method, headers=bearer(api)))


@pytest.mark.parametrize("path", UNKNOWN_API_PATHS)
@pytest.mark.parametrize("headers", [{}, {"Authorization": "Basic ZGV2OmRldg=="},
                                     {"Authorization": "Bearer not-a-jwt"}])
def test_unknown_api_path_without_a_valid_token_is_401(client, path, headers):
    answer = client.post(path, headers=headers)
    assert answer.status_code == 401
    assert "WWW-Authenticate" in answer.headers


@pytest.mark.parametrize("path", ["/", "/index.html", "/foo/bar.js", "/apix/profile",
                                  "/.well-known/other"])
def test_get_outside_the_prefix_without_web_app_is_an_empty_404(client, path):
    assert_empty_404(client.get(path))


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/jwks"), ("PUT", "/jwks"), ("DELETE", "/.well-known/hutch-configuration"),
    ("POST", "/.well-known/hutch-configuration"), ("PUT", "/"), ("POST", "/index.html"),
    ("DELETE", "/foo"),
])
def test_other_methods_outside_the_prefix_are_the_default_404(client, method, path):
    assert_not_found_json(client.open(path, method=method, json={"a": 1}))


# §3.2 Preflight ------------------------------------------------------------------------


@pytest.mark.parametrize("target", [
    "/api/profile", "/api/safe/x/coin/y", "/api/unknown/path", "/api",
    "/.well-known/hutch-configuration", "/jwks", "/", "/nowhere.css", "//api//safe/",
])
@pytest.mark.parametrize("authorization", [None, "Bearer", "Bearer garbage"])
def test_options_on_any_path_is_a_preflight_without_auth(client, target, authorization):
    headers = {"Access-Control-Request-Method": "PUT", "Origin": "https://app.example",
               "Access-Control-Request-Headers": "authorization,content-type"}
    if authorization:
        headers["Authorization"] = authorization
    answer = send_raw(client, "OPTIONS", target, headers=headers)
    assert answer.status_code == 200
    assert answer.data == b""
    for name, value in PREFLIGHT.items():
        assert answer.headers[name] == value
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert "WWW-Authenticate" not in answer.headers


def test_options_changes_nothing(stocked, client):
    before = snapshot(stocked)
    assert client.options("/api/safe/s", headers=bearer(stocked)).status_code == 200
    assert client.options("/api/profile", headers=bearer(stocked), json={}).status_code == 200
    assert snapshot(stocked) == before


# §3.1 Default headers on every kind of answer ----------------------------------------


def _answers(client, api: Api) -> dict[str, object]:
    """One answer of every kind the server gives, keyed by a readable name."""
    auth = bearer(api)
    answers = {
        "403 profile not set": client.get("/api/safe", headers=auth),
        "404 no profile": client.get("/api/profile", headers=auth),
    }
    assert api.put("/api/profile", json={"name": "Dev"}).status_code == 200
    answers.update({
        "configuration json": client.get("/.well-known/hutch-configuration"),
        "configuration jwt": client.get("/.well-known/hutch-configuration",
                                        headers={"Accept": "application/jwt"}),
        "jwks": client.get("/jwks"),
        "signed api get": client.get("/api/profile", headers=auth),
        "write": client.put("/api/profile", headers=auth, json={"name": "Dev"}),
        "400 validation": client.post("/api/safe", headers=auth, json={}),
        "401": client.get("/api/profile"),
        "401 bad token": client.get("/api/profile", headers={"Authorization": "Bearer x.y.z"}),
        "404 api default body": client.get("/api/nothing", headers=auth),
        "404 empty outside prefix": client.get("/missing.html"),
        "404 other method outside prefix": client.post("/jwks"),
        "unrouted no-op": client.post("/api/profile", headers=auth),
        "preflight": client.options("/api/profile"),
    })
    expected = {"403 profile not set": 403, "404 no profile": 404, "400 validation": 400,
                "401": 401, "401 bad token": 401, "404 api default body": 404,
                "404 empty outside prefix": 404, "404 other method outside prefix": 404}
    for name, answer in answers.items():
        assert answer.status_code == expected.get(name, 200), name
    return answers


def test_default_headers_on_every_answer_with_wildcard_origin(api, client):
    for name, answer in _answers(client, api).items():
        headers = answer.headers
        assert headers.get("Access-Control-Allow-Origin") == "*", name
        # §13.12: credentials mean nothing with '*', so they are not claimed.
        assert "Access-Control-Allow-Credentials" not in headers, name
        assert headers.get("Cache-Control") == "no-store", name
        assert headers.get("Pragma") == "no-cache", name
        assert headers.get("X-Content-Type-Options") == "nosniff", name
        assert "Vary" not in headers or "Origin" not in headers["Vary"], name


def test_explicit_origin_is_echoed_with_credentials(make_app, idp):
    client = make_app(allow_origin="https://app.example").test_client()
    for name, answer in _answers(client, Api(client, idp)).items():
        assert answer.headers.get("Access-Control-Allow-Origin") == "https://app.example", name
        assert answer.headers.get("Access-Control-Allow-Credentials") == "true", name
        assert answer.headers.get("Cache-Control") == "no-store", name


def test_without_allow_origin_no_cors_origin_header(make_app, idp):
    client = make_app(allow_origin=None).test_client()
    for name, answer in _answers(client, Api(client, idp)).items():
        assert "Access-Control-Allow-Origin" not in answer.headers, name
        assert "Access-Control-Allow-Credentials" not in answer.headers, name
        assert answer.headers.get("Pragma") == "no-cache", name
    # The preflight still names methods and headers.
    preflight = client.options("/api/profile")
    assert preflight.headers["Access-Control-Allow-Methods"] == PREFLIGHT[
        "Access-Control-Allow-Methods"]


# §12.4 What the browser sends ----------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/hutch-configuration", "/jwks"])
@pytest.mark.parametrize("authorization", ["Bearer", "Bearer ", "Bearer garbage", "Basic x"])
def test_authorization_header_is_ignored_on_unauthenticated_routes(client, path,
                                                                   authorization):
    """§12.4 #1: the browser sends a bare 'Authorization: Bearer' before login."""
    answer = client.get(path, headers={"Authorization": authorization,
                                       "Accept": "application/jwt"})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/jwt"


def test_bare_bearer_on_the_api_is_401(client):
    assert client.get("/api/profile", headers={"Authorization": "Bearer"}).status_code == 401


def test_404_of_the_profile_carries_the_allow_origin(api):
    """§12.4 #4: the 'no profile yet' answer must be readable cross-origin."""
    answer = api.get("/api/profile")
    assert answer.status_code == 404
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


@pytest.mark.parametrize("content_type", ["application/json; charset=UTF-8",
                                          "application/json; charset=utf-8",
                                          "Application/JSON"])
def test_write_bodies_accept_any_case_of_the_json_media_type(api, content_type):
    """§12.4 #5."""
    answer = api.put("/api/profile", data=json.dumps({"name": "Cased"}),
                     headers={"Content-Type": content_type})
    assert answer.status_code == 200
    assert api.get("/api/profile").payload["name"] == "Cased"


# §5.3 Configuration ---------------------------------------------------------------------


def test_configuration_is_the_exact_compact_json(client):
    answer = client.get("/.well-known/hutch-configuration")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.data == CONFIGURATION  # no oidc_server_remote_config: not configured


def test_configuration_trailing_slash_is_optional(client):
    assert client.get("/.well-known/hutch-configuration/").data == CONFIGURATION


@pytest.mark.parametrize("accept", ["application/jwt", "APPLICATION/JWT",
                                    "application/json, application/jwt",
                                    "application/jwt;q=0.5, */*;q=0.1"])
@pytest.mark.parametrize("path", ["/.well-known/hutch-configuration", "/jwks"])
def test_accept_jwt_signs_with_the_first_key(client, key_files, accept, path):
    plain = client.get(path).get_json()
    answer = client.get(path, headers={"Accept": accept})
    assert answer.headers["Content-Type"] == "application/jwt"
    signed = decode_signed(answer, client.get("/jwks").get_json())
    first = json.loads(key_files["sign"].read_text())["keys"][0]
    assert signed.header["kid"] == first["kid"] == "RS256"
    assert signed.header["alg"] == "RS256"
    assert signed.payload == plain


@pytest.mark.parametrize("accept", [None, "*/*", "application/json", "application/*",
                                    "application/jwt;q=0", "application/jwt; q=0.0",
                                    "application/jwt-set", "text/html"])
@pytest.mark.parametrize("path", ["/.well-known/hutch-configuration", "/jwks"])
def test_other_accept_values_give_json(client, accept, path):
    answer = client.get(path, headers={"Accept": accept} if accept else {})
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "application/json"
    assert isinstance(json.loads(answer.data), dict)


def test_front_end_verifies_configuration_with_keys0_of_the_jwks(client):
    """§12.1: the front end imports keys[0] of /jwks and verifies both documents with it."""
    jwks = decode_signed(client.get("/jwks", headers={"Accept": "application/jwt"}),
                         client.get("/jwks").get_json()).payload
    first_only = {"keys": [jwks["keys"][0]]}
    answer = client.get("/.well-known/hutch-configuration", headers={"Accept": "application/jwt"})
    assert decode_signed(answer, first_only).payload == json.loads(CONFIGURATION)


def test_external_url_without_trailing_slash_is_normalized(make_app):
    client = make_app(external_url="https://vault.example/hutch",
                      hutch_scope="hutch openid").test_client()
    assert client.get("/.well-known/hutch-configuration").data == (
        b'{"profile_endpoint":"https://vault.example/hutch/api/profile",'
        b'"safe_endpoint":"https://vault.example/hutch/api/safe","scope":"hutch openid",'
        b'"jwks_uri":"https://vault.example/hutch/jwks"}'
    )


# §5.4 JWKS --------------------------------------------------------------------------------


def test_jwks_lists_public_keys_only_in_file_order(client, key_files):
    private = json.loads(key_files["sign"].read_text())["keys"]
    published = client.get("/jwks").get_json()
    assert list(published) == ["keys"]
    assert [k["kid"] for k in published["keys"]] == [k["kid"] for k in private] == [
        "RS256", "ES256"]
    for mine, public in zip(private, published["keys"], strict=True):
        assert not set(public) & set(PRIVATE_MEMBERS), public
        assert set(public) <= {"kty", "kid", "alg", "use", "crv", "n", "e", "x", "y",
                               "x5c", "x5u", "x5t", "x5t#S256"}
        assert public == {k: v for k, v in mine.items() if k in public}
    assert {"n", "e"} <= set(published["keys"][0])
    assert {"crv", "x", "y"} <= set(published["keys"][1])


def test_jwks_trailing_slash_is_tolerated(client):
    assert client.get("/jwks/").get_json() == client.get("/jwks").get_json()


def test_head_on_jwks_answers_like_get_without_a_body(client):
    answer = client.head("/jwks")
    assert answer.status_code == 200
    assert answer.data == b""
    assert answer.headers["Content-Type"] == "application/json"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"


# §11 Static web app ---------------------------------------------------------------------


@pytest.fixture
def webapp(make_app, tmp_path):
    web = tmp_path / "web"
    (web / "sub").mkdir(parents=True)
    (web / "api").mkdir()
    (web / "index.html").write_text("<!doctype html><title>Hutch</title>")
    (web / "config.json").write_text('{"hutchRootUrl":"/"}')
    (web / "sub" / "a.js").write_text("console.log('a');")
    (web / "data.hutchdata").write_bytes(b"\x00\x01")
    (web / "api" / "profile").write_text("static profile")
    (web / "api" / "notes.txt").write_text("static notes")
    (web / "jwks").write_text("static jwks")
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    return make_app(app_files_path=str(web)).test_client()


def test_root_serves_index_html(webapp):
    answer = webapp.get("/")
    assert answer.status_code == 200
    assert answer.mimetype == "text/html"
    assert answer.data == b"<!doctype html><title>Hutch</title>"
    assert answer.headers["Access-Control-Allow-Origin"] == "*"
    assert answer.headers["Cache-Control"] == "no-store"
    assert answer.headers["X-Content-Type-Options"] == "nosniff"


@pytest.mark.parametrize(("target", "mimetype", "body"), [
    ("/config.json", "application/json", b'{"hutchRootUrl":"/"}'),
    ("/config.json?v=2", "application/json", b'{"hutchRootUrl":"/"}'),
    ("/index.html", "text/html", b"<!doctype html><title>Hutch</title>"),
    ("/sub/a.js", "text/javascript", b"console.log('a');"),
    ("//sub//a.js", "text/javascript", b"console.log('a');"),
    ("/data.hutchdata", "application/octet-stream", b"\x00\x01"),
])
def test_files_are_served_by_extension(webapp, target, mimetype, body):
    answer = send_raw(webapp, "GET", target)
    assert answer.status_code == 200
    assert answer.mimetype == mimetype
    assert answer.data == body


def test_configured_mime_types_win(make_app, tmp_path):
    web = tmp_path / "web2"
    web.mkdir()
    (web / "data.hutchdata").write_text("x")
    client = make_app(app_files_path=str(web),
                      app_files_mime_types='{"hutchdata": "application/x-hutch"}').test_client()
    assert client.get("/data.hutchdata").mimetype == "application/x-hutch"


@pytest.mark.parametrize("target", [
    "/../secret.txt", "/sub/../../secret.txt", "/..%2Fsecret.txt", "/sub/..%2F..%2Fsecret.txt",
    "/%2e%2e/secret.txt", "/%2E%2E%2Fsecret.txt", "/..\\secret.txt", "/%5C..%5Csecret.txt",
])
def test_traversal_outside_the_folder_is_an_empty_404(webapp, target):
    answer = send_raw(webapp, "GET", target)
    assert_empty_404(answer)
    assert b"SECRET" not in answer.data


@pytest.mark.parametrize("target", ["/missing.html", "/sub/missing.js", "/sub", "/sub/",
                                    "/config.json/extra"])
def test_missing_files_are_an_empty_404(webapp, target):
    assert_empty_404(webapp.get(target))


def test_api_paths_are_never_served_from_the_web_app(webapp, idp):
    api = Api(webapp, idp)
    assert webapp.get("/api/profile").status_code == 401
    assert webapp.get("/api/notes.txt").status_code == 401
    assert api.get("/api/profile").status_code == 404  # the API's "no profile yet"
    assert_not_found_json(webapp.get("/api/notes.txt", headers=bearer(api)))
    assert webapp.get("/jwks").get_json()["keys"][0]["kid"] == "RS256"


def test_other_methods_on_web_app_files_are_the_default_404(webapp):
    assert_not_found_json(webapp.post("/index.html"))
    assert_not_found_json(webapp.put("/config.json", json={}))
