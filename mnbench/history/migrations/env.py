"""Alembic environment: migrations run on the connection :func:`mnbench.history.db.open_db` hands over."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, render_as_batch=True)  # batch: SQLite rebuilds tables to alter them
with context.begin_transaction():
    context.run_migrations()
