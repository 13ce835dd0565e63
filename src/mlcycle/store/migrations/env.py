"""Alembic's entry point for the metadata migrations, run in code by ``mlcycle.store``.

The caller hands over a connection already inside a transaction (and, on
PostgreSQL, holding the migration lock), so every pending migration applies in
that one transaction or not at all.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from mlcycle.store._sql_db import VERSION_TABLE


def run_migrations(connection: Connection) -> None:
    """Apply the pending migrations on ``connection``; batch mode lets SQLite alter tables."""
    context.configure(
        connection=connection,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
        transaction_per_migration=False,
    )
    with context.begin_transaction():
        context.run_migrations()


# pytest's doctest collection imports this file too; only alembic sets up a context.
if hasattr(context, "config"):
    run_migrations(context.config.attributes["connection"])
