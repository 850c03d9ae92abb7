"""What operators look at: queue and recovery state, the worker fleet. Read-only."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, func, select

from posegen.db.engine import read_connection
from posegen.db.models import GenerationStatus, PoseGeneration, RecoveryRun, Worker
from posegen.db.types import utcnow

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


@dataclass(frozen=True)
class WorkerView:
    id: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    alive: bool


def workers(
    engine: Engine, stale_seconds: float, *, include_stopped: bool = False
) -> list[WorkerView]:
    """Known workers; ``alive`` = not stopped and seen within ``stale_seconds``."""
    now = utcnow()
    W = Worker
    stmt = select(
        W.id, W.host, W.pid, W.concurrency, W.in_flight, W.started_at, W.last_seen_at, W.stopped_at
    ).order_by(W.started_at.desc(), W.id)
    if not include_stopped:
        stmt = stmt.where(W.stopped_at.is_(None))
    with read_connection(engine) as conn:
        rows = conn.execute(stmt).all()
    return [
        WorkerView(
            w.id,
            w.host,
            w.pid,
            w.concurrency,
            w.in_flight,
            w.started_at,
            w.last_seen_at,
            w.stopped_at,
            w.stopped_at is None and (now - w.last_seen_at).total_seconds() <= stale_seconds,
        )
        for w in rows
    ]
