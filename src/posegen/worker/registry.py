"""The ``workers`` table: one row per worker process (host, pid, started, last seen,
concurrency, in flight), so operators can see who is alive."""

from __future__ import annotations

import datetime as dt
import os
import socket
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, insert, select, update

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
    backend: str | None = None,
    model: str | None = None,
) -> None:
    """Record a starting worker and what it serves (``backend``, ``model``)."""
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
            backend=r.backend,
            model=r.model,
        )
        for r in rows
    ]
