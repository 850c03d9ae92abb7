"""Quota plans on the queue (both engines): the day's count is keyed by the local date in the
configured zone (a pose at 23:59 and one at 00:00 local fall on two days: nothing is reset),
an expired plan pays as it goes, and a quota user's generation is claimed before pay-as-you-go
ones submitted earlier (higher priority runs first)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from queue_helpers import Owner, row
from sqlalchemy import Engine

from posegen import credits, queue
from posegen.db.engine import write_transaction
from posegen.exceptions import DailyQuotaExceeded, InsufficientCredits
from posegen.queue import SubmitLimits

ROOMY = SubmitLimits(max_active=1000, per_minute=1000)
ZONE = "Asia/Kolkata"  # UTC+05:30: local midnight is 18:30 UTC


def test_the_day_is_the_local_date_and_nothing_resets(engine: Engine, tuned: Any) -> None:
    s = tuned(quota_timezone=ZONE)
    owner = Owner(engine)
    plan = credits.plans.set_plan(
        engine, owner.user_id, daily_poses=3, valid_until=dt.date(2099, 1, 1)
    )
    before = dt.datetime(2026, 11, 30, 18, 29, 59, tzinfo=dt.UTC)  # 23:59:59 local
    after = dt.datetime(2026, 11, 30, 18, 30, 0, tzinfo=dt.UTC)  # 00:00:00 local, next day
    assert credits.plans.local_day(s, before) == dt.date(2026, 11, 30)
    assert credits.plans.local_day(s, after) == dt.date(2026, 12, 1)
    assert credits.plans.next_reset(s, before) == after
    with write_transaction(engine) as conn:
        credits.plans.consume(conn, s, owner.user_id, plan, 2, before)
    with pytest.raises(DailyQuotaExceeded) as err:
        with write_transaction(engine) as conn:
            credits.plans.consume(conn, s, owner.user_id, plan, 2, before)
    assert (err.value.left, err.value.retry_after, err.value.kind) == (1, 1, "quota-exceeded")
    assert err.value.resets_at == after.astimezone(dt.timezone(dt.timedelta(hours=5.5))).isoformat()
    # One second later it is another local day: a fresh key, the full quota.
    with write_transaction(engine) as conn:
        credits.plans.consume(conn, s, owner.user_id, plan, 3, after)
        assert credits.plans.used(conn, owner.user_id, dt.date(2026, 11, 30)) == 2
        assert credits.plans.used(conn, owner.user_id, dt.date(2026, 12, 1)) == 3


def test_an_expired_plan_pays_as_it_goes(engine: Engine, tuned: Any) -> None:
    s = tuned(credits_per_pose=4)
    owner = Owner(engine)
    yesterday = credits.plans.local_day(s) - dt.timedelta(days=1)
    credits.plans.set_plan(engine, owner.user_id, daily_poses=100, valid_until=yesterday)
    standing = credits.plans.standing(engine, s, owner.user_id)
    assert standing.plan.expired and not standing.plan.is_quota and standing.left_today is None
    with pytest.raises(InsufficientCredits):
        queue.submit(engine, s, owner.request(poses=2), ROOMY)
    credits.grant(engine, owner.user_id, 8)
    gid = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    assert (row(engine, gid).credit_charged, row(engine, gid).priority) == (8, 0)
    assert credits.balance(engine, owner.user_id) == 0


def test_quota_users_are_claimed_first(engine: Engine, tuned: Any) -> None:
    s = tuned(credits_per_pose=1, quota_priority=10)
    payg = Owner(engine, "payg@example.com")
    subscriber = Owner(engine, "quota@example.com")
    credits.grant(engine, payg.user_id, 100)
    today = credits.plans.local_day(s)
    credits.plans.set_plan(engine, subscriber.user_id, daily_poses=10, valid_until=today)
    early = [queue.submit(engine, s, payg.request(), ROOMY).generation_id for _ in range(3)]
    late = queue.submit(engine, s, subscriber.request(), ROOMY).generation_id
    assert row(engine, late).priority == 10 and row(engine, late).credit_charged == 0
    first, *rest = queue.claim(engine, s, "w", 4)
    assert first.id == late
    assert [j.id for j in rest] == early
    assert credits.plans.standing(engine, s, subscriber.user_id).left_today == 9
