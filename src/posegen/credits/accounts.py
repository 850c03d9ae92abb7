"""Reading and changing balances outside the queue: grants and adjustments by operators, the
balance, the ledger in keyset pages, and the check that each balance equals its ledger."""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass

from sqlalchemy import Engine, func, select, update

from posegen.credits.ledger import post
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import CreditKind, CreditLedger, LedgerUnit, User
from posegen.exceptions import InvalidInput, NotFound

L = CreditLedger
#: Kinds an operator may write by hand (usage and refunds come only from the queue).
MANUAL_KINDS = (CreditKind.GRANT, CreditKind.ADJUSTMENT, CreditKind.PURCHASE)
MAX_AMOUNT = 10**12


@dataclass(frozen=True)
class Entry:
    id: int
    amount: int
    kind: str
    generation_id: int | None
    pose_id: int | None
    payment_ref: str | None
    actor_id: int | None
    reason: str | None
    created_at: dt.datetime
    #: ``credits`` (moves the balance) or ``poses`` (a quota plan's use on ``quota_day``).
    unit: str = "credits"
    quota_day: dt.date | None = None
    #: The ``credit_plans`` row a ``plan`` entry records.
    plan_id: int | None = None


@dataclass(frozen=True)
class Mismatch:
    user_id: int
    email: str
    balance: int
    ledger_sum: int


def grant(
    engine: Engine,
    user_id: int,
    amount: int,
    *,
    kind: CreditKind = CreditKind.GRANT,
    actor_id: int | None = None,
    reason: str | None = None,
    key: str | None = None,
    payment_ref: str | None = None,
) -> tuple[int, bool]:
    """Add ``amount`` (negative: take away, only as an adjustment) to a user's balance, ledgered
    with who did it and why. ``key`` makes a repeat a no-op (default: every call is new).
    Returns (the balance now, whether this call wrote). Raises :class:`InvalidInput`,
    :class:`NotFound`, :class:`InsufficientCredits` (an adjustment below zero)."""
    if kind not in MANUAL_KINDS:
        raise InvalidInput(f"kind must be one of {', '.join(k.value for k in MANUAL_KINDS)}")
    if amount == 0 or abs(amount) > MAX_AMOUNT:
        raise InvalidInput(f"amount must be non-zero and at most {MAX_AMOUNT} in size")
    if amount < 0 and kind != CreditKind.ADJUSTMENT:
        raise InvalidInput("only an adjustment may take credits away")
    if reason is not None and len(reason) > 500:
        raise InvalidInput("reason must be at most 500 characters")
    if key is not None and not 1 <= len(key) <= 150:
        raise InvalidInput("idempotency key must be 1-150 characters")
    full_key = f"{kind.value}:{key}" if key is not None else f"{kind.value}:{uuid.uuid4().hex}"
    with write_transaction(engine) as conn:
        locked = conn.execute(select(User.id).where(User.id == user_id).with_for_update()).scalar()
        if locked is None:
            raise NotFound(f"user {user_id} not found")
        wrote = post(
            conn,
            user_id,
            amount,
            kind,
            full_key,
            actor_id=actor_id,
            reason=reason,
            payment_ref=payment_ref,
        )
        now = conn.execute(select(User.credit_balance).where(User.id == user_id)).scalar_one()
    return int(now), wrote


def balance(engine: Engine, user_id: int) -> int:
    with read_connection(engine) as conn:
        found = conn.execute(select(User.credit_balance).where(User.id == user_id)).scalar()
    if found is None:
        raise NotFound(f"user {user_id} not found")
    return int(found)


def ledger_page(
    engine: Engine, user_id: int, *, before_id: int | None = None, limit: int = 50
) -> list[Entry]:
    """A user's ledger newest first; the next page starts before the last id returned."""
    columns = L.__table__.columns
    stmt = select(*columns).where(L.user_id == user_id).order_by(L.id.desc()).limit(limit)
    if before_id is not None:
        stmt = stmt.where(L.id < before_id)
    with read_connection(engine) as conn:
        rows = conn.execute(stmt).all()
    return [
        Entry(
            id=r.id,
            amount=r.amount,
            kind=CreditKind(r.kind).value,
            generation_id=r.generation_id,
            pose_id=r.pose_id,
            payment_ref=r.payment_ref,
            actor_id=r.actor_id,
            reason=r.reason,
            created_at=r.created_at,
            unit=LedgerUnit(r.unit).value,
            quota_day=r.quota_day,
            plan_id=r.plan_id,
        )
        for r in rows
    ]


def check(engine: Engine, *, fix: bool = False) -> list[Mismatch]:
    """Users whose balance differs from the sum of their ledger's credit rows. ``fix`` sets
    such balances to the ledger's sum (the ledger is the record), under each user's row lock."""
    sums = (
        select(L.user_id, func.sum(L.amount).label("total"))
        .where(L.unit == LedgerUnit.CREDITS)
        .group_by(L.user_id)
        .subquery()
    )
    stmt = (
        select(User.id, User.email, User.credit_balance, func.coalesce(sums.c.total, 0))
        .outerjoin(sums, sums.c.user_id == User.id)
        .where(User.credit_balance != func.coalesce(sums.c.total, 0))
        .order_by(User.id)
    )
    if not fix:
        with read_connection(engine) as conn:
            return [Mismatch(int(i), str(e), int(b), int(s)) for i, e, b, s in conn.execute(stmt)]
    with write_transaction(engine) as conn:
        if conn.dialect.name == "postgresql":
            # Every ledger write also updates the user's row: locking them all holds writers
            # off while the sums are read and corrected.
            conn.execute(select(User.id).order_by(User.id).with_for_update())
        found = [Mismatch(int(i), str(e), int(b), int(s)) for i, e, b, s in conn.execute(stmt)]
        for m in found:
            if m.ledger_sum >= 0:
                conn.execute(
                    update(User).where(User.id == m.user_id).values(credit_balance=m.ledger_sum)
                )
    return found
