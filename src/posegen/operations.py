"""What operators look at: queue and recovery state, the worker fleet. Read-only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from posegen.db.engine import read_connection
from posegen.db.models import GenerationStatus, PoseGeneration, RecoveryRun
from posegen.db.types import utcnow
from posegen.worker import registry
from posegen.worker.registry import WorkerInfo

G = PoseGeneration


@dataclass(frozen=True)
class RecoveryRunView:
    id: int
    runner: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    requeued: int
    failed: int
    error: str | None


@dataclass(frozen=True)
class RecoveryStatus:
    queued: int
    processing: int
    #: Processing with an expired lease: the next recovery pass will requeue or fail them.
    stuck: int
    last_run: RecoveryRunView | None


def recovery_status(engine: Engine) -> RecoveryStatus:
    now = utcnow()
    with read_connection(engine) as conn, conn.begin():
        queued = conn.execute(
            select(func.count(G.id)).where(G.status == GenerationStatus.PENDING)
        ).scalar_one()
        processing = conn.execute(
            select(func.count(G.id)).where(G.status == GenerationStatus.PROCESSING)
        ).scalar_one()
        stuck = conn.execute(
            select(func.count(G.id)).where(
                G.status == GenerationStatus.PROCESSING, G.lease_expires_at < now
            )
        ).scalar_one()
        R = RecoveryRun
        row = conn.execute(
            select(R.id, R.runner, R.started_at, R.finished_at, R.requeued, R.failed, R.error)
            .order_by(R.id.desc())
            .limit(1)
        ).first()
        last = (
            None
            if row is None
            else RecoveryRunView(
                row.id,
                row.runner,
                row.started_at,
                row.finished_at,
                row.requeued,
                row.failed,
                row.error,
            )
        )
    return RecoveryStatus(int(queued), int(processing), int(stuck), last)


def workers(
    engine: Engine, stale_seconds: float, *, include_stopped: bool = False
) -> list[WorkerInfo]:
    """Known workers, latest started first; ``alive`` = not stopped and seen within
    ``stale_seconds``."""
    rows = registry.list_workers(engine, stale_seconds, include_stopped)
    # Two stable sorts: started_at descending, ties by id (the table holds a few rows).
    rows.sort(key=lambda w: w.id)
    rows.sort(key=lambda w: w.started_at, reverse=True)
    return rows
