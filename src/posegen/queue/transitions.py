"""The state changes every lease-holder operation shares: fence the rows, end a generation,
send one back to ``pending``. Each caller supplies the transaction; rollup, events and NOTIFY
are collected in a :class:`Pending` and written at the end of that same transaction."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, bindparam, or_, select, update

from posegen import credits, failures
from posegen.config import Settings
from posegen.db.models import GenerationStatus, PoseGeneration, PoseStatus
from posegen.db.types import utcnow
from posegen.metrics import prom
from posegen.queue import events, rollup
from posegen.queue.bulk_core import LIVE_COLUMNS
from posegen.queue.dialects import DialectOps, ops_for

G = PoseGeneration


@dataclass(slots=True)
class LiveRow:
    """A generation row as its lease holder sees it, locked for this transaction (its counts
    are kept current as the transaction adds poses)."""

    id: int
    lease_token: int
    user_id: int
    status: GenerationStatus
    cancel_requested: bool
    attempts: int
    max_attempts: int
    poses_completed: int
    poses_failed: int
    total: int
    deadline_at: dt.datetime | None
    lease_expires_at: dt.datetime | None
    #: Result bytes held against the owner's quota until the generation ends.
    reserved_bytes: int = 0
    #: Credits charged at submit; what its unfinished poses cost is refunded when it ends.
    credit_charged: int = 0

    @classmethod
    def from_row(cls, r: Any) -> LiveRow:
        return cls(
            id=int(r.id),
            lease_token=int(r.lease_token),
            user_id=int(r.user_id),
            status=GenerationStatus(r.status),
            cancel_requested=bool(r.cancel_requested),
            attempts=int(r.attempts),
            max_attempts=int(r.max_attempts),
            poses_completed=int(r.poses_completed),
            poses_failed=int(r.poses_failed),
            total=int(r.total_expected_poses),
            deadline_at=r.deadline_at,
            lease_expires_at=r.lease_expires_at,
            reserved_bytes=int(r.reserved_bytes or 0),
            credit_charged=int(r.credit_charged or 0),
        )


def fence(
    conn: Connection, ops: DialectOps, leases: Iterable[tuple[int, int]]
) -> dict[int, LiveRow]:
    """Lock and return the rows still ``processing`` under the given lease tokens.

    A job missing from the result has lost its lease (recovered, released or finished by
    someone else); its caller must write nothing about it. Rows are locked in id order, one
    order for every transaction, so concurrent batches never deadlock.
    """
    wanted = set(leases)
    if not wanted:
        return {}
    rows = ops.fence(conn, [job_id for job_id, _ in wanted])
    return {
        row.id: row for row in map(LiveRow.from_row, rows) if (row.id, row.lease_token) in wanted
    }


def rows_by_id(conn: Connection, ops: DialectOps, ids: Sequence[int]) -> dict[int, LiveRow]:
    """Lock and return generation rows by id, whatever their state (admin paths)."""
    stmt = select(*LIVE_COLUMNS).where(G.id.in_(list(ids))).order_by(G.id)
    if ops.lock_rows:
        stmt = stmt.with_for_update()
    return {row.id: row for row in map(LiveRow.from_row, conn.execute(stmt))}


@dataclass
class Pending:
    """Side effects a transaction owes: rollup increments, events, a NOTIFY."""

    deltas: rollup.Deltas = field(default_factory=rollup.Deltas)
    events: list[events.Event] = field(default_factory=list)
    notify: bool = False
    completions: list[GenerationStatus] = field(default_factory=list)
    poses: list[PoseStatus] = field(default_factory=list)
    retries: int = 0
    #: Credits refunded by this transaction (counted after commit).
    refunded: int = 0

    def write(self, conn: Connection, ops: DialectOps) -> None:
        """Rollup increments, events and the NOTIFY, in the caller's transaction."""
        for ev in self.events:
            events.check(ev)
        ops.flush(
            conn,
            rollup.rows(self.deltas),
            [(ev.generation_id, ev.kind, ev.data) for ev in self.events],
            self.notify,
            utcnow(),
        )

    def count_metrics(self) -> None:
        """Call after commit: a rolled-back transaction must not move the counters."""
        for status, n in Counter(self.completions).items():
            prom.COMPLETIONS.labels(status=status.value).inc(n)
        for pose_status, n in Counter(self.poses).items():
            prom.POSES.labels(status=pose_status.value).inc(n)
        if self.retries:
            prom.RETRIES.inc(self.retries)
        if self.refunded:
            prom.CREDITS.labels(kind="refunded").inc(self.refunded)


_REFUNDABLE = (GenerationStatus.PARTIAL, GenerationStatus.FAILED, GenerationStatus.CANCELLED)

#: For writes by the lease holder, "expired before" is the end of time: no extra condition.
NEVER = dt.datetime(9999, 1, 1, tzinfo=dt.UTC)

# Recovery passes its scan time so the UPDATE itself re-checks that the lease is still expired.
_STILL_EXPIRED = or_(G.lease_expires_at.is_(None), G.lease_expires_at < bindparam("b_before"))


