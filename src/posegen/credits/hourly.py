"""The per-user, per-hour credit rollup (``credit_hourly``): every charge and refund adds to its
user's row for the hour in the same transaction as its ledger row, so the admin metrics'
``totalCreditsSpent`` / ``totalCreditsRefunded`` over a period sum at most users x hours rows
instead of scanning generations or the ledger. Hours are UTC; a period is counted to the hour
(the buckets whose hour starts inside it, the first one from the hour its start falls in).
:func:`check` compares each user's rollup with their ledger (``posegen credits check``)."""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import Connection, Engine, bindparam, case, delete, func, select, text

from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import CreditHourly, CreditKind, CreditLedger, LedgerUnit, User
from posegen.db.types import UTCDateTime


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


_ADD = text(
    "INSERT INTO credit_hourly (user_id, hour, charged, refunded) "
    "VALUES (:user_id, :hour, :charged, :refunded) "
    "ON CONFLICT (user_id, hour) DO UPDATE SET charged = credit_hourly.charged + excluded.charged, "
    "refunded = credit_hourly.refunded + excluded.refunded"
).bindparams(bindparam("hour", type_=UTCDateTime()))


def add(
    conn: Connection, user_id: int, moment: dt.datetime, *, charged: int = 0, refunded: int = 0
) -> None:
    """Count a charge or a refund in the caller's transaction (one upsert, its SQL built once:
    it runs in every charged submit)."""
    if not charged and not refunded:
        return
    params = {"user_id": user_id, "hour": hour_of(moment), "charged": charged, "refunded": refunded}
    conn.execute(_ADD, params)


def totals(conn: Connection, start: dt.datetime | None, end: dt.datetime) -> tuple[int, int]:
    """(credits charged, credits refunded) in ``[start, end)``, to the hour."""
    h = CreditHourly
    stmt = select(
        func.coalesce(func.sum(h.charged), 0), func.coalesce(func.sum(h.refunded), 0)
    ).where(h.hour < end)
    if start is not None:
        stmt = stmt.where(h.hour >= hour_of(start))
    charged, refunded = conn.execute(stmt).one()
    return int(charged), int(refunded)


@dataclass(frozen=True)
class HourlyMismatch:
    """A user whose hourly rollup does not add up to their ledger's charges and refunds."""

    user_id: int
    charged: int
    refunded: int
    ledger_charged: int
    ledger_refunded: int


def check(engine: Engine, *, fix: bool = False) -> list[HourlyMismatch]:
    """Users whose ``credit_hourly`` totals differ from their ledger's usage and refund rows.
    ``fix`` rebuilds those users' hourly rows from their ledger rows (the ledger is the
    record), under each user's row lock."""
    with read_connection(engine) as conn:
        found = _mismatches(conn)
    if not fix or not found:
        return found
    with write_transaction(engine) as conn:
        for m in found:
            if conn.dialect.name == "postgresql":
                conn.execute(select(User.id).where(User.id == m.user_id).with_for_update())
            _rebuild(conn, m.user_id)
    return found


def _mismatches(conn: Connection) -> list[HourlyMismatch]:
    L, h = CreditLedger, CreditHourly
    usage = case((L.kind == CreditKind.USAGE, -L.amount), else_=0)
    refund = case((L.kind == CreditKind.REFUND, L.amount), else_=0)
    ledger = {
        int(u): (int(c), int(r))
        for u, c, r in conn.execute(
            select(L.user_id, func.sum(usage), func.sum(refund))
            .where(L.kind.in_([CreditKind.USAGE, CreditKind.REFUND]), L.unit == LedgerUnit.CREDITS)
            .group_by(L.user_id)
        )
    }
    rollup = {
        int(u): (int(c), int(r))
        for u, c, r in conn.execute(
            select(h.user_id, func.sum(h.charged), func.sum(h.refunded)).group_by(h.user_id)
        )
    }
    return [
        HourlyMismatch(user, *rollup.get(user, (0, 0)), *ledger.get(user, (0, 0)))
        for user in sorted(set(ledger) | set(rollup))
        if rollup.get(user, (0, 0)) != ledger.get(user, (0, 0))
    ]


def _rebuild(conn: Connection, user_id: int) -> None:
    L = CreditLedger
    conn.execute(delete(CreditHourly).where(CreditHourly.user_id == user_id))
    buckets: dict[dt.datetime, list[int]] = defaultdict(lambda: [0, 0])
    for kind, amount, created in conn.execute(
        select(L.kind, L.amount, L.created_at).where(
            L.user_id == user_id,
            L.kind.in_([CreditKind.USAGE, CreditKind.REFUND]),
            L.unit == LedgerUnit.CREDITS,
        )
    ):
        if CreditKind(kind) is CreditKind.USAGE:
            buckets[hour_of(created)][0] -= int(amount)
        else:
            buckets[hour_of(created)][1] += int(amount)
    for hour, (charged, refunded) in sorted(buckets.items()):
        add(conn, user_id, hour, charged=charged, refunded=refunded)
