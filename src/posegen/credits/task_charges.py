"""A follow-up task's money (a background change of one result): charged when it is queued,
refunded exactly once if it fails, both inside the queue's transaction that makes the change.

Keys carry the task and its round (``charges``: the times it was queued for money), so a task
that failed, was refunded and is asked for again is charged again, and a second write of the
same change (a retried transaction, recovery racing a worker's own failure) writes nothing.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Connection

from posegen.credits.ledger import post
from posegen.credits.refunds import lock_rollups
from posegen.db.models import CreditKind


def charge_task(
    conn: Connection,
    user_id: int,
    generation_id: int,
    task_id: int,
    round_: int,
    amount: int,
    now: dt.datetime | None = None,
) -> bool:
    """Charge ``amount`` for a task just queued (InsufficientCredits: the caller rolls back)."""
    if amount <= 0:
        return False
    lock_rollups(conn, {user_id})
    return post(
        conn,
        user_id,
        -amount,
        CreditKind.USAGE,
        f"usage:task:{task_id}:{round_}",
        generation_id=generation_id,
        reason="background change",
        now=now,
    )


def refund_task(
    conn: Connection,
    user_id: int,
    generation_id: int,
    task_id: int,
    round_: int,
    amount: int,
) -> int:
    """Pay back a task that ended failed; returns what was refunded (0 when already done).

    Not added to the generation's ``credit_refunded``: that column is what its poses got back,
    which the generation's own end-of-run refund subtracts."""
    if amount <= 0:
        return 0
    lock_rollups(conn, {user_id})
    done = post(
        conn,
        user_id,
        amount,
        CreditKind.REFUND,
        f"refund:task:{task_id}:{round_}",
        generation_id=generation_id,
        reason="background change failed",
    )
    return amount if done else 0
