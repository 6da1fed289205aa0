"""Alembic migrations of the Hutch schema; run them with hutch.store.migrate (hutch db upgrade)."""
