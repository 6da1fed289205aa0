"""Alembic environment for Hutch.

Run through ``hutch.store.migrate`` (``hutch db upgrade``): it builds the
alembic Config in code, takes the cross-replica lock, opens the transaction
and hands its connection over in ``config.attributes["connection"]``.
"""

from __future__ import annotations

from alembic import context

from hutch.store.schema import metadata


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:
        raise RuntimeError("run migrations through hutch.store.migrate (hutch db upgrade)")
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can barely ALTER: batch mode rebuilds tables ("move and copy").
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    # The migrations look at the database (which tables exist, which collations) to decide.
    raise RuntimeError("offline (--sql) migrations are not supported; see sql/ for DDL scripts")
run_migrations_online()
