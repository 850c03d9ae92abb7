"""Refunds when a generation ends short of complete, in the transaction that ends it.

The amount is what its unfinished poses cost: ``charged * (total - completed) / total`` (the
charge is ``price * total``, so this is exact). The key ``refund:generation:<id>`` makes a
second attempt (a retried transaction, recovery racing a finish) write nothing; the caller's
row lock on the generation and its status change already make it run once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from posegen.credits.ledger import post
from posegen.db.models import CreditKind, GenerationStatus, PoseGeneration, UserGenerationStats
from posegen.db.types import utcnow

G = PoseGeneration

_ENDED_SHORT = (GenerationStatus.PARTIAL, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


def refund_amount(charged: int, total: int, completed: int) -> int:
    """Credits back for the poses that did not complete."""
    if charged <= 0 or total <= 0 or completed >= total:
        return 0
    return charged * (total - completed) // total


def refund_ended(conn: Connection, generation_ids: Sequence[int]) -> int:
    """Refund generations that just ended partial, failed or cancelled (their rows are
    locked by the caller and already carry the final counts). Returns credits refunded."""
    rows = conn.execute(
        select(G.id, G.user_id, G.credit_charged, G.total_expected_poses, G.poses_completed)
        .where(
            G.id.in_(list(generation_ids)),
            G.status.in_(_ENDED_SHORT),
            G.credit_charged > 0,
            G.credit_refunded == 0,
        )
        .order_by(G.id)
    ).all()
    if rows and conn.dialect.name == "postgresql":
        # Lock order: a submit locks the user's rollup row, then the users row (its charge).
        # Take the rollup rows first here too (this transaction updates them later anyway),
        # or a refund and a submit of the same user could deadlock.
        s = UserGenerationStats
        conn.execute(
            select(s.user_id)
            .where(s.user_id.in_(sorted({int(r.user_id) for r in rows})))
            .order_by(s.user_id)
            .with_for_update()
        )
    now = utcnow()
    total = 0
    for gen_id, user_id, charged, expected, completed in rows:
        amount = refund_amount(int(charged), int(expected), int(completed))
        key = f"refund:generation:{gen_id}"
        if amount and post(
            conn, int(user_id), amount, CreditKind.REFUND, key, generation_id=int(gen_id), now=now
        ):
            conn.execute(update(G).where(G.id == gen_id).values(credit_refunded=amount))
            total += amount
    return total
