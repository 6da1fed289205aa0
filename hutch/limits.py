"""Abuse limits with flask-limiter (``[rate_limit]``, README "Abuse limits").

Two limiters sit on either side of the authentication gate (hutch/http.py):

- by address, before the gate: ``failed_auth`` counts only requests the gate
  refused, and once it is spent every API request from that address is refused
  (429) before any token work, valid tokens included, until its window passes;
  ``public`` bounds what needs no token (configuration, JWKS, OpenAPI, web app,
  preflights). A flood from one address never touches another address's budget.
- by user, after the gate: ``per_user`` is keyed by the validated token's ``sub``,
  so bad tokens cannot spend a real user's budget. ``exempt_loopback`` spares local
  processes (the bench, admin scripts) but not a same-host proxy: a loopback peer that
  sends X-Forwarded-For or Forwarded relays someone else, and is counted. Sending the
  header only ever costs the sender its own exemption, so it needs no trust.

The storage quota (``quota_bytes``, ``limit_storage``) is registered here too, after
the gate: it is an abuse limit on what a user keeps rather than on how often they ask.

A limiter fault never fails a request: the storage being down falls back to
counting in this process, and any other error is logged and ignored.
"""

from __future__ import annotations

import ipaddress
import time
from functools import lru_cache, partial

from flask import Flask, Response, current_app, g, request
from flask_limiter import ApplicationLimit, Limiter, RequestLimit
from limits.errors import ConfigurationError
from werkzeug.middleware.proxy_fix import ProxyFix

from hutch.errors import QuotaExceeded, too_many_requests
from hutch.http import is_api_path
from hutch.settings import ConfigError, RateLimitSettings
from hutch.store import quota

# Bounds the stall of a request when a networked storage stops answering.
STORAGE_TIMEOUT_SECONDS = 0.5
_SOCKET_STORAGES = ("redis://", "rediss://", "redis+unix://", "valkey://", "valkeys://",
                    "valkey+unix://")


@lru_cache(maxsize=4096)
def _address_key(address: str) -> tuple[str, bool]:
    """(bucket, is_loopback): IPv4 per address, IPv6 per /64 (one host usually holds a /64)."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return "addr:" + address, False
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        else:
            return f"addr:{ipaddress.ip_network(f'{ip}/64', strict=False)}", ip.is_loopback
    return f"addr:{ip}", ip.is_loopback


def client_address() -> str:
    """The peer address, or the one ProxyFix took from X-Forwarded-For (trusted hops only)."""
    return _address_key(request.remote_addr or "unknown")[0]


def authenticated_user() -> str:
    return "sub:" + g.access.sub


def _on_api() -> bool:
    """Requests the gate authenticates: under the prefix, preflights excepted."""
    return request.method != "OPTIONS" and is_api_path(request.path)


def _rate_limit() -> RateLimitSettings:
    return current_app.extensions["hutch"].settings.rate_limit


def _loopback_exempt() -> bool:
    return _rate_limit().exempt_loopback and _address_key(request.remote_addr or "")[1]


def _per_user_exempt() -> bool:
    """Unauthenticated (nothing to key on), or a local process (see the module docstring)."""
    if "access" not in g:
        return True
    environ = request.environ
    return (_loopback_exempt() and "HTTP_X_FORWARDED_FOR" not in environ
            and "HTTP_FORWARDED" not in environ)


def _failed_auth_exempt() -> bool:
    return not _on_api()


def _public_exempt() -> bool:
    return _on_api()


def _auth_failed(_response: Response) -> bool:
    return g.get("auth_failed", False)


def _breached(limit: RequestLimit) -> Response:
    """The 429 answer, with the seconds until the breached window resets."""
    return too_many_requests(max(1, limit.reset_at - int(time.time())))


def _storage_options(uri: str) -> dict:
    if uri.startswith(_SOCKET_STORAGES):
        return {"socket_connect_timeout": STORAGE_TIMEOUT_SECONDS,
                "socket_timeout": STORAGE_TIMEOUT_SECONDS}
    return {}


class _Limiter(Limiter):
    """A Limiter whose request check first asks ``skip``: a request no limit applies to
    (a loopback peer, an unauthenticated call for the per-user limits) then costs one
    call instead of flask-limiter's whole resolution of limits."""

    def __init__(self, *args, skip, **kwargs):
        super().__init__(*args, **kwargs)
        self._skip = skip
        self._skipped_key = f"hutch.limits_skipped.{id(self)}"

    def _check_request_limit(self, callable_name=None, in_middleware=True) -> None:
        if self._skip():
            request.environ[self._skipped_key] = True
        else:
            super()._check_request_limit(callable_name=callable_name, in_middleware=in_middleware)

    def skip_hooks_when_skipped(self, app: Flask) -> None:
        """flask-limiter's after-request and teardown hooks cost ~40 µs a request even
        with nothing to count: run them only for requests this limiter checked."""
        def own(hook) -> bool:
            return getattr(hook, "__self__", None) is self or (
                isinstance(hook, partial) and hook.args[:1] == (self,))

        def after(hook):
            def run(response):
                return response if self._skipped_key in request.environ else hook(response)
            return run

        def teardown(hook):
            def run(exc):
                if self._skipped_key not in request.environ:
                    hook(exc)
            return run

        for hooks, wrap in ((app.after_request_funcs[None], after),
                            (app.teardown_request_funcs[None], teardown)):
            hooks[:] = [wrap(hook) if own(hook) else hook for hook in hooks]


