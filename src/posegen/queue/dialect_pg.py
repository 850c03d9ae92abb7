"""PostgreSQL specifics of the queue: the claim statement, row locks, NOTIFY/LISTEN and the
recovery lock. The SQLite twin is :mod:`posegen.queue.dialect_sqlite`."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine, text

from posegen.db.hot_queries import CLAIM_SCAN
from posegen.queue import dialect_pg_bulk as bulk
from posegen.queue.bulk_core import EndRow
from posegen.queue.quota import SubmitLimits
from posegen.queue.sql import CLAIM_RETURNING, claim_columns

log = logging.getLogger(__name__)

#: One channel for "there may be work": payloads are not needed, a wake-up is enough.
CHANNEL = "posegen_queue"
#: pg_advisory lock key of the recovery runner ("posegen" + 1 as ASCII bytes, fits a bigint).
RECOVERY_LOCK_KEY = 0x706F736567656E01

_DEADLINE = (
    ":now + make_interval(secs => :deadline_base + :deadline_per_pose * total_expected_poses)"
)

# The pick is CLAIM_SCAN verbatim (what ``posegen db verify`` EXPLAINs) plus SKIP LOCKED, so
# concurrent claimers never wait for, nor take, each other's rows; the UPDATE then leases them all
# and the ``started`` events are appended, all in one statement (one round trip per batch).
_STARTED = (
    "json_build_object('status', 'processing', 'completed', poses_completed, "
    "'failed', poses_failed, 'total', total_expected_poses, 'attempt', attempts, "
    "'worker', CAST(:worker AS text))"
)
CLAIM = claim_columns(
    text(
        "WITH picked AS (" + CLAIM_SCAN.sql + " FOR UPDATE SKIP LOCKED), "
        "claimed AS (UPDATE pose_generations SET status = 'processing', "
        "started_at = COALESCE(started_at, :now), "
        "lease_token = lease_token + 1, attempts = attempts + 1, "
        "leased_by = :worker, heartbeat_at = :now, model = COALESCE(model, :model), "
        f"deadline_at = {_DEADLINE}, "
        f"lease_expires_at = LEAST(:lease_until, {_DEADLINE}) "
        "WHERE id IN (SELECT id FROM picked) RETURNING " + CLAIM_RETURNING + "), "
        "started AS (INSERT INTO generation_events (generation_id, kind, data, created_at) "
        f"SELECT id, 'started', {_STARTED}, clock_timestamp() FROM claimed) "
        "SELECT " + CLAIM_RETURNING + " FROM claimed"
    )
)


class PostgresOps:
    """Queue operations whose SQL differs on PostgreSQL."""

    name = "postgresql"
    claim_statement = CLAIM
    #: Writer threads a worker runs (one batch is built while another waits on its commit).
    writer_threads = 2
    #: The claim statement appends the ``started`` events itself.
    claim_writes_events = True
    #: Appended to a SELECT that fences rows a transaction is about to update.
    lock_rows = " FOR UPDATE"
    #: Appended to the recovery scan: rows a worker is writing right now are left for next pass.
    skip_locked = " FOR UPDATE SKIP LOCKED"

    # Batch statements over arrays (see dialect_pg_bulk).
    def fence(self, conn: Connection, ids: Sequence[int]) -> list[Any]:
        """``processing`` rows among ``ids``, locked FOR UPDATE in id order."""
        return bulk.fence(conn, ids)

    def insert_poses(
        self, conn: Connection, rows: Sequence[dict[str, Any]], now: dt.datetime
    ) -> set[tuple[int, str]]:
        return bulk.insert_poses(conn, rows, now)

    def add_counts(self, conn: Connection, items: Sequence[tuple[int, int, int, int]]) -> None:
        bulk.add_counts(conn, items)

    def end_rows(
        self,
        conn: Connection,
        items: Sequence[EndRow],
        now: dt.datetime,
        expired_before: dt.datetime,
    ) -> None:
        bulk.end_rows(conn, items, now, expired_before)

    def submit_one(self, conn: Connection, row: dict[str, Any], limits: SubmitLimits) -> int | None:
        """One submit as one statement (limits and rollup, row, event, NOTIFY); None: refused.
        ``conn`` must be in autocommit: the statement is the whole transaction."""
        return bulk.submit_one(conn, row, limits, CHANNEL)

    def submit_rows(self, conn: Connection, rows: Sequence[dict[str, Any]]) -> list[int]:
        """Many submits as one statement, in the caller's transaction; ids in row order."""
        return bulk.submit_rows(conn, rows, CHANNEL)

    def flush(
        self,
        conn: Connection,
        increments: list[dict[str, int]],
        event_items: Sequence[tuple[int, str, dict[str, Any]]],
        notify: bool,
        now: dt.datetime,
    ) -> None:
        """Rollup increments, events and NOTIFY in one statement."""
        bulk.flush(conn, increments, event_items, notify, now, CHANNEL)

    def insert_events(
        self, conn: Connection, items: Sequence[tuple[int, str, dict[str, Any]]], now: dt.datetime
    ) -> None:
        bulk.insert_events(conn, items, now)

    def notify(self, conn: Connection) -> None:
        """Wake listening workers when this transaction commits (NOTIFY is transactional)."""
        conn.execute(text("SELECT pg_notify(:channel, '')"), {"channel": CHANNEL})

    def try_recovery_lock(self, conn: Connection) -> bool:
        """Take the fleet-wide recovery lock for this transaction, or learn someone has it."""
        got = conn.execute(
            text("SELECT pg_try_advisory_xact_lock(:key)"), {"key": RECOVERY_LOCK_KEY}
        ).scalar_one()
        return bool(got)

    def listen(
        self, engine: Engine, on_notify: Callable[[], None], stop: threading.Event, poll: float
    ) -> None:
        """Call ``on_notify`` for each NOTIFY until ``stop`` is set; reconnect on errors.

        Runs on its own connection outside the pool: LISTEN is session state, and a pooled
        connection would carry it to unrelated users.
        """
        conninfo = engine.url.set(drivername="postgresql").render_as_string(hide_password=False)
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute("LISTEN " + CHANNEL)
                    on_notify()  # anything queued while we were not listening
                    while not stop.is_set():
                        for _ in conn.notifies(timeout=poll, stop_after=1):
                            on_notify()
            except psycopg.Error as exc:
                # Polling keeps the worker going; LISTEN is only the fast path.
                log.warning(
                    "LISTEN connection failed; polling until it is back", extra={"error": str(exc)}
                )
                stop.wait(max(poll, 1.0))
