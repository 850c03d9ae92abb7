"""Pick the dialect module for an engine: the one place that asks which database this is."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Connection, Engine, Table
from sqlalchemy.sql.dml import Insert
from sqlalchemy.sql.selectable import TextualSelect


class DialectOps(Protocol):
    name: str
    claim_statement: TextualSelect
    lock_rows: str
    skip_locked: str

    def insert_ignoring_duplicates(self, table: Table) -> Insert: ...

    def notify(self, conn: Connection) -> None: ...

    def try_recovery_lock(self, conn: Connection) -> bool: ...

    def listen(
        self, engine: Engine, on_notify: Callable[[], None], stop: threading.Event, poll: float
    ) -> None: ...


def ops_for(bind: Engine | Connection) -> DialectOps:
    """The queue operations for this engine's database."""
    if bind.dialect.name == "postgresql":
        from posegen.queue.dialect_pg import PostgresOps

        return PostgresOps()
    from posegen.queue.dialect_sqlite import SqliteOps

    return SqliteOps()
