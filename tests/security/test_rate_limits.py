"""Abuse limits (``[rate_limit]``, hutch/limits.py): per user, per address for failed
authentication, per address on what needs no token; X-Forwarded-For trusted only
through configured hops; Redis as shared storage; a dead storage fails open.

Clients are given TEST-NET addresses: loopback peers are exempt by default.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid

import pytest

from hutch.http import API_CSP
from hutch.settings import ConfigError, RateLimitSettings, load_settings
from tests.helpers import Api, IdP

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
ALICE_ADDR, BOB_ADDR, PROXY_ADDR = "192.0.2.10", "198.51.100.20", "10.0.0.1"
BAD = {"Authorization": "Bearer not.a.token"}


def at(address: str, **environ) -> dict:
    return {"environ_base": {"REMOTE_ADDR": address, **environ}}


def assert_too_many(answer, *, max_wait: int = 60):
    assert answer.status_code == 429, (answer.status_code, answer.data)
    assert answer.headers["Content-Type"] == "application/json"
    body = answer.get_json()
    assert body["error"] == "too many requests" and "retry" in body["message"]
    assert 1 <= int(answer.headers["Retry-After"]) <= max_wait + 1
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Content-Security-Policy"] == API_CSP
    assert "WWW-Authenticate" not in answer.headers


@pytest.fixture
def limited(make_app, idp):
    """An app with small limits, and a factory of users speaking from an address."""
    def build(**limits):
        app = make_app(rate_limit=limits)
        client = app.test_client()

        def user(sub: str, address: str = ALICE_ADDR) -> Api:
            api = Api(client, idp, sub)
            api.client = _From(client, address)
            return api

        return client, user
    return build


class _From:
    """A test client whose requests all come from one address."""

    def __init__(self, client, address: str):
        self.client, self.address = client, address

    def open(self, *args, **kwargs):
        kwargs.setdefault("environ_base", {}).setdefault("REMOTE_ADDR", self.address)
        return self.client.open(*args, **kwargs)

    def get(self, *args, **kwargs):
        return self.open(*args, method="GET", **kwargs)


# Per user -----------------------------------------------------------------------------


def test_per_user_limit_answers_429_with_retry_after_and_json(limited):
    _, user = limited(per_user="3/minute")
    alice = user("alice")
    assert alice.put("/api/profile", json={"name": "A"}).status_code == 200
    assert alice.get("/api/profile").status_code == 200
    assert alice.get("/api/profile").status_code == 200
    answer = alice.get("/api/profile")
    assert_too_many(answer)
    assert alice.put("/api/profile", json={"name": "B"}).status_code == 429  # writes too


def test_per_user_limit_leaves_other_users_alone_on_the_same_address(limited):
    _, user = limited(per_user="2/minute")
    alice, bob = user("alice"), user("bob")
    for _ in range(2):
        assert alice.get("/api/profile").status_code == 404
    assert_too_many(alice.get("/api/profile"))
    assert bob.put("/api/profile", json={"name": "B"}).status_code == 200
    assert bob.get("/api/profile").status_code == 200


def test_per_user_limit_follows_the_sub_across_addresses(limited):
    _, user = limited(per_user="2/minute")
    assert user("alice", ALICE_ADDR).get("/api/profile").status_code == 404
    assert user("alice", BOB_ADDR).get("/api/profile").status_code == 404
    assert_too_many(user("alice", "203.0.113.5").get("/api/profile"))


def test_bad_tokens_naming_a_user_do_not_spend_that_users_budget(limited, idp):
    client, user = limited(per_user="2/minute", failed_auth="")
    forged = IdP().token("alice")  # same kid and issuer, another key
    for _ in range(5):
        answer = client.get("/api/profile", headers={"Authorization": f"Bearer {forged}"},
                            **at(BOB_ADDR))
        assert answer.status_code == 401
    alice = user("alice")
    assert [alice.get("/api/profile").status_code for _ in range(2)] == [404, 404]


def test_retry_after_counts_down_the_window(limited):
    _, user = limited(per_user="1/hour")
    alice = user("alice")
    assert alice.get("/api/profile").status_code == 404
    answer = alice.get("/api/profile")
    assert_too_many(answer, max_wait=3600)
    assert int(answer.headers["Retry-After"]) > 60


DEFAULT_BURST = 300  # RateLimitSettings.per_user: "300/second;6000/minute"


def test_a_per_user_limit_by_default(limited):
    """The default lets a burst of 300 through (a web front end opening ~150 safes at
    once), then 429: fixed windows of one second, so the burst may straddle two, and at
    worst the minute's 6,000 stops it."""
    _, user = limited()
    alice = user("alice")
    assert all(alice.get("/api/profile").status_code == 404 for _ in range(DEFAULT_BURST))
    for _ in range(2 * 6000):
        answer = alice.get("/api/profile")
        if answer.status_code != 404:
            break
    assert_too_many(answer)


