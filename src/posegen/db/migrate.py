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


def _run(engine: Engine, fn_name: str, revision: str, uploads_dir: Path | None) -> None:
    cfg = alembic_config()
    # Data migrations that move upload files need the folder (default: from the environment).
    cfg.attributes["uploads_dir"] = uploads_dir
    with database_errors(), engine.connect() as conn:
        cfg.attributes["connection"] = conn
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # A table rebuild (SQLite's only way to change a constraint) drops the old table;
            # with foreign keys on, that DROP deletes rows first and cascades into every table
            # that refers to it. The pragma only works outside a transaction: on the raw
            # connection, before SQLAlchemy begins one.
            raw = conn.connection.dbapi_connection
            raw.execute("PRAGMA foreign_keys=OFF")  # type: ignore[union-attr]
        try:
            getattr(command, fn_name)(cfg, revision)
            if sqlite:
                broken = conn.exec_driver_sql("PRAGMA foreign_key_check").all()
                if broken:
                    raise MigrationError(f"foreign keys broken by the migration: {broken[:5]}")
            conn.commit()
        except CommandError as exc:
            raise MigrationError(str(exc).splitlines()[0]) from exc
        finally:
            if conn.in_transaction():
                conn.rollback()
            if sqlite:
                raw = conn.connection.dbapi_connection
                raw.execute("PRAGMA foreign_keys=ON")  # type: ignore[union-attr]


def upgrade(engine: Engine, revision: str = "head", *, uploads_dir: Path | None = None) -> None:
    _run(engine, "upgrade", revision, uploads_dir)


def downgrade(engine: Engine, revision: str, *, uploads_dir: Path | None = None) -> None:
    _run(engine, "downgrade", revision, uploads_dir)


def current(engine: Engine) -> str | None:
    with database_errors(), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def is_at_head(engine: Engine) -> bool:
    return current(engine) == head_revision()
