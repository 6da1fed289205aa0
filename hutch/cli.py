"""The ``hutch`` command: serve, init, keys, db upgrade|current, token (RUNTIME-INTERFACE.md).

Every failure an operator can cause ends in one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from hutch.settings import ConfigError, Settings, config_path_from, load_settings
from hutch.signing import SIGNING_ALGS, generate_jwks

if TYPE_CHECKING:
    from hutch.store import migrate

EXIT_CONFIG = 2
DEFAULT_TOKEN_LIFETIME = 3600
log = logging.getLogger("hutch")


class CommandError(Exception):
    """A refused command line or an answer "no"; the message is the one line printed."""


def _settings(args: argparse.Namespace) -> Settings:
    return load_settings(config_path_from(getattr(args, "config", None)))


def _prepare(settings: Settings, announce: bool, confirm: bool = False) -> list[str]:
    """Create what a fresh install lacks: keys, local issuer (embedded), schema."""
    from sqlalchemy.engine import make_url

    from hutch.instance import ensure_local_issuer, ensure_sign_key, warn_exposed_keys
    from hutch.signing import SigningKeys

    created = []
    if ensure_sign_key(settings):
        created.append(f"signing keys    {settings.sign_key}")
    if ensure_local_issuer(settings):
        created.append(f"local issuer    {settings.oidc.local_issuer_key}")
    # An unreadable or broken key file is an error here, not "nothing to do".
    SigningKeys.load(settings.sign_key, settings.sign_exp)
    warn_exposed_keys(settings)
    url = make_url(settings.database.url)
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        if not Path(url.database).exists():
            try:
                Path(url.database).parent.mkdir(mode=0o700, parents=True, exist_ok=True)
                # Ciphertext only, but nobody else needs to read it: owner-only, like the keys.
                os.close(os.open(url.database, os.O_WRONLY | os.O_CREAT, 0o600))
            except OSError as exc:
                raise ConfigError(f"database.url: cannot create the SQLite file {url.database}"
                                  f" ({exc.strerror}: {exc.filename})") from None
            created.append(f"SQLite database {url.database}")
    before, after = _upgrade_schema(settings, confirm)
    if before != after:
        created.append(f"database schema {before or 'empty'} -> {after}")
    if announce:
        for line in created:
            print(f"created {line}")
    return created


def _logging() -> None:
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic").setLevel(logging.WARNING)


def cmd_init(args: argparse.Namespace) -> int:
    settings = _settings(args)
    _logging()
    if not _prepare(settings, announce=True, confirm=args.yes):
        print("nothing to do: keys and database schema are in place")
    return 0


def _upgrade_schema(settings: Settings, confirmed: bool = False) -> tuple[str | None, str | None]:
    """Apply pending migrations; the revisions before and after."""
    from hutch.store import migrate
    from hutch.store.db import create_db_engine

    engine = create_db_engine(settings.database)
    try:
        before = migrate.current_revision(engine)
        if migrate.holds_data(engine):
            _warn_before_removing(migrate.pending(engine), confirmed)
        migrate.upgrade(engine)
        return before, migrate.current_revision(engine)
    finally:
        engine.dispose()


def _warn_before_removing(steps: list[migrate.Step], confirmed: bool) -> None:
    """Say what a pending migration deletes; ask at a terminal, unless --yes.

    Scripts (the Docker entrypoint runs ``hutch init``) are not blocked: without a
    terminal the warning is logged and the upgrade goes on, as it always did.
    """
    removing = [step for step in steps if step.removes_data]
    if not removing:
        return
    for step in removing:
        log.warning("migration %s deletes %s: back up the database first (a copy of the "
                    "SQLite file, mariadb-dump, pg_dump)", step.revision, step.removes_data)
    if confirmed or sys.stdin is None or not sys.stdin.isatty():
        return
    answer = input("Back up first. Apply these migrations now? [y/N] ").strip().lower()
    if answer not in ("y", "yes"):
        raise CommandError("upgrade cancelled: nothing changed; back up, then run again "
                           "(--yes skips this question)")


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    _logging()
    before, after = _upgrade_schema(_settings(args), args.yes)
    print(f"database schema at {after}" + ("" if before == after else f" (was {before})"))
    return 0


def cmd_db_current(args: argparse.Namespace) -> int:
    from hutch.store import migrate
    from hutch.store.db import create_db_engine

    engine = create_db_engine(_settings(args).database)
    try:
        current = migrate.current_revision(engine)
        steps = migrate.pending(engine)
        fresh = not migrate.holds_data(engine)
    finally:
        engine.dispose()
    where = "empty database" if fresh else "original schema, not yet adopted"
    print(f"current  {current or 'none (' + where + ')'}")
    print(f"head     {migrate.head_revision()}")
    if not steps:
        print("pending  none: the schema is current")
    for step in steps:
        removes = f" [deletes {step.removes_data}]" if step.removes_data and not fresh else ""
        print(f"pending  {step.revision} {step.summary}{removes}")
    return 0


def cmd_keys_generate(args: argparse.Namespace) -> int:
    jwks = generate_jwks(args.alg, args.kid)
    if args.out is None:
        json.dump(jwks, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return 0
    from hutch.instance import write_private

    try:
        write_private(Path(args.out), jwks, replace=args.force)
    except FileExistsError:
        raise CommandError(f"--out: {args.out} exists; --force replaces it") from None
    print(f"wrote {args.out} (mode 0600, kid {jwks['keys'][0]['kid']})")
    return 0


# RFC 6749 §3.3 scope-token.
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")


def cmd_token(args: argparse.Namespace) -> int:
    from hutch.auth.tokens import MAX_SUB_BYTES, valid_sub
    from hutch.instance import mint_token

    settings = _settings(args)
    if not valid_sub(args.sub):
        raise CommandError(f"--sub: must be 1 to {MAX_SUB_BYTES} UTF-8 bytes without control "
                           "characters (the server refuses any other sub)")
    if args.lifetime is None:
        args.lifetime = min(DEFAULT_TOKEN_LIFETIME, settings.max_token_lifetime)
    if args.lifetime <= 0:
        raise CommandError("--lifetime: must be a positive number of seconds")
    if args.lifetime > settings.max_token_lifetime:
        raise CommandError(f"--lifetime: at most max_token_lifetime ({settings.max_token_lifetime}"
                           " s); the server refuses longer tokens")
    if args.scope is not None:
        words = args.scope.split(" ")
        if not all(_SCOPE_TOKEN.match(word) for word in words):
            raise CommandError("--scope: space-separated scope names of printable ASCII, "
                               "without quotes or backslashes (RFC 6749 §3.3)")
        if not set(words) & set(settings.scopes):
            raise CommandError(f"--scope: must include one of {' '.join(settings.scopes)} "
                               "(hutch_scope); the server refuses other tokens")
    print(mint_token(settings, args.sub, args.scope, args.lifetime))
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from sqlalchemy.engine import make_url

    from hutch import create_app
    from hutch.extensions import warn_stale_sign_kids
    from hutch.instance import warn_exposed_keys
    from hutch.server import ensure_port_free, serve
    from hutch.store import migrate

    settings = _settings(args)
    _logging()
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
    current = migrate.is_current(ext.db.engine)  # a DBAPIError is explained by main()
    if not current:
        raise ConfigError("database.url: the schema is not current; run 'hutch db upgrade' "
                          "(or 'hutch init')")
    warn_stale_sign_kids(ext)
    if settings.config_path is not None:  # the embedded default's were checked by _prepare
        warn_exposed_keys(settings)
    if not settings.oidc.is_local and settings.oidc.aud is None:
        # RFC 9068 §4: without an audience check, a token the provider issued for any
        # other API of the same provider (same iss, same scope name) opens this one.
        log.warning("oidc.aud is not set: tokens issued for other APIs of this identity "
                    "provider are accepted; set it to the audience the provider puts in "
                    "Hutch's tokens (README, 'With an OpenID Connect provider')")
    ext.db.dispose()
    host = args.host or settings.bind_address
    port = args.port or settings.port
    workers = args.workers or int(os.environ.get("WEB_CONCURRENCY", 0)) or (os.cpu_count() or 1)
    ensure_port_free(host, port)
    print(f"Hutch listening on http://{host}:{port}/ ({workers} workers); "
          f"API at {settings.external_url}{settings.api_prefix}; "
          f"database {make_url(settings.database.url).render_as_string()}", flush=True)
    return serve(app, host, port, workers)


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("hutch")
    except PackageNotFoundError:  # run from a source tree without installing
        return "unknown"


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
    parser.add_argument("--version", action="version", version=f"hutch {_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    def with_config(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--config", metavar="PATH",
                       help="TOML configuration file (default: $HUTCH_CONFIG, else ./hutch.config "
                            "if it exists, else the embedded default in $HUTCH_INSTANCE or "
                            "./hutch-instance)")
        return p

    def with_yes(p: argparse.ArgumentParser) -> argparse.ArgumentParser:
        p.add_argument("--yes", action="store_true",
                       help="apply migrations that delete data without asking (default: ask "
                            "when run at a terminal; without one, warn and go on)")
        return p

    serve = with_config(commands.add_parser("serve", help="run the HTTP server"))
    serve.add_argument("--host", help="address to listen on (default: bind_address, 127.0.0.1)")
    serve.add_argument("--port", type=int, help="TCP port (default: port, 4884)")
    serve.add_argument("--workers", type=int, metavar="N",
                       help="worker processes, each with 4 threads (default: $WEB_CONCURRENCY, "
                            f"else one per CPU: {os.cpu_count() or 1} here)")
    serve.set_defaults(func=cmd_serve)
    init = with_yes(with_config(commands.add_parser(
        "init", help="create what is missing: signing keys, database schema; idempotent")))
    init.set_defaults(func=cmd_init)
    keys = commands.add_parser("keys", help="signing keys").add_subparsers(dest="keys",
                                                                           required=True)
    generate = keys.add_parser("generate", help="a private JWKS with one new key")
    generate.add_argument("--alg", default="ES256", choices=SIGNING_ALGS,
                          help="signature algorithm (default: ES256, the cheapest to sign)")
    generate.add_argument("--kid", help="key id (default: a random one)")
    generate.add_argument("--out", metavar="FILE",
                          help="write the JWKS to FILE, readable by its owner only (mode 0600); "
                               "default: print it")
    generate.add_argument("--force", action="store_true",
                          help="with --out, replace an existing FILE (default: refuse)")
    generate.set_defaults(func=cmd_keys_generate)
    db = commands.add_parser("db", help="database schema").add_subparsers(dest="db", required=True)
    with_yes(with_config(db.add_parser(
        "upgrade", help="apply pending migrations (says when one deletes data)"))).set_defaults(
        func=cmd_db_upgrade)
    with_config(db.add_parser(
        "current", help="show the database's revision, the head and what is pending")
    ).set_defaults(func=cmd_db_current)
    token = with_config(commands.add_parser("token", help="mint a token from the local issuer"))
    token.add_argument("--sub", default="hutch-user",
                       help="the user (token sub), 1-128 bytes (default: hutch-user)")
    token.add_argument("--scope", help="space-separated scopes, including one the server "
                                       "requires (default: hutch_scope)")
    token.add_argument("--lifetime", type=int, metavar="SECONDS",
                       help="seconds until the token expires, at most max_token_lifetime "
                            f"(default: {DEFAULT_TOKEN_LIFETIME}, or max_token_lifetime if less)")
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
    from sqlalchemy.exc import ArgumentError, DBAPIError

    from hutch.store.diagnose import DRIVERS, explain

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"hutch: config error: {exc}", file=sys.stderr)
    except CommandError as exc:
        print(f"hutch: {exc}", file=sys.stderr)
    except (ArgumentError, DBAPIError, ImportError) as exc:
        if isinstance(exc, ImportError) and exc.name not in DRIVERS:
            raise
        url = _settings(args).database.url
        print(f"hutch: {explain(exc, url)}", file=sys.stderr)
    except OSError as exc:
        # A taken port, an unreadable file: the system's words and the file, no traceback.
        where = f": {exc.filename}" if exc.filename else ""
        print(f"hutch: {exc.strerror or exc}{where}", file=sys.stderr)
    except KeyboardInterrupt:
        return 130
    return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
