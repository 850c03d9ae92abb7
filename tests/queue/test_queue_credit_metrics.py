"""The admin metrics' per-period credit figures come from the hourly credit rollup, kept in the
charge's and the refund's own transactions (both engines): they equal the ledger's sums, do not
move when the generations are deleted, a period before the credits moved counts none, and the
check finds a rollup that drifted from the ledger and rebuilds it."""

from __future__ import annotations

import datetime as dt
from typing import Any

from queue_helpers import Owner, completed_result
from sqlalchemy import Engine, delete, func, select, update

from posegen import credits, queue
from posegen.db.models import CreditHourly, CreditKind, CreditLedger, PoseGeneration, PoseStatus
from posegen.metrics import summary
from posegen.queue import PoseResult, SubmitLimits, variation_key

ROOMY = SubmitLimits(max_active=1000, per_minute=1000)


def _ledger_sum(engine: Engine, kind: CreditKind) -> int:
    with engine.connect() as conn:
        total = conn.execute(
            select(func.coalesce(func.sum(CreditLedger.amount), 0)).where(CreditLedger.kind == kind)
        ).scalar_one()
    return abs(int(total))


def test_period_credit_totals_from_the_rollup(engine: Engine, tuned: Any) -> None:
    s = tuned(credits_per_pose=3, max_attempts=1)
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 1000)
    req = owner.request(poses=3)
    queue.submit(engine, s, req, ROOMY)
    cancelled = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    queue.cancel(engine, cancelled, owner.user_id)
    (job,) = queue.claim(engine, s, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    failed = PoseResult(variation_key(req.pose_ids[1], 0), req.pose_ids[1], 0, PoseStatus.FAILED)
    queue.record_pose(engine, job.id, job.lease_token, failed)
    queue.fail_permanent(engine, job.id, job.lease_token, "bad", "bad")

    spent = _ledger_sum(engine, CreditKind.USAGE)
    refunded = _ledger_sum(engine, CreditKind.REFUND)
    assert spent == 5 * 3 and refunded == 4 * 3  # 3 + 2 poses charged; all but one back
    day = summary.summary(engine, summary.resolve_window("24h"), worker_stale_seconds=60)
    assert (day["totalCreditsSpent"], day["totalCreditsRefunded"]) == (spent, refunded)

    # The rollup is its own record: deleting the generations does not move the figures.
    with engine.begin() as conn:
        conn.execute(delete(PoseGeneration))
        rows = conn.execute(select(func.count()).select_from(CreditHourly)).scalar_one()
    assert 1 <= rows <= 2  # one user, the hour (two if the test crossed an hour)
    every = summary.summary(engine, summary.resolve_window("all"), worker_stale_seconds=60)
    assert (every["totalCreditsSpent"], every["totalCreditsRefunded"]) == (spent, refunded)
    before = dt.datetime.now(dt.UTC) - dt.timedelta(days=3)
    past = summary.resolve_window(start=before, end=before + dt.timedelta(days=1))
    earlier = summary.summary(engine, past, worker_stale_seconds=60)
    assert (earlier["totalCreditsSpent"], earlier["totalCreditsRefunded"]) == (0, 0)

    # A rollup changed behind posegen's back: the check names the user, --fix rebuilds it
    # from the ledger and the figures are right again.
    assert credits.hourly.check(engine) == []
    with engine.begin() as conn:
        conn.execute(update(CreditHourly).values(charged=CreditHourly.charged + 7))
    (drift,) = credits.hourly.check(engine)
    assert (drift.user_id, drift.charged - 7, drift.ledger_charged) == (owner.user_id, spent, spent)
    assert credits.hourly.check(engine, fix=True) == [drift]
    assert credits.hourly.check(engine) == []
    again = summary.summary(engine, summary.resolve_window("all"), worker_stale_seconds=60)
    assert (again["totalCreditsSpent"], again["totalCreditsRefunded"]) == (spent, refunded)
