"""Credits at price 0 (the default) cost a submit no statement (both engines): the statements
of a free pay-as-you-go submit are those of a charged one less the charge's, none of them reads
or writes a credit table on its own, and on PostgreSQL the submit stays one statement without
the charge's CTEs. A user on a quota plan is told apart by the admission's own condition."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from queue_helpers import Owner, row
from sqlalchemy import Engine, event

from posegen import credits, queue
from posegen.config import Settings
from posegen.queue import SubmitLimits

ROOMY = SubmitLimits(max_active=1000, per_minute=1000)
CREDIT_TABLES = ("credit_ledger", "credit_hourly", "credit_balance", "quota_usage")


@contextmanager
def _statements(engine: Engine) -> Iterator[list[str]]:
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        yield seen
    finally:
        event.remove(engine, "before_cursor_execute", record)


def _submit_statements(engine: Engine, s: Settings, owner: Owner) -> list[str]:
    queue.submit(engine, s, owner.request(), ROOMY)  # warm: pool, prepared statements
    with _statements(engine) as seen:
        queue.submit(engine, s, owner.request(), ROOMY)
    return list(seen)


def test_a_free_submit_runs_no_credit_statement(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    free_user, paying = Owner(engine, "free@example.com"), Owner(engine, "pay@example.com")
    credits.grant(engine, paying.user_id, 1000)
    free = _submit_statements(engine, tuned(credits_per_pose=0), free_user)
    charged = _submit_statements(engine, tuned(credits_per_pose=1), paying)

    for statement in free:
        assert not any(t in statement for t in CREDIT_TABLES), statement
    # The plan condition rides on the admission upsert; nothing else names a plan.
    with_plans = [st for st in free if "credit_plans" in st]
    assert len(with_plans) == 1 and "user_generation_stats" in with_plans[0]
    if engine.dialect.name == "postgresql":
        assert len(free) == len(charged) == 1
        assert "credit_ledger" in charged[0] and "credit_hourly" in charged[0]
    else:
        charge = [st for st in charged if any(t in st for t in CREDIT_TABLES)]
        assert charge, charged  # the charge's own statements (balance, ledger row, hour)
        assert len(free) == len(charged) - len(charge)


def test_the_admission_tells_a_quota_user_apart(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned(credits_per_pose=5)
    owner = Owner(engine)
    today = credits.plans.local_day(s)
    credits.plans.set_plan(engine, owner.user_id, daily_poses=2, valid_until=today)
    gid = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    with engine.connect() as conn:
        assert credits.plans.used(conn, owner.user_id, today) == 2
    assert row(engine, gid).credit_charged == 0
    # Expired yesterday: pay as you go, refused for want of credits (nothing counted).
    credits.plans.set_plan(
        engine, owner.user_id, daily_poses=2, valid_until=today - dt.timedelta(days=1)
    )
    credits.grant(engine, owner.user_id, 10)
    paid = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    assert row(engine, paid).credit_charged == 10
    assert credits.quota_ledger.check(engine) == [] and credits.check(engine) == []
