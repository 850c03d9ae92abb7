"""Refunds, in the transaction that writes the terminal state they pay back.

- A failed pose is refunded when its row is written (the checkpoint that records it), keyed by
  the pose: ``refund:pose:<generation>:<variation key>``, what one pose cost
  (``charged // total``: every price is per pose, see :mod:`posegen.credits.pricing`).
- When a generation ends partial, failed or cancelled, the poses that never got a row (the
  cancelled rest, what recovery gave up on) are refunded, keyed by the generation:
  ``refund:generation:<id>``, ``charged - per pose x completed - already refunded``.

The keys make a second attempt (a retried transaction, recovery racing a finish) write nothing;
the caller's fence (row lock, lease token, status) already makes each run once.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, select, update

from posegen.credits.ledger import post
from posegen.credits.pricing import per_pose
from posegen.db.models import CreditKind, GenerationStatus, PoseGeneration, UserGenerationStats
from posegen.db.types import utcnow

G = PoseGeneration

_ENDED_SHORT = (GenerationStatus.PARTIAL, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


def refund_amount(charged: int, total: int, completed: int, refunded: int = 0) -> int:
    """Credits back for the poses that did not complete, less what was refunded already."""
    if charged <= 0 or total <= 0 or completed >= total:
        return 0
    return max(0, charged - per_pose(charged, total) * completed - refunded)


def lock_rollups(conn: Connection, user_ids: set[int]) -> None:
    if user_ids and conn.dialect.name == "postgresql":
        # Lock order: a submit locks the user's rollup row, then the users row (its charge).
        # Take the rollup rows first here too (this transaction updates them later anyway),
        # or a refund and a submit of the same user could deadlock.
        s = UserGenerationStats
        conn.execute(
            select(s.user_id)
            .where(s.user_id.in_(sorted(user_ids)))
            .order_by(s.user_id)
            .with_for_update()
        )


def refund_poses(conn: Connection, failed: Sequence[tuple[int, int, str, int | None, int]]) -> int:
    """Refund failed poses just written in this transaction: (generation id, user id,
    variation key, library pose id, what one pose cost) each. Returns credits refunded."""
    items = [f for f in failed if f[4] > 0]
    if not items:
        return 0
    lock_rollups(conn, {user_id for _, user_id, _, _, _ in items})
    now = utcnow()
    total = 0
    for gen_id, user_id, key, pose_id, amount in sorted(items, key=lambda f: (f[0], f[2])):
        if post(
            conn,
            user_id,
            amount,
            CreditKind.REFUND,
            f"refund:pose:{gen_id}:{key}",
            generation_id=gen_id,
            pose_id=pose_id,
            now=now,
        ):
            conn.execute(
                update(G).where(G.id == gen_id).values(credit_refunded=G.credit_refunded + amount)
            )
            total += amount
    return total


def refund_ended(conn: Connection, generation_ids: Sequence[int]) -> int:
    """Refund generations that just ended partial, failed or cancelled (their rows are
    locked by the caller and already carry the final counts). Returns credits refunded."""
    rows = conn.execute(
        select(
            G.id,
            G.user_id,
            G.credit_charged,
            G.total_expected_poses,
            G.poses_completed,
            G.credit_refunded,
        )
        .where(
            G.id.in_(list(generation_ids)),
            G.status.in_(_ENDED_SHORT),
            G.credit_charged > 0,
        )
        .order_by(G.id)
    ).all()
    due = [(r, refund_amount(int(r[2]), int(r[3]), int(r[4]), int(r[5] or 0))) for r in rows]
    due = [(r, amount) for r, amount in due if amount > 0]
    lock_rollups(conn, {int(r.user_id) for r, _ in due})
    now = utcnow()
    total = 0
    for r, amount in due:
        key = f"refund:generation:{r.id}"
        if post(
            conn, int(r.user_id), amount, CreditKind.REFUND, key, generation_id=int(r.id), now=now
        ):
            conn.execute(
                update(G).where(G.id == r.id).values(credit_refunded=G.credit_refunded + amount)
            )
            total += amount
    return total
