"""Load and validate the configuration: a TOML file plus ``HUTCH_*`` overrides.

Keys keep the original Hutch names (RUNTIME-INTERFACE.md). Everything is
checked once, here; the rest of the code receives frozen dataclasses.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

LOCAL_ISSUER = "hutch-local"
MAX_LEEWAY = 60


class ConfigError(Exception):
    """A configuration problem; the message names the key and what is wrong."""


@dataclass(frozen=True)
class OidcSettings:
    server_public_jwks: Path | None = None
    server_remote_config: str | None = None
    server_remote_config_verify_cert: bool = True
    iss: str | None = None
    aud: str | None = None
    realm: str | None = None
    dpop_max_iat: int = 0
    leeway: int = 30
    jwks_refresh_cooldown: int = 60
    jwks_max_age: int = 300
    startup_retries: int = 5
    # The private half of the local issuer, only in the embedded default.
    local_issuer_key: Path | None = None

    @property
    def is_local(self) -> bool:
        return self.local_issuer_key is not None


@dataclass(frozen=True)
class DatabaseSettings:
    url: str
    pool_size: int = 8


@dataclass(frozen=True)
class RateLimitSettings:
    """``[rate_limit]``: abuse limits (flask-limiter). An empty limit string means none."""

    enabled: bool = True
    storage_uri: str = "memory://"
    # Per validated token ``sub``: bursts of a web front end or a sync pass, imports of
    # thousands of items a minute, never much of the server (README, "Abuse limits").
    per_user: str = "300/second;6000/minute"
    # Per client address, counting only failed authentications.
    failed_auth: str = "60/minute"
    # Per client address, on what needs no token: configuration, JWKS, OpenAPI, web app, OPTIONS.
    public: str = "1200/minute"
    # werkzeug ProxyFix x_for hops; 0 never trusts X-Forwarded-For.
    trusted_proxies: int = 0
    # Loopback peers are local processes, or a same-host proxy whose clients all share 127.0.0.1;
    # the per-user limit still counts a loopback peer that forwards (X-Forwarded-For, Forwarded).
    exempt_loopback: bool = True
    key_prefix: str = "hutch"


@dataclass(frozen=True)
class Settings:
    sign_key: Path
    database: DatabaseSettings
    oidc: OidcSettings
    port: int = 4884
    bind_address: str = "127.0.0.1"
    api_prefix: str = "api"
    external_url: str = "http://localhost:4884/"
    allow_origin: str | None = None
    hutch_scope: str = "hutch"
    sign_exp: int = 600
    app_files_path: Path | None = None
    app_files_mime_types: dict[str, str] = field(default_factory=dict)
    log_level: str = "INFO"
    access_log: bool = True
    max_body_bytes: int = 17 * 1024 * 1024
    # Longest access-token lifetime (exp - iat) accepted, in seconds.
    max_token_lifetime: int = 86400
    config_path: Path | None = None
    instance_path: Path | None = None
    rate_limit: RateLimitSettings = field(default_factory=RateLimitSettings)
    # Bytes each user may store (README "Storage quota"); 0 = no quota.
    quota_bytes: int = 0
    # A request body must average this many bytes a second once body_grace seconds have
    # passed, or the answer is 408 (README "Slow clients"); 0 = no minimum.
    body_min_rate: int = 1024
    body_grace: int = 10

    @cached_property
    def scopes(self) -> tuple[str, ...]:
        return tuple(self.hutch_scope.split())

    @cached_property
    def prefix_segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.api_prefix.split("/") if s)


# key -> (type, section). Types: str, int, bool, path, mimes.
_TOP_KEYS: dict[str, str] = {
    "port": "int",
    "bind_address": "str",
    "api_prefix": "str",
    "external_url": "str",
    "allow_origin": "str",
    "hutch_scope": "str",
    "sign_key": "path",
    "sign_exp": "int",
    "app_files_path": "path",
    "app_files_mime_types": "mimes",
    "log_level": "str",
    "access_log": "bool",
    "log_mode": "str",
    "log_file": "path",
    "max_body_bytes": "int",
    "quota_bytes": "int",
    "body_min_rate": "int",
    "body_grace": "int",
    "max_token_lifetime": "int",
    "use_secure_connection": "bool",
    "secure_connection_key_file": "path",
    "secure_connection_pem_file": "path",
}
_SECTION_KEYS: dict[str, dict[str, str]] = {
    "database": {
        "url": "str",
        "pool_size": "int",
        # Original libconfig names, translated into a URL.
        "type": "str",
        "path": "path",
        "host": "str",
        "user": "str",
        "password": "str",
        "dbname": "str",
        "port": "int",
        "conninfo": "str",
    },
    "oidc": {
        "server_public_jwks": "path",
        "server_remote_config": "str",
        "server_remote_config_verify_cert": "bool",
        "iss": "str",
        "aud": "str",
        "realm": "str",
        "dpop_max_iat": "int",
        "leeway": "int",
        "jwks_refresh_cooldown": "int",
        "jwks_max_age": "int",
        "startup_retries": "int",
    },
    "rate_limit": {
        "enabled": "bool",
        "storage_uri": "str",
        "per_user": "str",
        "failed_auth": "str",
        "public": "str",
        "trusted_proxies": "int",
        "exempt_loopback": "bool",
        "key_prefix": "str",
    },
}
_ENV_SKIP = {"HUTCH_CONFIG", "HUTCH_INSTANCE"}


def _coerce(key: str, kind: str, value: Any, base: Path, *, from_env: bool = False) -> Any:
    """Check one value's type, converting env strings; resolve relative paths.

    Only environment values are parsed from strings: in TOML, ``port = "4890"`` is a
    string where a number belongs, refused rather than guessed at.
    """
    if kind in ("int", "bool") and isinstance(value, str) and not from_env:
        expected = "an integer" if kind == "int" else "true or false"
        bare = value.strip().lstrip("+-").isdigit() or value.strip() in ("true", "false")
        raise ConfigError(f"{key}: expected {expected}, got the string {value!r}"
                          + (" (write it without quotes)" if bare else ""))
    if kind == "int":
        if isinstance(value, str):
            try:
                value = int(value.strip())
            except ValueError:
                raise ConfigError(f"{key}: expected an integer, got {value!r}") from None
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if kind == "bool":
        if isinstance(value, str):
            lowered = value.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if kind == "mimes":
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except ValueError:
                raise ConfigError(f"{key}: expected a JSON list or table") from None
        return _mime_table(key, value)
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string, got {value!r}")
    if kind == "path":
        if not value:
            raise ConfigError(f"{key}: must not be empty")
        path = Path(value).expanduser()
        return path if path.is_absolute() else (base / path)
    return value


def _mime_table(key: str, value: Any) -> dict[str, str]:
    """Accept the original list of {extension, mime_type} or a plain table."""
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = []
        for entry in value:
            if not isinstance(entry, dict) or "extension" not in entry or "mime_type" not in entry:
                raise ConfigError(f"{key}: each entry needs extension and mime_type")
            items.append((entry["extension"], entry["mime_type"]))
    else:
        raise ConfigError(f"{key}: expected a list of {{extension, mime_type}} or a table")
    table = {}
    for ext, mime in items:
        if not isinstance(ext, str) or not isinstance(mime, str):
            raise ConfigError(f"{key}: extensions and mime types must be strings")
        table[ext.lower() if ext.startswith(".") else "." + ext.lower()] = mime
    return table


def _flatten(raw: dict[str, Any], base: Path) -> dict[str, Any]:
    """Validate names and types; return {'port': 1, 'oidc.iss': ...}."""
    flat: dict[str, Any] = {}
    for key, value in raw.items():
        if key in _SECTION_KEYS:
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a table ([{key}])")
            for sub, subvalue in value.items():
                kind = _SECTION_KEYS[key].get(sub)
                if kind is None:
                    raise ConfigError(f"{key}.{sub}: unknown key")
                flat[f"{key}.{sub}"] = _coerce(f"{key}.{sub}", kind, subvalue, base)
        elif key in _TOP_KEYS:
            flat[key] = _coerce(key, _TOP_KEYS[key], value, base)
        else:
            raise ConfigError(f"{key}: unknown key")
    return flat


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    cwd = Path.cwd()
    for name, value in environ.items():
        if not name.startswith("HUTCH_") or name in _ENV_SKIP:
            continue
        parts = name[len("HUTCH_") :].lower().split("__")
        if len(parts) == 1 and parts[0] in _TOP_KEYS:
            flat[parts[0]] = _coerce(name, _TOP_KEYS[parts[0]], value, cwd, from_env=True)
        elif len(parts) == 2 and parts[1] in _SECTION_KEYS.get(parts[0], {}):
            kind = _SECTION_KEYS[parts[0]][parts[1]]
            flat[".".join(parts)] = _coerce(name, kind, value, cwd, from_env=True)
    return flat


def _database_url(flat: dict[str, Any]) -> str:
    if "database.url" in flat:
        return flat["database.url"]
    kind = flat.get("database.type")
    if kind is None:
        raise ConfigError("database.url: missing (for example sqlite:///hutch.db)")
    if kind == "sqlite3":
        if "database.path" not in flat:
            raise ConfigError("database.path: missing for database.type sqlite3")
        return f"sqlite:///{flat['database.path']}"
    if kind == "mariadb":
        user = quote(flat.get("database.user", ""), safe="")
        password = quote(flat.get("database.password", ""), safe="")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        host = flat.get("database.host", "localhost")
        port = flat.get("database.port", 0)
        where = f"{host}:{port}" if port else host
        return f"mysql+pymysql://{auth}{where}/{flat.get('database.dbname', '')}?charset=utf8mb4"
    if kind == "postgre":
        conninfo = flat.get("database.conninfo")
        if not conninfo:
            raise ConfigError("database.conninfo: missing for database.type postgre")
        if conninfo.startswith(("postgres://", "postgresql://")):
            return "postgresql+psycopg://" + conninfo.split("://", 1)[1]
        params = dict(p.split("=", 1) for p in conninfo.split() if "=" in p)
        user = quote(params.pop("user", ""), safe="")
        password = quote(params.pop("password", ""), safe="")
        host = params.pop("host", "")
        port = params.pop("port", "")
        dbname = params.pop("dbname", "")
        auth = f"{user}:{password}@" if password else (f"{user}@" if user else "")
        where = f"{host}:{port}" if port else host
        return f"postgresql+psycopg://{auth}{where}/{dbname}"
    raise ConfigError(f"database.type: expected sqlite3, mariadb or postgre, got {kind!r}")


_PREFIX_SEGMENT = re.compile(r"^[A-Za-z0-9._~-]+$")


def _build(flat: dict[str, Any], config_path: Path | None, instance: Path | None) -> Settings:
    port = flat.get("port", 4884)
    if not 1 <= port <= 65535:
        raise ConfigError(f"port: must be between 1 and 65535, got {port}")
    prefix_parts = [s for s in flat.get("api_prefix", "api").split("/") if s]
    if not prefix_parts or not all(_PREFIX_SEGMENT.match(s) for s in prefix_parts):
        raise ConfigError("api_prefix: must be one or more URL path segments, like 'api'")
    external_url = flat.get("external_url", f"http://localhost:{port}/")
    parts = urlsplit(external_url)
    if parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
        raise ConfigError(f"external_url: must be an http(s) URL, got {external_url!r}")
    if not external_url.endswith("/"):
        external_url += "/"
    scope = flat.get("hutch_scope", "hutch")
    if not scope.split():
        raise ConfigError("hutch_scope: must name at least one scope")
    if "sign_key" not in flat:
        raise ConfigError("sign_key: missing (path of the private signing JWKS)")
    sign_exp = flat.get("sign_exp", 600)
    if not 1 <= sign_exp <= 86400:
        raise ConfigError("sign_exp: must be between 1 and 86400 seconds")
    if flat.get("use_secure_connection"):
        raise ConfigError(
            "use_secure_connection: TLS is not served in-process; terminate TLS at a reverse proxy"
        )
    max_body = flat.get("max_body_bytes", 17 * 1024 * 1024)
    if max_body < 1024:
        raise ConfigError("max_body_bytes: must be at least 1024")
    max_token_lifetime = flat.get("max_token_lifetime", 86400)
    if max_token_lifetime < 1:
        raise ConfigError("max_token_lifetime: must be at least 1 second")
    level = flat.get("log_level", "INFO").upper()
    levels = ("NONE", "ERROR", "WARNING", "INFO", "DEBUG")
    if level not in levels:
        raise ConfigError(f"log_level: expected one of {', '.join(levels)}")
    quota_bytes = flat.get("quota_bytes", 0)
    if quota_bytes < 0:
        raise ConfigError("quota_bytes: must be 0 (no quota) or a number of bytes, "
                          f"got {quota_bytes}")
    body_min_rate = flat.get("body_min_rate", 1024)
    if body_min_rate < 0:
        raise ConfigError(f"body_min_rate: must be 0 (no minimum) or bytes per second, "
                          f"got {body_min_rate}")
    body_grace = flat.get("body_grace", 10)
    if not 1 <= body_grace <= 3600:
        raise ConfigError(f"body_grace: must be between 1 and 3600 seconds, got {body_grace}")
    pool_size = flat.get("database.pool_size", 8)
    if not 1 <= pool_size <= 256:
        raise ConfigError("database.pool_size: must be between 1 and 256")
    return Settings(
        port=port,
        bind_address=flat.get("bind_address", "127.0.0.1"),
        api_prefix="/".join(prefix_parts),
        external_url=external_url,
        allow_origin=flat.get("allow_origin") or None,
        hutch_scope=scope,
        sign_key=flat["sign_key"],
        sign_exp=sign_exp,
        app_files_path=flat.get("app_files_path"),
        app_files_mime_types=flat.get("app_files_mime_types", {}),
        log_level=level,
        access_log=flat.get("access_log", True),
        max_body_bytes=max_body,
        max_token_lifetime=max_token_lifetime,
        database=DatabaseSettings(url=_database_url(flat), pool_size=pool_size),
        oidc=_oidc(flat),
        config_path=config_path,
        instance_path=instance,
        rate_limit=_rate_limit(flat),
        quota_bytes=quota_bytes,
        body_min_rate=body_min_rate,
        body_grace=body_grace,
    )


def _oidc(flat: dict[str, Any]) -> OidcSettings:
    remote = flat.get("oidc.server_remote_config")
    static = flat.get("oidc.server_public_jwks")
    local_key = flat.get("oidc.local_issuer_key")
    if not remote and not static:
        raise ConfigError(
            "oidc: name a key source, oidc.server_public_jwks or oidc.server_remote_config"
        )
    iss = flat.get("oidc.iss")
    if static and not remote and not iss:
        raise ConfigError("oidc.iss: required with oidc.server_public_jwks (the expected issuer)")
    if remote and not remote.startswith(("http://", "https://")):
        raise ConfigError("oidc.server_remote_config: must be an http(s) URL")
    leeway = flat.get("oidc.leeway", 30)
    if not 0 <= leeway <= MAX_LEEWAY:
        raise ConfigError(f"oidc.leeway: must be between 0 and {MAX_LEEWAY} seconds")
    dpop_max_iat = flat.get("oidc.dpop_max_iat", 0)
    if dpop_max_iat < 0:
        raise ConfigError("oidc.dpop_max_iat: must not be negative")
    cooldown = flat.get("oidc.jwks_refresh_cooldown", 60)
    if cooldown < 0:
        raise ConfigError("oidc.jwks_refresh_cooldown: must not be negative")
    max_age = flat.get("oidc.jwks_max_age", max(300, cooldown))
    if max_age < max(cooldown, 1):
        raise ConfigError("oidc.jwks_max_age: must be at least oidc.jwks_refresh_cooldown")
    return OidcSettings(
        server_public_jwks=None if remote else static,
        server_remote_config=remote,
        server_remote_config_verify_cert=flat.get("oidc.server_remote_config_verify_cert", True),
        iss=iss,
        aud=flat.get("oidc.aud") or None,
        realm=flat.get("oidc.realm") or None,
        dpop_max_iat=dpop_max_iat,
        leeway=leeway,
        jwks_refresh_cooldown=cooldown,
        jwks_max_age=max_age,
        startup_retries=flat.get("oidc.startup_retries", 5),
        local_issuer_key=local_key,
    )


# The synchronous storages of the limits library (flask-limiter's backend).
RATE_LIMIT_STORAGES = ("memory", "redis", "rediss", "redis+unix", "redis+sentinel",
                       "redis+cluster", "valkey", "valkeys", "valkey+unix", "valkey+sentinel",
                       "valkey+cluster", "memcached", "mongodb", "mongodb+srv")
MAX_TRUSTED_PROXIES = 10
_KEY_PREFIX = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


def _limit_string(key: str, value: str) -> str:
    """'' or 'off' for none, else limits' syntax: '600/minute', '10/second;600/hour'."""
    from limits import parse_many

    value = value.strip()
    if value.lower() in ("", "off", "none"):
        return ""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items or any(item.amount < 1 for item in items):
        raise ConfigError(f"{key}: expected a limit like '600/minute' or '10/second;600/hour' "
                          f"(or '' for none), got {value!r}")
    return value


