"""Keeping and giving back a lease: heartbeat and release. Every write is fenced on the row id,
``status = 'processing'`` and the lease token; zero rows means the lease is lost."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Engine, case, tuple_, update

from posegen.config import Settings
from posegen.db.engine import write_transaction
from posegen.db.models import GenerationStatus, PoseGeneration
from posegen.db.types import utcnow
from posegen.exceptions import LeaseLost
from posegen.metrics import prom
from posegen.queue import transitions
from posegen.queue.dialects import ops_for
from posegen.queue.model import HeartbeatResult

G = PoseGeneration


def heartbeat(engine: Engine, settings: Settings, job_id: int, lease_token: int) -> bool:
    """Extend one lease; returns whether a cancel was requested. Raises :class:`LeaseLost`."""
    result = heartbeat_many(engine, settings, [(job_id, lease_token)])
    if job_id in result.lost:
        prom.LEASE_LOSSES.inc()
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")
    return job_id in result.cancel_requested


def heartbeat_many(
    engine: Engine, settings: Settings, leases: Iterable[tuple[int, int]]
) -> HeartbeatResult:
    """Extend many leases in one statement (a worker heartbeats all its jobs at once).

    The new expiry is ``min(now + lease, deadline_at)``: a handler that hangs while its worker
    keeps heartbeating still loses the generation at the hard deadline.
    """
    pairs = sorted(set(leases))
    if not pairs:
        return HeartbeatResult(frozenset(), frozenset())
    now = utcnow()
    until = now + dt.timedelta(seconds=settings.lease_seconds)
    stmt = (
        update(G)
        .where(tuple_(G.id, G.lease_token).in_(pairs), G.status == GenerationStatus.PROCESSING)
        .values(
            heartbeat_at=now,
            lease_expires_at=case((G.deadline_at < until, G.deadline_at), else_=until),
        )
        .returning(G.id, G.cancel_requested)
    )
    with write_transaction(engine) as conn:
        alive = {int(i): bool(c) for i, c in conn.execute(stmt)}
    # The caller counts LEASE_LOSSES: only it knows whether a job simply ended meanwhile.
    lost = frozenset(i for i, _ in pairs if i not in alive)
    return HeartbeatResult(lost, frozenset(i for i, c in alive.items() if c))


def release(
    engine: Engine,
    job_id: int,
    lease_token: int,
    *,
    kind: str | None = None,
    message: str | None = None,
) -> None:
    """Give a generation back to ``pending`` without counting the attempt (graceful shutdown,
    or a backend outage: ``kind``/``message`` then say why it waits).

    A generation whose cancel was requested ends ``cancelled`` instead. Raises
    :class:`LeaseLost` when the lease is already gone.
    """
    lost = release_many(engine, [(job_id, lease_token)], kind=kind, message=message)
    if lost:
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")


def release_many(
    engine: Engine,
    leases: Iterable[tuple[int, int]],
    *,
    kind: str | None = None,
    message: str | None = None,
) -> frozenset[int]:
    """Release many leases in one transaction; returns the ids whose lease was already lost."""
    pairs = list(leases)
    ops = ops_for(engine)
    pending = transitions.Pending()
    with write_transaction(engine) as conn:
        live = transitions.fence(conn, ops, pairs)
        cancelled = [r for r in live.values() if r.cancel_requested]
        transitions.end(
            conn, [(r, GenerationStatus.CANCELLED, None, None) for r in cancelled], pending
        )
        back = [r for r in live.values() if not r.cancel_requested]
        transitions.requeue(
            conn, [(r, 0.0, kind, message) for r in back], pending, count_attempt=False
        )
        pending.write(conn, ops)
    pending.count_metrics()
    lost = frozenset(i for i, _ in pairs if i not in live)
    if lost:
        prom.LEASE_LOSSES.inc(len(lost))
    return lost
