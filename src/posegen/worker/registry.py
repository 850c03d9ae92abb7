"""The ``workers`` table: one row per worker process (host, pid, started, last seen,
concurrency, in flight), so operators can see who is alive."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, func, insert, select, update

from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import Worker
from posegen.db.types import utcnow


def new_worker_id() -> str:
    """``host:pid:random`` — unique even when a pid is reused after a restart."""
    return f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def register(
    engine: Engine,
    worker_id: str,
    concurrency: int,
    liveness: str | None = None,
    *,
    backend: str | None = None,
    model: str | None = None,
) -> None:
    """Record a starting worker and what it serves (``backend``, ``model``). ``liveness``: the
    kind of lock the worker holds for its life (see :mod:`posegen.queue.liveness`); None when
    it holds none and only its leases tell."""
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(
            insert(Worker).values(
                id=worker_id,
                host=socket.gethostname()[:255],
                pid=os.getpid(),
                concurrency=concurrency,
                in_flight=0,
                started_at=now,
                last_seen_at=now,
                liveness=liveness,
                backend=backend,
                model=model,
            )
        )


def touch(engine: Engine, worker_id: str, in_flight: int) -> None:
    with write_transaction(engine) as conn:
        conn.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(last_seen_at=utcnow(), in_flight=in_flight)
        )


def stopped(engine: Engine, worker_id: str) -> None:
    now = utcnow()
    with write_transaction(engine) as conn:
        conn.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(last_seen_at=now, stopped_at=now, in_flight=0)
        )


def set_paused(engine: Engine, worker_id: str, reason: str | None) -> None:
    """Say that the worker stopped claiming and why (its backend is unavailable), or, with
    ``None``, that it claims again."""
    with write_transaction(engine) as conn:
        conn.execute(
            update(Worker)
            .where(Worker.id == worker_id)
            .values(
                paused_reason=None if reason is None else reason[:500],
                # Kept while the reason changes: "paused since" is the start of the outage.
                paused_at=None if reason is None else func.coalesce(Worker.paused_at, utcnow()),
            )
        )


@dataclass(frozen=True)
class WorkerInfo:
    id: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    #: Seen within ``worker_stale_seconds`` and not stopped.
    alive: bool
    #: Why it claims nothing (backend unavailable); None while it claims.
    paused_reason: str | None = None
    paused_at: dt.datetime | None = None

    @property
    def paused(self) -> bool:
        """Alive but not claiming: its circuit breaker is open."""
        return self.alive and self.paused_reason is not None

    backend: str | None = None
    model: str | None = None


def list_workers(
    engine: Engine, stale_seconds: float, include_stopped: bool = False
) -> list[WorkerInfo]:
    """Workers, most recently seen first."""
    cutoff = utcnow() - dt.timedelta(seconds=stale_seconds)
    stmt = select(Worker).order_by(Worker.last_seen_at.desc())
    if not include_stopped:
        stmt = stmt.where(Worker.stopped_at.is_(None))
    with read_connection(engine) as conn:
        rows = conn.execute(stmt).all()
    return [
        WorkerInfo(
            id=r.id,
            host=r.host,
            pid=r.pid,
            concurrency=r.concurrency,
            in_flight=r.in_flight,
            started_at=r.started_at,
            last_seen_at=r.last_seen_at,
            stopped_at=r.stopped_at,
            alive=r.stopped_at is None and r.last_seen_at >= cutoff,
            paused_reason=r.paused_reason,
            paused_at=r.paused_at,
            backend=r.backend,
            model=r.model,
        )
        for r in rows
    ]
