"""One transaction for a batch of lease-holder writes: pose checkpoints and finishes of many
generations. The worker's group-commit writer sends everything waiting through here, so N
concurrent jobs cost one commit (one WAL flush) instead of 2N."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import IntegrityError

from posegen.db.models import GenerationStatus
from posegen.exceptions import InvalidInput, LeaseLost
from posegen.metrics import prom
from posegen.queue import transitions, tx
from posegen.queue.dialects import ops_for
from posegen.queue.model import PoseResult
from posegen.queue.progress import PoseOutcome, PoseWrite, check_result, checkpoint


@dataclass(frozen=True)
class BatchResult:
    #: One per pose write, in order.
    poses: list[PoseOutcome]
    #: End state per finished generation; a lease that was lost is absent.
    finished: dict[int, GenerationStatus]


def write_batch(
    engine: Engine,
    poses: Sequence[PoseWrite],
    finishes: Sequence[tuple[int, int]],
    *,
    conn: Connection | None = None,
) -> BatchResult:
    """Checkpoint ``poses``, then finish the ``finishes`` leases, in one transaction.

    Every write is fenced: a lost lease drops only that job's writes. A pose and the finish of
    its own generation may share a batch (the pose lands first). ``conn``: a worker's own
    connection from :func:`posegen.queue.tx.writer_connection`.
    """
    for w in poses:
        check_result(w.result)
    ops = ops_for(engine)
    pending = transitions.Pending()
    leases = [(w.job_id, w.lease_token) for w in poses] + list(finishes)
    try:
        with tx.write_tx(conn if conn is not None else engine) as c:
            live = transitions.fence(c, ops, leases)
            ending = [j for j in dict.fromkeys(j for j, _ in finishes) if j in live]
            inserted = checkpoint(c, ops, live, poses, pending, frozenset(ending))
            ends = [(live[j], *transitions.final_status(live[j])) for j in ending]
            transitions.end(c, ends, pending)
            pending.write(c, ops)
    except IntegrityError as exc:
        # Only the pose-count CHECK can fire: a variation outside the generation's poses.
        raise InvalidInput(f"pose result does not fit its generation: {exc.orig}") from exc
    pending.count_metrics()
    lost = sum(1 for j, _ in leases if j not in live)
    if lost:
        prom.LEASE_LOSSES.inc(lost)
    finished = {row.id: status for row, status, _, _ in ends}
    outcomes = [
        PoseOutcome(lost=True)
        if w.job_id not in live
        else PoseOutcome(
            False,
            live[w.job_id].cancel_requested,
            (w.job_id, w.result.variation_key) in inserted,
            finished.get(w.job_id),
        )
        for w in poses
    ]
    return BatchResult(outcomes, finished)


def record_pose(engine: Engine, job_id: int, lease_token: int, result: PoseResult) -> None:
    """Checkpoint one pose under the lease. Raises :class:`LeaseLost` when the lease is gone."""
    (outcome,) = record_poses(engine, [PoseWrite(job_id, lease_token, result)])
    if outcome.lost:
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")


def record_poses(engine: Engine, writes: Sequence[PoseWrite]) -> list[PoseOutcome]:
    """Checkpoint many poses (of many generations) in one transaction.

    Writes whose lease is lost are dropped and reported; the rest commit. A variation already
    stored is a no-op. Counts, rollup and ``pose`` events move in the same transaction.
    """
    return write_batch(engine, writes, []).poses
