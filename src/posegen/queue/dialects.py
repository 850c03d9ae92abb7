"""Pick the dialect module for an engine: the one place that asks which database this is."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from sqlalchemy import Connection, Engine
from sqlalchemy.sql.selectable import TextualSelect

from posegen.queue.bulk_core import EndRow
from posegen.queue.quota import SubmitLimits


class DialectOps(Protocol):
    name: str
    claim_statement: TextualSelect
    writer_threads: int
    claim_writes_events: bool
    lock_rows: str

    @property
    def submit_one(
        self,
    ) -> Callable[[Connection, dict[str, Any], SubmitLimits], int | None] | None:
        """A whole submit, limits included, as one statement where the database can
        (PostgreSQL)."""

    @property
    def submit_rows(self) -> Callable[[Connection, Sequence[dict[str, Any]]], list[int]] | None:
        """Many submits as one statement, where the database can (PostgreSQL)."""

    skip_locked: str

    def fence(self, conn: Connection, ids: Sequence[int]) -> list[Any]: ...

    def insert_poses(
        self, conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
    ) -> set[tuple[int, str]]: ...

    def add_counts(self, conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None: ...

    def end_rows(
        self,
        conn: Connection,
        items: Sequence[EndRow],
        now: dt.datetime,
        expired_before: dt.datetime,
    ) -> None: ...

    def flush(
        self,
        conn: Connection,
        increments: list[dict[str, int]],
        event_items: Sequence[tuple[int, str, dict[str, Any]]],
        notify: bool,
        now: dt.datetime,
    ) -> None: ...

    def insert_events(
        self, conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
    ) -> None: ...

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