def end(
    conn: Connection,
    rows: Sequence[tuple[LiveRow, GenerationStatus, str | None, str | None]],
    pending: Pending,
    *,
    expired_before: dt.datetime = NEVER,
) -> None:
    """Move rows to terminal states: (row, status, error kind, error message) each.

    One batch statement for all rows, each fenced on its own token and current status (and,
    for recovery, on its lease still being expired).
    """
    if not rows:
        return
    ops_for(conn).end_rows(
        conn,
        [
            (
                row.id,
                row.lease_token,
                row.status.value,
                status.value,
                kind,
                failures.public_message(kind),
                row.poses_completed,
                row.poses_failed,
                failures.detail(message),
            )
            for row, status, kind, message in rows
        ],
        utcnow(),
        expired_before,
    )
    # Refunds in this same transaction, keyed by generation: exactly once however it ended.
    charged = [row.id for row, status, _, _ in rows if row.credit_charged and status in _REFUNDABLE]
    if charged:
        pending.refunded += credits.refund_ended(conn, charged)
    # A quota plan's generation (charged nothing): its unfinished poses back to their day.
    free = [
        row.id for row, status, _, _ in rows if not row.credit_charged and status in _REFUNDABLE
    ]
    if free:
        credits.quota_ledger.give_back_ended(conn, free)
    for row, status, kind, _message in rows:
        pending.deltas.terminal(row.user_id, status, row.reserved_bytes)
        pending.completions.append(status)
        pending.events.append(
            events.Event(
                row.id,
                status.value,
                events.progress(
                    status.value,
                    row.poses_completed,
                    row.poses_failed,
                    row.total,
                    errorKind=kind,
                    errorMessage=failures.public_message(kind),
                ),
            )
        )


_REQUEUE = (
    update(G)
    .where(
        G.id == bindparam("b_id"),
        G.lease_token == bindparam("b_token"),
        G.status == GenerationStatus.PROCESSING,
        _STILL_EXPIRED,
    )
    .values(
        status=GenerationStatus.PENDING,
        run_after=bindparam("b_run_after"),
        attempts=G.attempts - bindparam("b_uncount"),
        leased_by=None,
        heartbeat_at=None,
        lease_expires_at=None,
        deadline_at=None,
        error_kind=bindparam("b_kind"),
        error_message=bindparam("b_message"),
        error_detail=bindparam("b_detail"),
    )
)


def requeue(
    conn: Connection,
    rows: Sequence[tuple[LiveRow, float, str | None, str | None]],
    pending: Pending,
    *,
    count_attempt: bool = True,
    expired_before: dt.datetime = NEVER,
) -> None:
    """Send ``processing`` rows back to ``pending`` after (row, delay s, error kind, message).

    ``count_attempt=False`` (graceful release) gives back the attempt the claim took.
    """
    if not rows:
        return
    now = utcnow()
    conn.execute(
        _REQUEUE,
        [
            {
                "b_id": row.id,
                "b_token": row.lease_token,
                "b_run_after": now + dt.timedelta(seconds=delay),
                "b_uncount": 0 if count_attempt else 1,
                "b_kind": kind,
                "b_message": failures.public_message(kind),
                "b_detail": failures.detail(message),
                "b_before": expired_before,
            }
            for row, delay, kind, message in rows
        ],
    )
    for row, delay, kind, _message in rows:
        attempts = row.attempts if count_attempt else row.attempts - 1
        run_after = now + dt.timedelta(seconds=delay)
        kind_name = "retrying" if count_attempt else "queued"
        pending.events.append(
            events.Event(
                row.id,
                kind_name,
                events.progress(
                    "pending",
                    row.poses_completed,
                    row.poses_failed,
                    row.total,
                    attempt=attempts,
                    runAfter=run_after.isoformat(),
                    errorKind=kind,
                    errorMessage=failures.public_message(kind),
                    reason=None if count_attempt else "released",
                ),
            )
        )
        if count_attempt:
            pending.retries += 1
        if delay <= 0:
            pending.notify = True


def backoff_seconds(settings: Settings, attempts: int) -> float:
    """Exponential backoff with +-20 % jitter: base * 2^(attempts-1), capped at the maximum."""
    base = settings.retry_backoff_base_seconds * float(2 ** max(attempts - 1, 0))
    capped = min(settings.retry_backoff_max_seconds, base)
    return min(settings.retry_backoff_max_seconds, capped * random.uniform(0.8, 1.2))


def final_status(row: LiveRow) -> tuple[GenerationStatus, str | None, str | None]:
    """Where a generation ends when its handler is done, from its committed pose counts."""
    done = row.poses_completed + row.poses_failed
    if done < row.total and row.cancel_requested:
        return GenerationStatus.CANCELLED, None, None
    missing = row.total - done
    kind = message = None
    if missing:
        kind, message = "incomplete", f"the handler stopped with {missing} of {row.total} poses"
    elif row.poses_failed:
        kind, message = "pose-failures", f"{row.poses_failed} of {row.total} poses failed"
    if row.poses_completed == row.total:
        return GenerationStatus.COMPLETED, None, None
    if row.poses_completed == 0:
        return GenerationStatus.FAILED, kind, message
    return GenerationStatus.PARTIAL, kind, message
