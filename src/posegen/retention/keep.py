"""The owner's ``kept`` flag: a kept generation outlives the results retention."""

from __future__ import annotations

from sqlalchemy import Engine, update

from posegen.db.engine import write_transaction
from posegen.db.models import PoseGeneration
from posegen.exceptions import NotFound


def set_kept(engine: Engine, generation_id: int, user_id: int, kept: bool) -> None:
    """Keep (or stop keeping) one of the user's generations; NotFound for anyone else's.

    Not job state: the queue never reads it. The prune re-reads it under the row's lock before
    deleting, so a generation kept while a prune runs stays."""
    g = PoseGeneration
    with write_transaction(engine) as conn:
        changed = conn.execute(
            update(g).where(g.id == generation_id, g.user_id == user_id).values(kept=kept)
        ).rowcount
    if not changed:
        # Someone else's generation and no generation read the same: ids cannot be probed.
        raise NotFound(f"generation {generation_id} not found")
