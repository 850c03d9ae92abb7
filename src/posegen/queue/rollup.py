"""The per-user rollup (``user_generation_stats``), changed in the same transaction as the job
state it counts, so "top users" is an O(limit) index read that never drifts from the truth."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, text

from posegen.db.models import GenerationStatus
from posegen.db.types import UTCDateTime

# INSERT .. ON CONFLICT DO UPDATE reads the same on SQLite (>= 3.24) and PostgreSQL.
_UPSERT = text(
    "INSERT INTO user_generation_stats "
    "(user_id, generations, completed, partial, failed, cancelled, poses_completed, "
    "result_bytes, reserved_bytes, updated_at) "
    "VALUES (:user_id, :generations, :completed, :partial, :failed, :cancelled, "
    ":poses_completed, :result_bytes, :reserved_bytes, :now) "
    "ON CONFLICT (user_id) DO UPDATE SET "
    "generations = user_generation_stats.generations + excluded.generations, "
    "completed = user_generation_stats.completed + excluded.completed, "
    "partial = user_generation_stats.partial + excluded.partial, "
    "failed = user_generation_stats.failed + excluded.failed, "
    "cancelled = user_generation_stats.cancelled + excluded.cancelled, "
    "poses_completed = user_generation_stats.poses_completed + excluded.poses_completed, "
    "result_bytes = user_generation_stats.result_bytes + excluded.result_bytes, "
    "reserved_bytes = user_generation_stats.reserved_bytes + excluded.reserved_bytes, "
    "updated_at = excluded.updated_at"
).bindparams(bindparam("now", type_=UTCDateTime()))

_FIELDS = (
    "generations",
    "completed",
    "partial",
    "failed",
    "cancelled",
    "poses_completed",
    # The quota counters the submit transaction checks (see posegen.queue.quota).
    "result_bytes",
    "reserved_bytes",
)
_TERMINAL_FIELD = {
    GenerationStatus.COMPLETED: "completed",
    GenerationStatus.PARTIAL: "partial",
    GenerationStatus.FAILED: "failed",
    GenerationStatus.CANCELLED: "cancelled",
}


@dataclass
class Deltas:
    """Accumulates per-user increments for one transaction."""

    by_user: dict[int, dict[str, int]]

    def __init__(self) -> None:
        self.by_user = defaultdict(lambda: dict.fromkeys(_FIELDS, 0))

    def add(self, user_id: int, name: str, amount: int = 1) -> None:
        if amount:
            self.by_user[user_id][name] += amount

    def submitted(self, user_id: int) -> None:
        self.add(user_id, "generations")

    def terminal(self, user_id: int, status: GenerationStatus, reserved_bytes: int = 0) -> None:
        """A generation ended: count it, and release the result bytes it held."""
        self.add(user_id, _TERMINAL_FIELD[status])
        self.add(user_id, "reserved_bytes", -reserved_bytes)

    def reserved(self, user_id: int, amount: int) -> None:
        self.add(user_id, "reserved_bytes", amount)

    def stored(self, user_id: int, amount: int) -> None:
        """Result files written (positive) or deleted (negative)."""
        self.add(user_id, "result_bytes", amount)

    def poses(self, user_id: int, completed: int) -> None:
        self.add(user_id, "poses_completed", completed)


def rows(deltas: Deltas) -> list[dict[str, int]]:
    """The non-zero increments as rows, users in id order (one lock order: no deadlocks)."""
    return [
        {"user_id": user_id, **values}
        for user_id, values in sorted(deltas.by_user.items())
        if any(values.values())
    ]


def apply(conn: Connection, increments: list[dict[str, int]], now: dt.datetime) -> None:
    """Write increments from :func:`rows` (portable SQL, one row per user)."""
    if increments:
        conn.execute(_UPSERT, [{**r, "now": now} for r in increments])
