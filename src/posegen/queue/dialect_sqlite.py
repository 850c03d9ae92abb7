"""SQLite specifics of the queue. There is one writer at a time (``BEGIN IMMEDIATE``), so the
write transaction itself is the claim lock and the recovery lock; workers poll."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, text

from posegen.db.hot_queries import CLAIM_SCAN
from posegen.queue import bulk_core
from posegen.queue.sql import CLAIM_RETURNING, claim_columns

# SQLite has no interval type: date arithmetic goes through strftime, which keeps milliseconds;
# the trailing '000' restores the six fractional digits SQLAlchemy stores, so stored values keep
# sorting and comparing as text.
_DEADLINE = (
    "(strftime('%Y-%m-%d %H:%M:%f', :now, "
    "'+' || (:deadline_base + :deadline_per_pose * total_expected_poses) || ' seconds') || '000')"
)

CLAIM = claim_columns(
    text(
        "UPDATE pose_generations SET status = 'processing', "
        "started_at = COALESCE(started_at, :now), "
        "lease_token = lease_token + 1, attempts = attempts + 1, "
        "leased_by = :worker, heartbeat_at = :now, model = COALESCE(model, :model), "
        f"deadline_at = {_DEADLINE}, "
        f"lease_expires_at = min(:lease_until, {_DEADLINE}) "
        "WHERE id IN (" + CLAIM_SCAN.sql + ") RETURNING " + CLAIM_RETURNING
    )
)


class SqliteOps:
    """Queue operations whose SQL differs on SQLite."""

    name = "sqlite"
    claim_statement = CLAIM
    #: Writer threads a worker runs (one writer at a time: a second would wait for the lock).
    writer_threads = 1
    #: The claim returns rows only; ``claim`` appends the ``started`` events itself.
    claim_writes_events = False
    #: No one-statement submit: in-process statements cost no round trip.
    submit_one = None
    submit_rows = None
    lock_rows = ""
    skip_locked = ""

    # Batch statements: portable Core (in-process, a statement costs no round trip).
    def fence(self, conn: Connection, ids: Sequence[int]) -> list[Any]:
        """``processing`` rows among ``ids`` (the write lock already excludes others)."""
        return bulk_core.fence(conn, ids, lock=False)

    def insert_poses(
        self, conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
    ) -> set[tuple[int, str]]:
        return bulk_core.insert_poses(conn, rows, now)

    def add_counts(self, conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None:
        bulk_core.add_counts(conn, items)

    def end_rows(
        self,
        conn: Connection,
        items: Sequence[bulk_core.EndRow],
        now: dt.datetime,
        expired_before: dt.datetime,
    ) -> None:
        bulk_core.end_rows(conn, items, now, expired_before)

    def flush(
        self,
        conn: Connection,
        increments: list[dict[str, int]],
        event_items: Sequence[tuple[int, str, dict[str, Any]]],
        notify: bool,
        now: dt.datetime,
    ) -> None:
        """Rollup increments and events; no NOTIFY on SQLite (workers poll)."""
        bulk_core.flush(conn, increments, event_items, now)

    def insert_events(
        self, conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
    ) -> None:
        bulk_core.insert_events(conn, items, now)

    def notify(self, conn: Connection) -> None:
        """No NOTIFY on SQLite: workers poll."""

    def try_recovery_lock(self, conn: Connection) -> bool:
        """The immediate write transaction already excludes every other writer."""
        return True

    def listen(
        self, engine: Engine, on_notify: Callable[[], None], stop: threading.Event, poll: float
    ) -> None:
        """Nothing to listen to; returns at once and the worker polls."""
