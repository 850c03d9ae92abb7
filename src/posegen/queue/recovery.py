"""Recovery: generations whose lease expired (worker died, or the hard deadline passed) go back
to ``pending`` with backoff, or end ``failed`` with the reason once attempts are exhausted.

One runner at a time across the fleet (the dialect's recovery lock); batches through the
partial index on ``lease_expires_at``; each row re-checked under its lock before it moves.
"""

from __future__ import annotations

import datetime as dt
import logging

from sqlalchemy import Engine, bindparam, insert, text

from posegen.config import Settings
from posegen.db.engine import write_transaction
from posegen.db.hot_queries import RECOVERY_SCAN
from posegen.db.models import GenerationStatus, RecoveryRun
from posegen.db.types import UTCDateTime, utcnow
from posegen.metrics import prom
from posegen.observe import tracing
from posegen.queue import transitions
from posegen.queue.dialects import ops_for
from posegen.queue.model import RecoveryOutcome

log = logging.getLogger(__name__)

#: A pass stops after this many batches so one runner never holds the lock for long.
MAX_BATCHES_PER_PASS = 50


@tracing.traced(
    "posegen.recovery",
    lambda o: {"requeued": o.requeued, "failed": o.failed, "cancelled": o.cancelled, "ran": o.ran},
)
def recover(engine: Engine, settings: Settings, runner: str) -> RecoveryOutcome:
    """Run one recovery pass; records a ``recovery_runs`` row when this runner got the lock."""
    started = utcnow()
    requeued = failed = cancelled = 0
    ran = False
    error: str | None = None
    try:
        for _ in range(MAX_BATCHES_PER_PASS):
            got, batch = _one_batch(engine, settings)
            if not got:
                break
            ran = True
            requeued += batch.requeued
            failed += batch.failed
            cancelled += batch.cancelled
            if batch.seen < settings.recovery_batch_size:
                break
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log.exception("recovery pass failed", extra={"runner": runner})
        raise
    finally:
        if ran or error:
            record_run(engine, runner, started, requeued, failed + cancelled, error)
    return RecoveryOutcome(requeued, failed, cancelled, ran)


class _Batch:
    def __init__(self) -> None:
        self.seen = self.requeued = self.failed = self.cancelled = 0


def _one_batch(engine: Engine, settings: Settings) -> tuple[bool, _Batch]:
    ops = ops_for(engine)
    batch = _Batch()
    pending = transitions.Pending()
    now = utcnow()
    scan = text(RECOVERY_SCAN.sql + ops.skip_locked).bindparams(
        bindparam("now", type_=UTCDateTime())
    )
    with write_transaction(engine) as conn:
        if not ops.try_recovery_lock(conn):
            return False, batch
        ids = [
            int(i)
            for i in conn.execute(
                scan, {"now": now, "limit": settings.recovery_batch_size}
            ).scalars()
        ]
        batch.seen = len(ids)
        rows = transitions.rows_by_id(conn, ops, ids)
        # The rows are locked now; re-check (and the UPDATEs re-check again in SQL) in case a
        # heartbeat or a finish landed between another runner's scan and ours.
        expired = [
            r
            for r in rows.values()
            if r.status == GenerationStatus.PROCESSING
            and r.lease_expires_at is not None
            and r.lease_expires_at < now
        ]
        ends: list[tuple[transitions.LiveRow, GenerationStatus, str | None, str | None]] = []
        backs: list[tuple[transitions.LiveRow, float, str | None, str | None]] = []
        for r in expired:
            past_deadline = r.deadline_at is not None and r.deadline_at <= now
            reason = "deadline-exceeded" if past_deadline else "lease-expired"
            message = (
                f"hard deadline passed (attempt {r.attempts})"
                if past_deadline
                else f"worker stopped heartbeating (attempt {r.attempts})"
            )
            if r.cancel_requested:
                ends.append((r, GenerationStatus.CANCELLED, None, None))
                batch.cancelled += 1
            elif r.attempts >= r.max_attempts:
                ends.append(
                    (
                        r,
                        GenerationStatus.FAILED,
                        reason,
                        f"{message}; gave up after {r.attempts} attempts",
                    )
                )
                batch.failed += 1
            else:
                backs.append(
                    (r, transitions.backoff_seconds(settings, r.attempts), reason, message)
                )
                batch.requeued += 1
        transitions.end(conn, ends, pending, expired_before=now)
        transitions.requeue(conn, backs, pending, expired_before=now)
        pending.write(conn, ops)
    pending.count_metrics()
    for label, n in (
        ("requeued", batch.requeued),
        ("failed", batch.failed),
        ("cancelled", batch.cancelled),
    ):
        if n:
            prom.RECOVERIES.labels(outcome=label).inc(n)
    return True, batch


def record_run(
    engine: Engine,
    runner: str,
    started: dt.datetime,
    requeued: int,
    failed: int,
    error: str | None,
) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            insert(RecoveryRun).values(
                runner=runner[:100],
                started_at=started,
                finished_at=utcnow(),
                requeued=requeued,
                failed=failed,
                error=error,
            )
        )