def test_local_processes_skip_the_per_user_limit_but_a_same_host_proxy_does_not(limited):
    """exempt_loopback spares the bench and scripts on the host (no forwarding header);
    a proxy on the host sends X-Forwarded-For or Forwarded, and its clients are counted
    per user even without trusted_proxies (the header only costs its sender)."""
    _, user = limited(per_user="3/minute")
    local = user("alice", "127.0.0.1")
    assert all(local.get("/api/profile").status_code == 404 for _ in range(DEFAULT_BURST))
    for header in ({"X-Forwarded-For": "203.0.113.7"}, {"Forwarded": "for=203.0.113.7"}):
        proxied = user(f"bob-{len(header)}{next(iter(header))}", "127.0.0.1")
        codes = [proxied.get("/api/profile", headers=header).status_code for _ in range(4)]
        assert codes == [404, 404, 404, 429]


def test_loopback_can_be_limited_per_user_too(limited):
    _, user = limited(per_user="2/minute", exempt_loopback=False)
    local = user("alice", "::1")
    assert [local.get("/api/profile").status_code for _ in range(3)] == [404, 404, 429]


def test_the_default_never_stops_the_bench_from_loopback(limited):
    """bench/ drives one user at thousands of requests a second from 127.0.0.1."""
    _, user = limited()
    bench = user("bench", "127.0.0.1")
    assert all(bench.get("/api/profile").status_code == 404 for _ in range(3 * DEFAULT_BURST))


# Failed authentication per address ------------------------------------------------------


def test_failed_auth_limit_then_even_a_valid_token_waits(limited):
    client, user = limited(failed_auth="3/minute")
    for _ in range(3):
        assert client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)).status_code == 401
    assert_too_many(client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)))
    assert_too_many(user("alice", ALICE_ADDR).get("/api/profile"))


def test_a_flood_of_bad_tokens_does_not_lock_out_another_address(limited):
    client, user = limited(failed_auth="3/minute")
    for _ in range(20):
        client.get("/api/profile", headers=BAD, **at(ALICE_ADDR))
    bob = user("bob", BOB_ADDR)
    assert bob.put("/api/profile", json={"name": "B"}).status_code == 200
    assert bob.get("/api/profile").status_code == 200
    # ...and that address still has its own whole budget for mistakes.
    for _ in range(3):
        assert client.get("/api/profile", headers=BAD, **at(BOB_ADDR)).status_code == 401


def test_successful_authentications_are_not_counted(limited):
    client, user = limited(failed_auth="2/minute")
    alice = user("alice", ALICE_ADDR)
    assert all(alice.get("/api/profile").status_code == 404 for _ in range(10))
    for _ in range(2):
        assert client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)).status_code == 401
    assert client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)).status_code == 429


def test_missing_tokens_scope_failures_and_unrouted_paths_count(limited, idp):
    client, _ = limited(failed_auth="3/minute")
    no_scope = {"Authorization": f"Bearer {idp.token('alice', scope='other')}"}
    assert client.get("/api/profile", **at(ALICE_ADDR)).status_code == 401
    assert client.get("/api/profile", headers=no_scope, **at(ALICE_ADDR)).status_code == 403
    assert client.post("/api/nothing/here", headers=BAD, **at(ALICE_ADDR)).status_code == 401
    assert_too_many(client.post("/api/nothing/here", headers=BAD, **at(ALICE_ADDR)))


