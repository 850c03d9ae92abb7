"""A quota plan's poses on the ledger: each quota generation's use, and each give-back of poses
that did not come out, as ``credit_ledger`` rows with ``unit = 'poses'`` and the local
``quota_day`` they count on. They move ``quota_usage`` (the fast counter the submit's
conditional upsert limits with), never the credit balance, in the same transaction:

- use: ``-poses`` at submit, keyed ``quota:use:<generation>``;
- a failed pose: ``+1`` with the checkpoint that records it, ``quota:back:pose:<gen>:<key>``;
- a generation ended partial, failed or cancelled: the poses that never got a row (the
  cancelled rest, what recovery gave up on), ``quota:back:generation:<gen>``.

The keys make each happen once whatever retries or recoveries do, as for credit refunds; the
day is the one the generation was counted on, not the day it ended. ``quota_usage.poses`` for
a (user, day) is always minus the sum of that day's pose rows: :func:`check` proves it.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Engine, Table, func, insert, select, update
from sqlalchemy.dialects import postgresql, sqlite

from posegen.credits.refunds import lock_rollups
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import (
    CreditKind,
    CreditLedger,
    GenerationStatus,
    LedgerUnit,
    PoseGeneration,
    QuotaUsage,
)
from posegen.db.types import utcnow

L = CreditLedger
G = PoseGeneration
Q = QuotaUsage

_ENDED_SHORT = (GenerationStatus.PARTIAL, GenerationStatus.FAILED, GenerationStatus.CANCELLED)


def record_use(
    conn: Connection, user_id: int, day: dt.date, poses: int, generation_id: int, now: dt.datetime
) -> None:
    """Ledger a quota generation's poses, in the submit transaction that counted them on
    ``quota_usage`` (the generation is new, so its key is too: a plain insert)."""
    conn.execute(
        insert(L).values(
            user_id=user_id,
            amount=-poses,
            kind=CreditKind.USAGE,
            unit=LedgerUnit.POSES,
            quota_day=day,
            generation_id=generation_id,
            idempotency_key=f"quota:use:{generation_id}",
            created_at=now,
        )
    )


@dataclass(frozen=True)
class _Use:
    user_id: int
    day: dt.date
    #: Poses the generation took from the day (positive).
    poses: int
    #: Poses given back so far.
    back: int


def _uses(conn: Connection, generation_ids: Sequence[int]) -> dict[int, _Use]:
    """The quota use of each of these generations that had one (one indexed read)."""
    if not generation_ids:
        return {}
    rows = conn.execute(
        select(L.generation_id, L.user_id, L.quota_day, L.kind, func.sum(L.amount))
        .where(L.generation_id.in_(sorted(set(generation_ids))), L.unit == LedgerUnit.POSES)
        .group_by(L.generation_id, L.user_id, L.quota_day, L.kind)
    ).all()
    taken: dict[int, tuple[int, dt.date, int]] = {}
    back: dict[int, int] = defaultdict(int)
    for gen_id, user_id, day, kind, total in rows:
        if CreditKind(kind) is CreditKind.USAGE:
            taken[int(gen_id or 0)] = (int(user_id), _as_date(day), -int(total or 0))
        else:
            back[int(gen_id or 0)] += int(total or 0)
    return {g: _Use(u, day, poses, back[g]) for g, (u, day, poses) in taken.items()}


def _give_back(
    conn: Connection,
    use: _Use,
    poses: int,
    key: str,
    generation_id: int,
    now: dt.datetime,
    pose_id: int | None = None,
) -> bool:
    table = cast(Table, L.__table__)
    dialect_insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    values: dict[str, Any] = {
        "user_id": use.user_id,
        "amount": poses,
        "kind": CreditKind.REFUND,
        "unit": LedgerUnit.POSES,
        "quota_day": use.day,
        "generation_id": generation_id,
        "pose_id": pose_id,
        "idempotency_key": key,
        "created_at": now,
    }
    inserted = conn.execute(
        dialect_insert(table)
        .values(values)
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(L.id)
    ).first()
    if inserted is None:
        return False
    conn.execute(
        update(Q)
        .where(Q.user_id == use.user_id, Q.day == use.day)
        .values(poses=Q.poses - poses, updated_at=now)
    )
    return True


def give_back_poses(conn: Connection, failed: Sequence[tuple[int, str, int | None]]) -> int:
    """Give failed poses just written in this transaction back to the quota day their
    generation was counted on: (generation id, variation key, library pose id) each, any
    generation (those without a quota use are skipped). Returns poses given back."""
    uses = _uses(conn, [gen_id for gen_id, _, _ in failed])
    if not uses:
        return 0
    lock_rollups(conn, {u.user_id for u in uses.values()})
    now = utcnow()
    total = 0
    for gen_id, key, pose_id in sorted(failed, key=lambda f: (f[0], f[1])):
        use = uses.get(gen_id)
        if use is not None and _give_back(
            conn, use, 1, f"quota:back:pose:{gen_id}:{key}", gen_id, now, pose_id
        ):
            total += 1
    return total


def give_back_ended(conn: Connection, generation_ids: Sequence[int]) -> int:
    """Give back the poses that never got a row of generations that just ended partial,
    failed or cancelled (rows locked by the caller, carrying their final counts); those
    without a quota use are skipped. Returns poses given back."""
    uses = _uses(conn, generation_ids)
    if not uses:
        return 0
    rows = conn.execute(
        select(G.id, G.poses_completed)
        .where(G.id.in_(list(uses)), G.status.in_(_ENDED_SHORT))
        .order_by(G.id)
    ).all()
    due = [
        (int(r.id), uses[int(r.id)].poses - int(r.poses_completed) - uses[int(r.id)].back)
        for r in rows
    ]
    due = [(g, n) for g, n in due if n > 0]
    lock_rollups(conn, {uses[g].user_id for g, _ in due})
    now = utcnow()
    total = 0
    for gen_id, n in due:
        if _give_back(conn, uses[gen_id], n, f"quota:back:generation:{gen_id}", gen_id, now):
            total += n
    return total


@dataclass(frozen=True)
class QuotaMismatch:
    user_id: int
    day: dt.date
    #: ``quota_usage.poses`` (0 when there is no row).
    counted: int
    #: Minus the sum of the day's pose rows.
    ledgered: int


def check(engine: Engine, *, fix: bool = False) -> list[QuotaMismatch]:
    """(user, day)s whose ``quota_usage`` count differs from their pose rows on the ledger.
    ``fix`` sets the count to what the ledger says (the ledger is the record)."""
    with read_connection(engine) if not fix else write_transaction(engine) as conn:
        if fix and conn.dialect.name == "postgresql":
            conn.execute(select(Q.user_id).order_by(Q.user_id, Q.day).with_for_update())
        counted = {
            (int(u), _as_date(d)): int(p)
            for u, d, p in conn.execute(select(Q.user_id, Q.day, Q.poses))
        }
        ledgered = {
            (int(u), _as_date(d)): -int(s)
            for u, d, s in conn.execute(
                select(L.user_id, L.quota_day, func.sum(L.amount))
                .where(L.unit == LedgerUnit.POSES)
                .group_by(L.user_id, L.quota_day)
            )
        }
        found = [
            QuotaMismatch(
                user_id, day, counted.get((user_id, day), 0), ledgered.get((user_id, day), 0)
            )
            for user_id, day in sorted(set(counted) | set(ledgered))
            if counted.get((user_id, day), 0) != ledgered.get((user_id, day), 0)
        ]
        if fix:
            now = utcnow()
            for m in found:
                if (m.user_id, m.day) in counted:
                    conn.execute(
                        update(Q)
                        .where(Q.user_id == m.user_id, Q.day == m.day)
                        .values(poses=m.ledgered, updated_at=now)
                    )
                else:
                    conn.execute(
                        insert(Q).values(
                            user_id=m.user_id, day=m.day, poses=m.ledgered, updated_at=now
                        )
                    )
    return found


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
