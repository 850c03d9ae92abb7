"""Alembic environment: the connection is handed in by ``posegen.db.migrate``."""

from __future__ import annotations

from alembic import context

from posegen.db.models import Base

config = context.config
target_metadata = Base.metadata


def run_migrations_online() -> None:
    connection = config.attributes["connection"]
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transaction_per_migration=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("posegen migrations run online only (posegen db upgrade)")
run_migrations_online()