def test_domain_refusals_are_not_authentication_failures(limited):
    """403 'profile not set' is an answer to an authenticated caller, not a failed login."""
    _, user = limited(failed_auth="2/minute")
    alice = user("alice")
    assert all(alice.get("/api/safe").status_code == 403 for _ in range(5))


def test_the_failed_auth_window_passes(limited):
    client, user = limited(failed_auth="2/second")
    for _ in range(2):
        client.get("/api/profile", headers=BAD, **at(ALICE_ADDR))
    assert client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)).status_code == 429
    time.sleep(2.1)
    assert user("alice", ALICE_ADDR).get("/api/profile").status_code == 404


def test_ipv6_clients_are_counted_per_64(limited):
    client, _ = limited(failed_auth="2/minute")
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::ffff"):
        assert client.get("/api/profile", headers=BAD, **at(host)).status_code == 401
    assert client.get("/api/profile", headers=BAD, **at("2001:db8:1:2::99")).status_code == 429
    assert client.get("/api/profile", headers=BAD, **at("2001:db8:1:3::1")).status_code == 401


def test_loopback_peers_are_exempt_by_default(limited):
    """Default bind is 127.0.0.1: behind a same-host proxy every client is loopback, and
    counting them together would let one client lock everyone out."""
    client, _ = limited(failed_auth="2/minute", public="2/minute")
    for address in ("127.0.0.1", "::1"):
        assert all(client.get("/api/profile", headers=BAD, **at(address)).status_code == 401
                   for _ in range(6))
        assert all(client.get("/jwks", **at(address)).status_code == 200 for _ in range(6))


def test_loopback_can_be_limited(limited):
    client, _ = limited(failed_auth="2/minute", exempt_loopback=False)
    codes = [client.get("/api/profile", headers=BAD, **at("127.0.0.1")).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]


# X-Forwarded-For -----------------------------------------------------------------------


def test_x_forwarded_for_is_ignored_by_default(limited):
    client, _ = limited(failed_auth="2/minute")
    codes = [client.get("/api/profile", headers={**BAD, "X-Forwarded-For": f"203.0.113.{n}"},
                        **at(ALICE_ADDR)).status_code for n in range(3)]
    assert codes == [401, 401, 429]
    # ...and a spoofed loopback address does not buy the loopback exemption.
    spoofed = {**BAD, "X-Forwarded-For": "127.0.0.1"}
    assert client.get("/api/profile", headers=spoofed, **at(ALICE_ADDR)).status_code == 429


def test_x_forwarded_for_is_honoured_through_trusted_hops(limited, idp):
    client, _ = limited(failed_auth="2/minute", trusted_proxies=1)

    def via_proxy(forwarded_for: str, headers=BAD):
        return client.get("/api/profile", headers={**headers, "X-Forwarded-For": forwarded_for},
                          **at(PROXY_ADDR)).status_code

    assert [via_proxy(ALICE_ADDR) for _ in range(3)] == [401, 401, 429]
    # Another client behind the same proxy has its own budget.
    assert via_proxy(BOB_ADDR) == 401
    # The proxy appends the peer it saw: a client's own leading entries are not believed.
    assert via_proxy(f"203.0.113.9, {ALICE_ADDR}") == 429
    valid = {"Authorization": f"Bearer {idp.token('carol')}"}
    assert via_proxy(f"{ALICE_ADDR}, 203.0.113.9", valid) == 404


# What needs no token -------------------------------------------------------------------


def test_public_routes_have_a_per_address_limit(limited, idp):
    client, user = limited(public="4/minute")
    assert client.get("/jwks", **at(ALICE_ADDR)).status_code == 200
    assert client.get("/.well-known/hutch-configuration", **at(ALICE_ADDR)).status_code == 200
    assert client.get("/openapi.json", **at(ALICE_ADDR)).status_code == 200
    assert client.options("/api/profile", **at(ALICE_ADDR)).status_code == 200
    assert_too_many(client.get("/index.html", **at(ALICE_ADDR)))
    assert_too_many(client.options("/api/safe", **at(ALICE_ADDR)))
    # Authenticated API calls are not public traffic; another address is untouched.
    assert user("alice", ALICE_ADDR).get("/api/profile").status_code == 404
    assert client.get("/jwks", **at(BOB_ADDR)).status_code == 200


