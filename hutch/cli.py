"""The ``hutch`` command: serve, init, keys generate, db upgrade, token (RUNTIME-INTERFACE.md)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from hutch.settings import ConfigError, Settings, config_path_from, load_settings
from hutch.signing import SIGNING_ALGS, generate_jwks

EXIT_CONFIG = 2


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path_from(getattr(args, "config", None)))


def _prepare(settings: Settings, announce: bool) -> list[str]:
    """Create what a fresh install lacks: keys, local issuer (embedded), schema."""
    from sqlalchemy.engine import make_url

    from hutch.instance import ensure_local_issuer, ensure_sign_key

    created = []
    if ensure_sign_key(settings):
        created.append(f"signing keys    {settings.sign_key}")
    if ensure_local_issuer(settings):
        created.append(f"local issuer    {settings.oidc.local_issuer_key}")
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            Path(url.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            # Ciphertext only, but nobody else needs to read it: owner-only, like the keys.
            os.close(os.open(url.database, os.O_WRONLY | os.O_CREAT, 0o600))
            created.append(f"SQLite database {url.database}")
    before, after = _upgrade_schema(settings)
    if before != after:
        created.append(f"database schema {before or 'empty'} -> {after}")
    if announce:
        for line in created:
            print(f"created {line}")
    return created


def cmd_init(args: argparse.Namespace) -> int:
    settings = _settings(args)
    if not _prepare(settings, announce=True):
        print("nothing to do: keys and database schema are in place")
    return 0


def _upgrade_schema(settings: Settings) -> tuple[str | None, str | None]:
    """Apply pending migrations; the revisions before and after."""
    from hutch.store import migrate
    from hutch.store.db import create_db_engine

    engine = create_db_engine(settings.database)
    try:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine)
        return before, migrate.current_revision(engine)
    finally:
        engine.dispose()


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    before, after = _upgrade_schema(_settings(args))
    print(f"database schema at {after}" + ("" if before == after else f" (was {before})"))
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    json.dump(generate_jwks(args.alg, args.kid), sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    from hutch.instance import mint_token

    settings = _settings(args)
    print(mint_token(settings, args.sub, args.scope, args.lifetime))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import DBAPIError

    from hutch import create_app
    from hutch.extensions import warn_stale_sign_kids
    from hutch.server import serve
    from hutch.store import migrate

    settings = _settings(args)
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)
    if settings.config_path is None:
        from hutch.instance import refuse_lost_database

        refuse_lost_database(settings)
        print(f"No configuration file: embedded default in {settings.instance_path}")
        _prepare(settings, announce=True)
        print("The local issuer (iss 'hutch-local') is for trying Hutch: mint a token with "
              "'hutch token'.\nProduction deployments configure [oidc] with their identity "
              "provider.")
    app = create_app(settings)
    ext = app.extensions["hutch"]
    try:
        current = migrate.is_current(ext.db.engine)
    except DBAPIError as exc:
        raise ConfigError(f"database.url: cannot open the database ({type(exc.orig).__name__}: "
                          f"{exc.orig}); create it with 'hutch init'") from None
    if not current:
        raise ConfigError("database.url: the schema is not current; run 'hutch db upgrade' "
                          "(or 'hutch init')")
    warn_stale_sign_kids(ext)
    ext.db.dispose()
    host = args.host or settings.bind_address
    port = args.port or settings.port
    workers = args.workers or int(os.environ.get("WEB_CONCURRENCY", 0)) or (os.cpu_count() or 1)
    print(f"Hutch listening on http://{host}:{port}/ ({workers} workers); "
          f"API at {settings.external_url}{settings.api_prefix}; "
          f"database {make_url(settings.database.url).render_as_string()}", flush=True)
    return serve(app, host, port, workers)


def cmd_backup(args: argparse.Namespace) -> int:
    from hutch.backup import BackupError, backup

    settings = _settings(args)
    try:
        print(backup(settings.database, Path(args.file)))
    except BackupError as exc:
        print(f"hutch: backup: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def cmd_restore(args: argparse.Namespace) -> int:
    from hutch.backup import BackupError
    from hutch.restore import restore

    settings = _settings(args)
    try:
        print(restore(settings.database, Path(args.file)))
    except BackupError as exc:
        print(f"hutch: restore: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hutch", description="Hutch secret vault API server")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", help="TOML config file (default: $HUTCH_CONFIG, ./hutch.config)")
        return p

    serve = with_config(commands.add_parser("serve", help="run the HTTP server"))
    serve.add_argument("--host")
    serve.add_argument("--port", type=int)
    serve.add_argument("--workers", type=int)
    serve.set_defaults(func=cmd_serve)
    with_config(commands.add_parser("init", help="create keys and database schema")).set_defaults(
        func=cmd_init)
    keys = commands.add_parser("keys", help="signing keys").add_subparsers(dest="keys",
                                                                           required=True)
    generate = keys.add_parser("generate", help="print a private JWKS with one new key")
    generate.add_argument("--alg", default="ES256", choices=SIGNING_ALGS)
    generate.add_argument("--kid")
    generate.set_defaults(func=cmd_keys_generate)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    with_config(db.add_parser("upgrade", help="apply pending migrations")).set_defaults(
        func=cmd_db_upgrade)
    token = with_config(commands.add_parser("token", help="mint a token from the local issuer"))
    token.add_argument("--sub", default="hutch-user")
    token.add_argument("--scope")
    token.add_argument("--lifetime", type=int, default=3600)
    token.set_defaults(func=cmd_token)
    backup = with_config(commands.add_parser(
        "backup", help="write a consistent snapshot of the database to FILE"))
    backup.add_argument("file", metavar="FILE")
    backup.set_defaults(func=cmd_backup)
    restore = with_config(commands.add_parser(
        "restore", help="load a backup FILE into an empty database (any backend)"))
    restore.add_argument("file", metavar="FILE")
    restore.set_defaults(func=cmd_restore)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hutch: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
