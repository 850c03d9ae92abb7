"""The per-user, per-hour credit rollup (``credit_hourly``): every charge and refund adds to its
user's row for the hour in the same transaction as its ledger row, so the admin metrics'
``totalCreditsSpent`` / ``totalCreditsRefunded`` over a period sum at most users x hours rows
instead of scanning generations or the ledger. Hours are UTC; a period is counted to the hour
(the buckets whose hour starts inside it, the first one from the hour its start falls in)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

from sqlalchemy import Connection, Table, func, select
from sqlalchemy.dialects import postgresql, sqlite

from posegen.db.models import CreditHourly


def hour_of(moment: dt.datetime) -> dt.datetime:
    return moment.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0)


def add(
    conn: Connection, user_id: int, moment: dt.datetime, *, charged: int = 0, refunded: int = 0
) -> None:
    """Count a charge or a refund in the caller's transaction (one upsert)."""
    if not charged and not refunded:
        return
    table = cast(Table, CreditHourly.__table__)
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt: Any = dialect_insert(table).values(
        user_id=user_id, hour=hour_of(moment), charged=charged, refunded=refunded
    )
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["user_id", "hour"],
            set_={
                "charged": table.c.charged + stmt.excluded.charged,
                "refunded": table.c.refunded + stmt.excluded.refunded,
            },
        )
    )


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
