"""Alembic environment: migrations run on the connection meshup hands over at start-up."""

from __future__ import annotations

from alembic import context

from meshup.store.tables import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only when alembic is run by hand
    from sqlalchemy import create_engine

    url = context.config.get_main_option("sqlalchemy.url") or "sqlite:///meshup.db"
    with create_engine(url).connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
else:
    # meshup's connections emit BEGIN themselves (on SQLite: BEGIN IMMEDIATE, pysqlite's own
    # handling off), so DDL is transactional on SQLite too: all revisions run in one transaction
    # that holds the write lock from the version read to the commit. Per-revision transactions
    # (Alembic's SQLite default) let two processes starting at once apply the same revision.
    context.configure(
        connection=connection, target_metadata=metadata, render_as_batch=True, transactional_ddl=True
    )
    with context.begin_transaction():
        context.run_migrations()
