"""Programmatic Alembic: upgrade, downgrade, current, and the head revision."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine

from posegen.db.engine import database_errors
from posegen.exceptions import MigrationError

MIGRATIONS_DIR = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def _run(engine: Engine, fn_name: str, revision: str) -> None:
    cfg = alembic_config()
    with database_errors(), engine.connect() as conn:
        cfg.attributes["connection"] = conn
        try:
            getattr(command, fn_name)(cfg, revision)
        except CommandError as exc:
            raise MigrationError(str(exc).splitlines()[0]) from exc
        conn.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str) -> None:
    _run(engine, "downgrade", revision)


def current(engine: Engine) -> str | None:
    with database_errors(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    return current(engine) == head_revision()