def test_everything_off_when_disabled(limited):
    client, user = limited(enabled=False, per_user="1/minute", failed_auth="1/minute",
                           public="1/minute")
    assert all(client.get("/api/profile", headers=BAD, **at(ALICE_ADDR)).status_code == 401
               for _ in range(5))
    assert all(client.get("/jwks", **at(ALICE_ADDR)).status_code == 200 for _ in range(5))
    alice = user("alice")
    assert all(alice.get("/api/profile").status_code == 404 for _ in range(5))


# Storage -------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_storage_fails_open_and_keeps_counting_in_process(limited, caplog):
    caplog.set_level(logging.WARNING)
    client, user = limited(storage_uri=f"redis://127.0.0.1:{_closed_port()}/0",
                           per_user="3/minute", failed_auth="2/minute")
    alice = user("alice")
    started = time.monotonic()
    assert alice.put("/api/profile", json={"name": "A"}).status_code == 200
    assert alice.get("/api/profile").status_code == 200
    assert time.monotonic() - started < 5
    assert any("storage unreachable" in r.getMessage() for r in caplog.records)
    # The in-memory fallback still enforces the limits while the storage is away.
    assert alice.get("/api/profile").status_code == 200
    assert alice.get("/api/profile").status_code == 429
    codes = [client.get("/api/profile", headers=BAD, **at(BOB_ADDR)).status_code
             for _ in range(3)]
    assert codes == [401, 401, 429]


