"""Hutch: a secret vault API server, drop-in replacement for the original C server."""

from __future__ import annotations

import logging

from flask import Flask

from hutch.settings import Settings

__version__ = "0.1.0"


def create_app(settings: Settings | None = None) -> Flask:
    """The application factory: validated settings in, a ready Flask app out."""
    from hutch.api import coins, openapi, profile, safe_keys, safes, webapp, wellknown
    from hutch.errors import register_error_handlers
    from hutch.extensions import build_hutch
    from hutch.http import register_http
    from hutch.limits import limit_addresses, limit_storage, limit_users, trust_proxies
    from hutch.settings import load_settings

    settings = settings or load_settings(None)
    app = Flask("hutch")
    app.config["MAX_CONTENT_LENGTH"] = settings.max_body_bytes
    app.json.sort_keys = False
    app.extensions["hutch"] = build_hutch(settings)
    # Order matters: address limits, then the authentication gate, then per-user limits.
    limit_addresses(app, settings.rate_limit)
    register_http(app)
    limit_users(app, settings.rate_limit)
    limit_storage(app, settings.quota_bytes)
    trust_proxies(app, settings.rate_limit)
    prefix = "/" + settings.api_prefix
    for blueprint in (profile.bp, safes.bp, safe_keys.bp, coins.bp):
        app.register_blueprint(blueprint, url_prefix=prefix)
    app.register_blueprint(wellknown.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(webapp.bp)
    register_error_handlers(app)
    logging.getLogger("hutch").setLevel(settings.log_level if settings.log_level != "NONE"
                                        else logging.CRITICAL + 1)
    # At INFO, SQLAlchemy logs each statement with its bound parameters (coin data): whatever
    # a logging configuration says, that logger stays at warnings.
    logging.getLogger("sqlalchemy.engine").setLevel(logging.WARNING)
    return app
