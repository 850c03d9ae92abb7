"""SQLite specifics of the queue. There is one writer at a time (``BEGIN IMMEDIATE``), so the
write transaction itself is the claim lock and the recovery lock; workers poll."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Connection, Engine, Table, text
from sqlalchemy.dialects.sqlite import insert as dialect_insert
from sqlalchemy.sql.dml import Insert

from posegen.db.hot_queries import CLAIM_SCAN
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
        "leased_by = :worker, heartbeat_at = :now, "
        f"deadline_at = {_DEADLINE}, "
        f"lease_expires_at = min(:lease_until, {_DEADLINE}) "
        "WHERE id IN (" + CLAIM_SCAN.sql + ") RETURNING " + CLAIM_RETURNING
    )
)


class SqliteOps:
    """Queue operations whose SQL differs on SQLite."""

    name = "sqlite"
    claim_statement = CLAIM
    lock_rows = ""
    skip_locked = ""

    def insert_ignoring_duplicates(self, table: Table) -> Insert:
        """INSERT .. ON CONFLICT DO NOTHING (a re-recorded pose is a no-op)."""
        return dialect_insert(table).on_conflict_do_nothing()

    def notify(self, conn: Connection) -> None:
        """No NOTIFY on SQLite: workers poll."""

    def try_recovery_lock(self, conn: Connection) -> bool:
        """The immediate write transaction already excludes every other writer."""
        return True

    def listen(
        self, engine: Engine, on_notify: Callable[[], None], stop: threading.Event, poll: float
    ) -> None:
        """Nothing to listen to; returns at once and the worker polls."""
