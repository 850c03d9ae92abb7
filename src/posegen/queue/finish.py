"""Ending an attempt: finish (status from the committed pose counts), transient failure (retry
with backoff, or failed when attempts are exhausted) and permanent failure. Fenced like every
lease-holder write."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import Engine

from posegen.config import Settings
from posegen.db.engine import write_transaction
from posegen.db.models import GenerationStatus
from posegen.exceptions import LeaseLost
from posegen.metrics import prom
from posegen.queue import transitions
from posegen.queue.batch import write_batch
from posegen.queue.dialects import ops_for


def finish(engine: Engine, job_id: int, lease_token: int) -> GenerationStatus:
    """End a generation whose handler returned: completed, partial, failed or cancelled.

    The status follows from the committed pose rows, never from what the worker believes.
    Raises :class:`LeaseLost` when the lease is gone.
    """
    result = finish_many(engine, [(job_id, lease_token)])
    status = result.get(job_id)
    if status is None:
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")
    return status


def finish_many(engine: Engine, leases: Iterable[tuple[int, int]]) -> dict[int, GenerationStatus]:
    """Finish many generations in one transaction; ids whose lease was lost are absent."""
    return write_batch(engine, [], list(leases)).finished


def fail_transient(
    engine: Engine, settings: Settings, job_id: int, lease_token: int, kind: str, message: str
) -> GenerationStatus:
    """The whole attempt failed for a reason that may pass (backend unreachable).

    Back to ``pending`` after exponential backoff with jitter, or ``failed`` with the error
    kept once ``max_attempts`` attempts were made; ``cancelled`` if a cancel was requested.
    """
    ops = ops_for(engine)
    pending = transitions.Pending()
    with write_transaction(engine) as conn:
        row = transitions.fence(conn, ops, [(job_id, lease_token)]).get(job_id)
        if row is None:
            status = None
        elif row.cancel_requested:
            status = GenerationStatus.CANCELLED
            transitions.end(conn, [(row, status, kind, message)], pending)
        elif row.attempts >= row.max_attempts:
            status = GenerationStatus.FAILED
            detail = f"{message} (gave up after {row.attempts} attempts)"
            transitions.end(conn, [(row, status, kind, detail)], pending)
        else:
            status = GenerationStatus.PENDING
            delay = transitions.backoff_seconds(settings, row.attempts)
            transitions.requeue(conn, [(row, delay, kind, message)], pending)
        pending.write(conn, ops)
    if status is None:
        prom.LEASE_LOSSES.inc()
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")
    pending.count_metrics()
    return status


def fail_permanent(
    engine: Engine, job_id: int, lease_token: int, kind: str, message: str
) -> GenerationStatus:
    """The generation can never succeed (bad input, missing weights): ``failed`` at once."""
    ops = ops_for(engine)
    pending = transitions.Pending()
    with write_transaction(engine) as conn:
        row = transitions.fence(conn, ops, [(job_id, lease_token)]).get(job_id)
        if row is not None:
            transitions.end(conn, [(row, GenerationStatus.FAILED, kind, message)], pending)
            pending.write(conn, ops)
    if row is None:
        prom.LEASE_LOSSES.inc()
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")
    pending.count_metrics()
    return GenerationStatus.FAILED