def _rate_limit(flat: dict[str, Any]) -> RateLimitSettings:
    defaults = RateLimitSettings()
    uri = flat.get("rate_limit.storage_uri", defaults.storage_uri).strip()
    scheme = uri.partition("://")[0].lower() if "://" in uri else ""
    if scheme not in RATE_LIMIT_STORAGES:
        # The URI itself is not echoed: it may carry a password.
        raise ConfigError("rate_limit.storage_uri: expected memory:// or a storage URI such as "
                          f"redis://127.0.0.1:6379/0 (schemes: {', '.join(RATE_LIMIT_STORAGES)})")
    hops = flat.get("rate_limit.trusted_proxies", defaults.trusted_proxies)
    if not 0 <= hops <= MAX_TRUSTED_PROXIES:
        raise ConfigError(f"rate_limit.trusted_proxies: must be between 0 and "
                          f"{MAX_TRUSTED_PROXIES} (proxy hops in front of Hutch), got {hops}")
    prefix = flat.get("rate_limit.key_prefix", defaults.key_prefix)
    if not _KEY_PREFIX.match(prefix):
        raise ConfigError("rate_limit.key_prefix: 1 to 64 characters of A-Z a-z 0-9 . _ : -")
    return RateLimitSettings(
        enabled=flat.get("rate_limit.enabled", defaults.enabled),
        storage_uri=uri,
        per_user=_limit_string("rate_limit.per_user",
                               flat.get("rate_limit.per_user", defaults.per_user)),
        failed_auth=_limit_string("rate_limit.failed_auth",
                                  flat.get("rate_limit.failed_auth", defaults.failed_auth)),
        public=_limit_string("rate_limit.public", flat.get("rate_limit.public", defaults.public)),
        trusted_proxies=hops,
        exempt_loopback=flat.get("rate_limit.exempt_loopback", defaults.exempt_loopback),
        key_prefix=prefix,
    )


