"""Cancel: a pending generation ends at once; a processing one is flagged and its worker stops
between poses (it learns at its next heartbeat or pose write) and ends it ``cancelled``."""

from __future__ import annotations

from sqlalchemy import Engine, update

from posegen.db.engine import write_transaction
from posegen.db.models import GenerationStatus, PoseGeneration
from posegen.exceptions import Conflict, NotFound
from posegen.queue import transitions
from posegen.queue.dialects import ops_for

G = PoseGeneration


def cancel(engine: Engine, generation_id: int, user_id: int | None) -> GenerationStatus:
    """Cancel a generation; returns its status now (``cancelled`` or ``processing``).

    ``user_id`` None means an admin; otherwise another user's generation is :class:`NotFound`
    (its existence is not revealed). Cancelling a cancelled generation returns ``cancelled``;
    one that already finished otherwise is a :class:`Conflict` (kind ``not-cancellable``).
    """
    ops = ops_for(engine)
    pending = transitions.Pending()
    with write_transaction(engine) as conn:
        row = transitions.rows_by_id(conn, ops, [generation_id]).get(generation_id)
        owner_ok = row is not None and (user_id is None or row.user_id == user_id)
        if row is None or not owner_ok:
            raise NotFound(f"generation {generation_id} not found")
        if row.status == GenerationStatus.PENDING:
            transitions.end(conn, [(row, GenerationStatus.CANCELLED, None, None)], pending)
            pending.write(conn, ops)
            status = GenerationStatus.CANCELLED
        elif row.status == GenerationStatus.PROCESSING:
            conn.execute(
                update(G)
                .where(G.id == row.id, G.status == GenerationStatus.PROCESSING)
                .values(cancel_requested=True)
            )
            status = GenerationStatus.PROCESSING
        elif row.status == GenerationStatus.CANCELLED:
            status = GenerationStatus.CANCELLED
        else:
            raise Conflict(
                f"generation {generation_id} already ended {row.status.value}",
                kind="not-cancellable",
            )
    pending.count_metrics()
    return status
