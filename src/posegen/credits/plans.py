"""Plans: pay as you go (the default), or a daily quota of poses with an expiry date.

A user's plan is their newest ``credit_plans`` row (append-only: who set which plan when). A
quota plan admits ``daily_poses`` poses per local day in ``POSEGEN_QUOTA_TIMEZONE`` through its
``valid_until`` date; generations inside it cost no credits and are claimed before pay-as-you-go
ones (``POSEGEN_QUOTA_PRIORITY`` is added to their priority). After ``valid_until`` the user
pays as they go again, with nothing to run at expiry.

Consumption is a ``quota_usage`` row per (user, local date), counted in the submit transaction
by a conditional upsert: the row lock admits exactly the quota under any concurrency, and a new
day is a new key, so there is no reset to run or race at midnight. The same transaction ledgers
it (:mod:`posegen.credits.quota_ledger`: pose rows that the count always equals).
"""

from __future__ import annotations

import datetime as dt
import math
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Connection, Date, Engine, bindparam, insert, select, text

from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import CreditKind, CreditLedger, CreditPlan, PlanKind, QuotaUsage, User
from posegen.db.types import UTCDateTime, utcnow
from posegen.exceptions import DailyQuotaExceeded, InvalidInput, NotFound

MAX_DAILY_POSES = 1_000_000


@dataclass(frozen=True)
class Plan:
    """A user's plan as it applies on ``day`` (an expired quota plan reads as payg, with the
    quota it had kept for display)."""

    kind: PlanKind
    daily_poses: int | None = None
    valid_until: dt.date | None = None
    expired: bool = False

    @property
    def is_quota(self) -> bool:
        return self.kind is PlanKind.QUOTA and not self.expired


PAYG = Plan(PlanKind.PAYG)


def local_day(settings: Settings, now: dt.datetime | None = None) -> dt.date:
    """Today's date in the quota time zone."""
    return (now or utcnow()).astimezone(ZoneInfo(settings.quota_timezone)).date()


def next_reset(settings: Settings, now: dt.datetime | None = None) -> dt.datetime:
    """The next local midnight (when a new day's quota starts), as an aware datetime."""
    zone = ZoneInfo(settings.quota_timezone)
    local = (now or utcnow()).astimezone(zone)
    tomorrow = local.date() + dt.timedelta(days=1)
    return dt.datetime.combine(tomorrow, dt.time(), tzinfo=zone)


# Plain SQL built once: these run in every submit, where building a Core statement per call
# cost more than the query (about 2 ms of Python per submit on the shared VM).
_CURRENT = (
    "SELECT plan, daily_poses, valid_until FROM credit_plans WHERE user_id = {} "
    "ORDER BY id DESC LIMIT 1"
)
#: The driver's own parameter style: no statement to compile, nothing to process.
_CURRENT_SQL = {"sqlite": _CURRENT.format("?"), "postgresql": _CURRENT.format("%s")}
_CONSUME = text(
    "INSERT INTO quota_usage (user_id, day, poses, updated_at) "
    "VALUES (:user_id, :day, :poses, :now) "
    "ON CONFLICT (user_id, day) DO UPDATE SET poses = quota_usage.poses + excluded.poses, "
    "updated_at = excluded.updated_at "
    "WHERE quota_usage.poses + excluded.poses <= :daily RETURNING poses"
).bindparams(bindparam("day", type_=Date()), bindparam("now", type_=UTCDateTime()))


def current(conn: Connection, user_id: int, day: dt.date) -> Plan:
    """The plan in force for ``user_id`` on local date ``day``."""
    row = conn.exec_driver_sql(_CURRENT_SQL[conn.dialect.name], (user_id,)).first()
    if row is None or PlanKind(row[0]) is PlanKind.PAYG:
        return PAYG
    until = _as_date(row[2])
    return Plan(PlanKind.QUOTA, int(row[1]), until, expired=day > until)


def used(conn: Connection, user_id: int, day: dt.date) -> int:
    q = QuotaUsage
    found = conn.execute(select(q.poses).where(q.user_id == user_id, q.day == day)).scalar()
    return int(found or 0)