def _install(app: Flask, rl: RateLimitSettings, key_func, limits: list[ApplicationLimit],
             skip) -> Limiter:
    try:
        limiter = _Limiter(
            key_func,
            skip=skip,
            application_limits=limits,
            storage_uri=rl.storage_uri,
            storage_options=_storage_options(rl.storage_uri),
            strategy="fixed-window",
            key_prefix=rl.key_prefix,
            # Fail open: storage down → count in this process; anything else → log, serve.
            in_memory_fallback_enabled=True,
            swallow_errors=True,
            headers_enabled=False,
            on_breach=_breached,
            # Unrouted paths are limited too (flask-limiter skips requests with no endpoint),
            # else bad tokens sent to /api/nothing would never be counted.
            request_identifier=lambda: request.endpoint or "unrouted",
        )
        limiter.init_app(app)  # opens the storage: a missing client library fails here
        limiter.skip_hooks_when_skipped(app)
    except ConfigurationError as exc:
        raise ConfigError(f"rate_limit.storage_uri: {exc}") from None
    return limiter


def trust_proxies(app: Flask, rl: RateLimitSettings) -> None:
    """Take the client address from X-Forwarded-For only through ``trusted_proxies`` hops."""
    if rl.trusted_proxies:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=rl.trusted_proxies, x_proto=0, x_host=0,
                                x_port=0, x_prefix=0)


def limit_addresses(app: Flask, rl: RateLimitSettings) -> Limiter | None:
    """Register the per-address limits; call before the authentication gate is registered."""
    limits = []
    if rl.failed_auth:
        limits.append(ApplicationLimit(rl.failed_auth, key_function=client_address,
                                       scope="failed-auth", exempt_when=_failed_auth_exempt,
                                       deduct_when=_auth_failed))
    if rl.public:
        limits.append(ApplicationLimit(rl.public, key_function=client_address, scope="public",
                                       exempt_when=_public_exempt))
    if not (rl.enabled and limits):
        return None
    return _install(app, rl, client_address, limits, skip=_loopback_exempt)


def limit_users(app: Flask, rl: RateLimitSettings) -> Limiter | None:
    """Register the per-user limit; call after the authentication gate is registered."""
    if not (rl.enabled and rl.per_user):
        return None
    return _install(app, rl, authenticated_user, [
        ApplicationLimit(rl.per_user, key_function=authenticated_user, scope="user"),
    ], skip=_per_user_exempt)


# The writes the storage quota weighs: endpoint -> the row the write replaces (None: a new one).
QUOTA_WRITES: dict[str, quota.Target] = {
    "profile.put_profile": "profile",
    "safes.create_safe": None,
    "safes.update_safe": "safe",
    "safe_keys.create_item": None,
    "safe_keys.update_item": "key",
    "coins.create_item": None,
    "coins.update_item": "coin",
}


def limit_storage(app: Flask, quota_bytes: int) -> None:
    """Register the storage quota (README "Storage quota"); call after the authentication
    gate. Without a quota nothing is registered, so no request pays for it.

    A write is weighed before its body is read: its body's size (the strings it stores
    cannot be longer), the name it keeps from the URL and ``quota.ROW_BYTES``, against
    what the caller stores without the row it replaces. The check is not in the write's
    transaction: writes of one user running at the same moment each see the usage
    before the others, so a burst of k parallel writes can pass the quota by at most the
    k - 1 other writes' sizes (tests/test_quota.py measures it).
    """
    if not quota_bytes:
        return

    def check_quota() -> None:
        if request.endpoint not in QUOTA_WRITES or "access" not in g:
            return
        target, args = QUOTA_WRITES[request.endpoint], request.view_args or {}
        size = request.content_length
        if size is None:  # a chunked body: read it (max_body_bytes still applies)
            size = len(request.get_data(cache=True))
        elif size > (current_app.config.get("MAX_CONTENT_LENGTH") or size):
            return  # the view's 413 says more than a 507 would
        kept = args.get("item") if target in ("key", "coin") else (
            args.get("safe") if target == "safe" else "")
        needed = size + len((kept or "").encode()) + (
            0 if target == "profile" else quota.ROW_BYTES)
        db = current_app.extensions["hutch"].db
        used = quota.usage(db, g.access.sub, target, args.get("safe"), args.get("item"))
        if used + needed > quota_bytes:
            raise QuotaExceeded(quota_bytes, used, needed)

    app.before_request(check_quota)
