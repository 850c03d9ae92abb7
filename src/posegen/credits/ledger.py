"""Ledger rows and the balance column, written together in the caller's transaction.

Every change of a balance is one append-only ``credit_ledger`` row plus the same amount on
``users.credit_balance``, in one transaction. The row's idempotency key is unique: writing the
same change twice (a retried refund, a replayed webhook) inserts nothing and moves nothing.
The CHECK on the balance refuses an overdraft in the database itself.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Connection, Table, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from posegen.credits import hourly
from posegen.db.models import CreditKind, CreditLedger, User
from posegen.db.types import utcnow
from posegen.exceptions import InsufficientCredits

#: The CHECK that keeps balances >= 0 (named in the migration and by the naming convention).
BALANCE_CHECK = "ck_users_credit_balance"


def post(
    conn: Connection,
    user_id: int,
    amount: int,
    kind: CreditKind,
    key: str,
    *,
    generation_id: int | None = None,
    pose_id: int | None = None,
    payment_ref: str | None = None,
    actor_id: int | None = None,
    reason: str | None = None,
    now: dt.datetime | None = None,
) -> bool:
    """Append one row and move the balance by ``amount``; False when ``key`` was already used
    (nothing written). Raises :class:`InsufficientCredits` if the balance would go negative
    (the caller's transaction must then roll back)."""
    if amount == 0:
        return False
    values: dict[str, Any] = {
        "user_id": user_id,
        "amount": amount,
        "kind": kind,
        "generation_id": generation_id,
        "pose_id": pose_id,
        "payment_ref": payment_ref,
        "idempotency_key": key,
        "actor_id": actor_id,
        "reason": reason,
        "created_at": now or utcnow(),
    }
    table = cast(Table, CreditLedger.__table__)
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    inserted = conn.execute(
        dialect_insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(CreditLedger.id)
    ).first()
    if inserted is None:
        return False
    try:
        with conn.begin_nested():
            conn.execute(
                update(User)
                .where(User.id == user_id)
                .values(credit_balance=User.credit_balance + amount)
            )
    except IntegrityError as exc:
        if not is_overdraft(exc):
            raise
        raise InsufficientCredits(
            f"this needs {-amount} credits; the balance is {balance_of(conn, user_id)}",
            required=-amount,
            balance=balance_of(conn, user_id),
        ) from exc
    if kind is CreditKind.USAGE:
        hourly.add(conn, user_id, values["created_at"], charged=-amount)
    elif kind is CreditKind.REFUND:
        hourly.add(conn, user_id, values["created_at"], refunded=amount)
    return True


def charge_usage(
    conn: Connection, user_id: int, cost: int, generation_id: int, now: dt.datetime
) -> bool:
    """Charge a new generation (SQLite's submit; PostgreSQL does this inside its submit
    statement): False, writing nothing, when the balance cannot cover ``cost``. Two plain
    statements: the key is new (the generation was just inserted), so no conflict handling."""
    moved = conn.execute(
        update(User)
        .where(User.id == user_id, User.credit_balance >= cost)
        .values(credit_balance=User.credit_balance - cost)
    )
    if moved.rowcount != 1:
        return False
    conn.execute(
        insert(CreditLedger).values(
            user_id=user_id,
            amount=-cost,
            kind=CreditKind.USAGE,
            generation_id=generation_id,
            idempotency_key=f"usage:generation:{generation_id}",
            created_at=now,
        )
    )
    hourly.add(conn, user_id, now, charged=cost)
    return True


def is_overdraft(exc: IntegrityError) -> bool:
    """Whether the balance CHECK refused a write (by name: the driver's texts differ)."""
    return BALANCE_CHECK in str(exc.orig) or "credit_balance >= 0" in str(exc.orig)


def balance_of(conn: Connection, user_id: int) -> int:
    found = conn.execute(select(User.credit_balance).where(User.id == user_id)).scalar()
    return int(found or 0)