@dataclass(frozen=True)
class Standing:
    plan: Plan
    #: Poses left today on a live quota plan; None for pay as you go.
    left_today: int | None


def standing(engine: Engine, settings: Settings, user_id: int) -> Standing:
    """The plan in force now and what is left of today's quota."""
    day = local_day(settings)
    with read_connection(engine) as conn:
        plan = current(conn, user_id, day)
        if not plan.is_quota:
            return Standing(plan, None)
        return Standing(plan, max(0, int(plan.daily_poses or 0) - used(conn, user_id, day)))


def set_plan(
    engine: Engine,
    user_id: int,
    *,
    daily_poses: int | None,
    valid_until: dt.date | None,
    actor_id: int | None = None,
    reason: str | None = None,
) -> Plan:
    """Put a user on a quota plan (``daily_poses`` and ``valid_until`` both given) or back on
    pay as you go (neither): a ``credit_plans`` row and a ``plan`` ledger row naming it (amount
    0), with who did it, in one transaction. Raises InvalidInput, NotFound."""
    if (daily_poses is None) != (valid_until is None):
        raise InvalidInput("a quota plan needs both a daily number of poses and an end date")
    if daily_poses is not None and not 1 <= daily_poses <= MAX_DAILY_POSES:
        raise InvalidInput(f"the daily quota must be between 1 and {MAX_DAILY_POSES} poses")
    if reason is not None and len(reason) > 500:
        raise InvalidInput("reason must be at most 500 characters")
    kind = PlanKind.PAYG if daily_poses is None else PlanKind.QUOTA
    with write_transaction(engine) as conn:
        if conn.execute(select(User.id).where(User.id == user_id)).scalar() is None:
            raise NotFound(f"user {user_id} not found")
        now = utcnow()
        plan_id = conn.execute(
            insert(CreditPlan)
            .values(
                user_id=user_id,
                plan=kind,
                daily_poses=daily_poses,
                valid_until=valid_until,
                actor_id=actor_id,
                reason=reason,
                created_at=now,
            )
            .returning(CreditPlan.id)
        ).scalar_one()
        # On the ledger too (amount 0: a plan moves no balance), with who did it and why.
        conn.execute(
            insert(CreditLedger).values(
                user_id=user_id,
                amount=0,
                kind=CreditKind.PLAN,
                plan_id=plan_id,
                idempotency_key=f"plan:{plan_id}",
                actor_id=actor_id,
                reason=reason,
                created_at=now,
            )
        )
    return Plan(kind, daily_poses, valid_until)


def consume(
    conn: Connection,
    settings: Settings,
    user_id: int,
    plan: Plan,
    poses: int,
    now: dt.datetime,
) -> None:
    """Count ``poses`` against today's quota in the caller's transaction, or raise
    :class:`DailyQuotaExceeded` (the caller rolls back). One conditional upsert: on PostgreSQL
    its row lock serialises one user's submits of the day and the WHERE sees the latest count;
    SQLite runs it under the write lock."""
    daily = int(plan.daily_poses or 0)
    day = local_day(settings, now)
    if poses <= daily:
        params = {"user_id": user_id, "day": day, "poses": poses, "now": now, "daily": daily}
        if conn.execute(_CONSUME, params).first() is not None:
            return
    raise refusal(settings, daily, max(0, daily - used(conn, user_id, day)), poses, now)


def refusal(
    settings: Settings, daily: int, left: int, poses: int, now: dt.datetime
) -> DailyQuotaExceeded:
    reset = next_reset(settings, now)
    wait = max(1, math.ceil((reset - now).total_seconds()))
    return DailyQuotaExceeded(
        f"this generation needs {poses} poses and {left} of today's {daily} are left; "
        f"the quota resets at {reset.isoformat()} ({settings.quota_timezone} midnight)",
        retry_after=wait,
        resets_at=reset.isoformat(),
        daily=daily,
        left=left,
    )


def _as_date(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value))