def config_path_from(explicit: str | None, environ: dict[str, str] | None = None) -> Path | None:
    """--config, then HUTCH_CONFIG, then ./hutch.config if it exists."""
    environ = os.environ if environ is None else environ
    if explicit:
        return Path(explicit)
    if environ.get("HUTCH_CONFIG"):
        return Path(environ["HUTCH_CONFIG"])
    default = Path("hutch.config")
    return default if default.exists() else None


def instance_path_from(environ: dict[str, str] | None = None) -> Path:
    environ = os.environ if environ is None else environ
    return Path(environ.get("HUTCH_INSTANCE") or "hutch-instance").absolute()


def load_settings(config: Path | None, environ: dict[str, str] | None = None) -> Settings:
    """Settings from a config file, or the embedded default when ``config`` is None.

    The embedded default only *describes* the instance folder; ``hutch.instance``
    creates its files.
    """
    environ = dict(os.environ if environ is None else environ)
    if config is None:
        instance = instance_path_from(environ)
        flat: dict[str, Any] = {
            "sign_key": instance / "sign.jwks",
            "database.url": f"sqlite:///{instance / 'hutch.db'}",
        }
        flat.update(_env_overrides(environ))
        if "oidc.server_public_jwks" not in flat and "oidc.server_remote_config" not in flat:
            flat["oidc.server_public_jwks"] = instance / "local-issuer.public.jwks"
            flat["oidc.local_issuer_key"] = instance / "local-issuer.jwks"
            flat["oidc.iss"] = LOCAL_ISSUER
        return _named(lambda: _build(flat, None, instance), environ)
    config = config.absolute()
    try:
        raw = tomllib.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config: file not found: {config}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config: cannot read {config}: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config: {config} is not valid TOML: {exc}") from None
    flat = _flatten(raw, config.parent)
    flat.update(_env_overrides(environ))
    return _named(lambda: _build(flat, config, None), environ)


def _named(build, environ: dict[str, str]) -> Settings:
    """Say which environment variable set a refused value, when one did."""
    try:
        return build()
    except ConfigError as exc:
        key, _, rest = str(exc).partition(": ")
        env = "HUTCH_" + key.upper().replace(".", "__")
        if env in environ and rest:
            raise ConfigError(f"{key} (from {env}): {rest}") from None
        raise
