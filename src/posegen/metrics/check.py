"""``posegen metrics check [--fix]``: recount the per-user rollup from the base tables.

The queue keeps ``user_generation_stats`` in the same transaction as each state change, so the
rollup and ``pose_generations`` can only disagree after a bug, a manual edit, or rows deleted by
hand. The check reads both in ONE snapshot (so a submit committing meanwhile is seen in both or in
neither) and reports every user whose counters differ. The repair takes a lock that queue writers
of the rollup wait for, recounts after taking it, and writes the recount: a transaction that
changed base tables but has not reached its rollup update yet is not in the recount and adds its
own delta after the repair commits, so nothing is counted twice or lost.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, delete, insert, select, text, update

from posegen.db.engine import database_errors, write_transaction
from posegen.db.models import UserGenerationStats
from posegen.db.types import utcnow

_RECOUNT = text(
    "SELECT user_id, COUNT(*) AS generations, "
    "SUM(CASE WHEN status = 'completed' THEN 1 ELSE 0 END) AS completed, "
    "SUM(CASE WHEN status = 'partial' THEN 1 ELSE 0 END) AS partial, "
    "SUM(CASE WHEN status = 'failed' THEN 1 ELSE 0 END) AS failed, "
    "SUM(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END) AS cancelled, "
    "COALESCE(SUM(poses_completed), 0) AS poses_completed "
    "FROM pose_generations GROUP BY user_id"
)
_ROLLUP = text(
    "SELECT user_id, generations, completed, partial, failed, cancelled, poses_completed "
    "FROM user_generation_stats"
)

# The two places where the engines differ, kept side by side.
#: Isolation that gives both reads of a check one snapshot. SQLite's read transaction already is
#: one (WAL), and SERIALIZABLE is the only level its driver offers besides READ UNCOMMITTED.
_SNAPSHOT_LEVEL = {"postgresql": "REPEATABLE READ", "sqlite": "SERIALIZABLE"}
#: Lock taken before the repair recounts. SHARE ROW EXCLUSIVE conflicts with the ROW EXCLUSIVE
#: lock every INSERT/UPDATE of the rollup takes, and with itself, but not with readers. SQLite
#: needs nothing more: ``write_transaction`` begins IMMEDIATE, which already excludes writers.
_REPAIR_LOCK = {
    "postgresql": "LOCK TABLE user_generation_stats IN SHARE ROW EXCLUSIVE MODE",
    "sqlite": None,
}


@dataclass(frozen=True)
class Counts:
    """One user's counters, as the rollup stores them."""

    generations: int = 0
    completed: int = 0
    partial: int = 0
    failed: int = 0
    cancelled: int = 0
    poses_completed: int = 0

    @property
    def is_zero(self) -> bool:
        return self == ZERO

    def as_dict(self) -> dict[str, int]:
        return {
            "generations": self.generations,
            "completed": self.completed,
            "partial": self.partial,
            "failed": self.failed,
            "cancelled": self.cancelled,
            "posesCompleted": self.poses_completed,
        }


ZERO = Counts()


@dataclass(frozen=True)
class Drift:
    """A user whose rollup row (``actual``; None = no row) differs from the recount."""

    user_id: int
    expected: Counts
    actual: Counts | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "userId": self.user_id,
            "expected": self.expected.as_dict(),
            "actual": None if self.actual is None else self.actual.as_dict(),
        }


@dataclass
class CheckReport:
    """What a check found, and whether it was repaired."""

    users_checked: int = 0
    drift: list[Drift] = field(default_factory=list)
    fixed: bool = False

    @property
    def ok(self) -> bool:
        """True when the rollup agreed with the base tables (before any repair)."""
        return not self.drift

    def as_dict(self, max_rows: int = 100) -> dict[str, Any]:
        return {
            "usersChecked": self.users_checked,
            "drifted": len(self.drift),
            "fixed": self.fixed,
            "drift": [d.as_dict() for d in self.drift[:max_rows]],
        }


def check(engine: Engine, *, fix: bool = False) -> CheckReport:
    """Compare the rollup with a recount from ``pose_generations``; with ``fix``, repair it."""
    if fix:
        return _repair(engine)
    level = _SNAPSHOT_LEVEL[engine.dialect.name]
    with database_errors(), engine.connect() as raw:
        conn = raw.execution_options(isolation_level=level)
        with conn.begin():
            return _compare(conn)


def _repair(engine: Engine) -> CheckReport:
    with write_transaction(engine) as conn:
        lock = _REPAIR_LOCK[engine.dialect.name]
        if lock is not None:
            conn.execute(text(lock))
        report = _compare(conn)
        _apply(conn, report.drift)
        report.fixed = bool(report.drift)
    return report


def _compare(conn: Connection) -> CheckReport:
    expected = _read(conn.execute(_RECOUNT).all())
    actual = _read(conn.execute(_ROLLUP).all())
    report = CheckReport(users_checked=len(expected.keys() | actual.keys()))
    for user_id in sorted(expected.keys() | actual.keys()):
        want = expected.get(user_id, ZERO)
        have = actual.get(user_id)
        # A row of zeros for a user without generations is harmless; a missing one is the same.
        if have != want and not (have is None and want.is_zero):
            report.drift.append(Drift(user_id, want, have))
    return report


def _read(rows: Iterable[Any]) -> Mapping[int, Counts]:
    return {
        int(r.user_id): Counts(
            int(r.generations),
            int(r.completed or 0),
            int(r.partial or 0),
            int(r.failed or 0),
            int(r.cancelled or 0),
            int(r.poses_completed or 0),
        )
        for r in rows
    }


def _apply(conn: Connection, drift: list[Drift]) -> None:
    now = utcnow()
    table = UserGenerationStats
    gone = [{"uid": d.user_id} for d in drift if d.expected.is_zero]
    new = [
        {"user_id": d.user_id, **_columns(d.expected), "updated_at": now}
        for d in drift
        if d.actual is None and not d.expected.is_zero
    ]
    # Bind names must differ from column names in an executemany UPDATE ... SET col = :v_col.
    changed = [
        {"uid": d.user_id, **{f"v_{k}": v for k, v in _columns(d.expected).items()}}
        for d in drift
        if d.actual is not None and not d.expected.is_zero
    ]
    if gone:
        conn.execute(delete(table).where(table.user_id == bindparam("uid")), gone)
    if new:
        conn.execute(insert(table), new)
    if changed:
        values: dict[str, Any] = {k: bindparam(f"v_{k}") for k in _columns(ZERO)}
        values["updated_at"] = now
        conn.execute(update(table).where(table.user_id == bindparam("uid")).values(values), changed)


def _columns(c: Counts) -> dict[str, int]:
    return {
        "generations": c.generations,
        "completed": c.completed,
        "partial": c.partial,
        "failed": c.failed,
        "cancelled": c.cancelled,
        "poses_completed": c.poses_completed,
    }


def fetch_rollup(engine: Engine, user_id: int) -> Counts | None:
    """One user's rollup row (None when there is none); for tests and the CLI."""
    t = UserGenerationStats
    cols = (t.user_id, t.generations, t.completed, t.partial, t.failed, t.cancelled)
    with database_errors(), engine.connect() as conn:
        row = conn.execute(select(*cols, t.poses_completed).where(t.user_id == user_id)).first()
    return None if row is None else _read([row])[row.user_id]