def test_a_failing_storage_never_turns_into_a_500(limited, monkeypatch):
    client, user = limited(per_user="3/minute", failed_auth="2/minute")
    limiters = client.application.extensions["limiter"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("storage exploded")

    for limiter in limiters:
        monkeypatch.setattr(limiter.limiter, "hit", broken)
        monkeypatch.setattr(limiter.limiter, "test", broken)
        monkeypatch.setattr(limiter, "_fallback_limiter", limiter.limiter)
    alice = user("alice")
    assert [alice.get("/api/profile").status_code for _ in range(5)] == [404] * 5
    assert client.get("/api/profile", headers=BAD, **at(BOB_ADDR)).status_code == 401


def _redis_problem() -> str | None:
    try:
        import redis
    except ImportError:
        return "the redis client is not installed (pip install -e '.[redis]')"
    try:
        redis.Redis(host=REDIS_HOST, port=REDIS_PORT, socket_connect_timeout=0.5).ping()
    except redis.RedisError as exc:
        return f"no Redis at {REDIS_HOST}:{REDIS_PORT}: {exc}"
    return None


@pytest.fixture
def redis_prefix():
    problem = _redis_problem()
    if problem:
        pytest.skip(problem)
    import redis

    prefix = f"hutch-test-{uuid.uuid4().hex[:12]}"
    yield prefix
    server = redis.Redis(host=REDIS_HOST, port=REDIS_PORT)
    keys = list(server.scan_iter(match=f"*{prefix}*"))
    if keys:
        server.delete(*keys)
    assert not list(server.scan_iter(match=f"*{prefix}*"))


def test_redis_storage_is_shared_between_workers(make_app, idp, redis_prefix):
    """Two apps (two worker processes) on one Redis count the same budget."""
    limits = {"storage_uri": f"redis://{REDIS_HOST}:{REDIS_PORT}/0", "key_prefix": redis_prefix,
              "per_user": "3/minute", "failed_auth": "2/minute"}
    first, second = (make_app(rate_limit=limits).test_client() for _ in range(2))
    alice = [Api(_From(c, ALICE_ADDR), idp, "alice") for c in (first, second)]
    assert [alice[0].get("/api/profile").status_code,
            alice[1].get("/api/profile").status_code,
            alice[0].get("/api/profile").status_code] == [404, 404, 404]
    assert_too_many(alice[1].get("/api/profile"))
    assert Api(_From(second, ALICE_ADDR), idp, "bob").get("/api/profile").status_code == 404
    assert first.get("/api/profile", headers=BAD, **at(BOB_ADDR)).status_code == 401
    assert second.get("/api/profile", headers=BAD, **at(BOB_ADDR)).status_code == 401
    assert_too_many(first.get("/api/profile", headers=BAD, **at(BOB_ADDR)))
    import redis

    keys = list(redis.Redis(host=REDIS_HOST, port=REDIS_PORT).scan_iter(
        match=f"*{redis_prefix}*"))
    assert keys, "the counters live in Redis"


def test_redis_honours_x_forwarded_for_through_trusted_hops(make_app, redis_prefix):
    limits = {"storage_uri": f"redis://{REDIS_HOST}:{REDIS_PORT}/0", "key_prefix": redis_prefix,
              "failed_auth": "2/minute", "trusted_proxies": 1}
    client = make_app(rate_limit=limits).test_client()

    def via_proxy(forwarded_for: str):
        return client.get("/api/profile", headers={**BAD, "X-Forwarded-For": forwarded_for},
                          **at(PROXY_ADDR)).status_code

    assert [via_proxy(ALICE_ADDR) for _ in range(3)] == [401, 401, 429]
    assert via_proxy(BOB_ADDR) == 401


# Configuration -------------------------------------------------------------------------


def test_defaults():
    defaults = RateLimitSettings()
    assert defaults.enabled and defaults.storage_uri == "memory://"
    assert defaults.per_user == "300/second;6000/minute" and defaults.trusted_proxies == 0
    assert defaults.failed_auth == "60/minute" and defaults.public == "1200/minute"
    assert defaults.exempt_loopback


@pytest.mark.parametrize("key, value, message", [
    ("per_user", "lots", "rate_limit.per_user: expected a limit like"),
    ("failed_auth", "0/minute", "rate_limit.failed_auth: expected a limit like"),
    ("public", "10/fortnight", "rate_limit.public: expected a limit like"),
    ("storage_uri", "ftp://user:hunter2@host/", "rate_limit.storage_uri: expected memory://"),
    ("storage_uri", "127.0.0.1:6379", "rate_limit.storage_uri: expected memory://"),
    ("trusted_proxies", -1, "rate_limit.trusted_proxies: must be between 0 and 10"),
    ("trusted_proxies", "one", "rate_limit.trusted_proxies: expected an integer"),
    ("enabled", "maybe", "rate_limit.enabled: expected true or false"),
    ("key_prefix", "has space", "rate_limit.key_prefix:"),
    ("burst", 5, "rate_limit.burst: unknown key"),
])
def test_bad_values_are_named(make_settings, key, value, message):
    with pytest.raises(ConfigError) as refused:
        make_settings(rate_limit={key: value})
    assert str(refused.value).startswith(message)
    assert "hunter2" not in str(refused.value)


def test_environment_overrides_and_names_itself(make_settings, tmp_path):
    make_settings(rate_limit={"per_user": "5/minute"})
    config = tmp_path / "hutch.config"
    settings = load_settings(config, environ={"HUTCH_RATE_LIMIT__PER_USER": "7/second",
                                              "HUTCH_RATE_LIMIT__TRUSTED_PROXIES": "2",
                                              "HUTCH_RATE_LIMIT__ENABLED": "false",
                                              "HUTCH_RATE_LIMIT__FAILED_AUTH": ""})
    limits = settings.rate_limit
    assert (limits.per_user, limits.trusted_proxies, limits.enabled) == ("7/second", 2, False)
    assert limits.failed_auth == ""
    named = r"^rate_limit.per_user \(from HUTCH_RATE_LIMIT__PER_USER\)"
    with pytest.raises(ConfigError, match=named):
        load_settings(config, environ={"HUTCH_RATE_LIMIT__PER_USER": "often"})


def test_a_storage_whose_client_is_missing_is_a_config_error(make_app, monkeypatch):
    import limits.storage.redis as redis_storage
    from packaging.version import Version

    monkeypatch.setattr(redis_storage.RedisStorage, "DEPENDENCIES", {"redis": Version("999")})
    with pytest.raises(ConfigError, match="^rate_limit.storage_uri: "):
        make_app(rate_limit={"storage_uri": "redis://127.0.0.1:6379/0"})
