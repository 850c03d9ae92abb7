"""Chaos for money (both engines): real worker processes are SIGKILLed in the middle of charged
generations (one a cancel was requested on, some on their last attempt, the third pose of each
failing), a new worker takes over, and afterwards every credit is accounted for: each failed
pose was refunded once by its own write, each generation the rest of what its unfinished poses
cost, once, and the ledger's sum is the balance. For a quota plan the same chaos leaves the
day's count at exactly the poses that completed, equal to its pose rows on the ledger."""

from __future__ import annotations

import datetime as dt
import signal
from collections import Counter
from pathlib import Path
from typing import Any

from queue_helpers import Owner, assert_rollup_matches, row, wait_for
from sqlalchemy import Engine, func, select
from test_fast_recovery import Proc, _env

from posegen import credits, queue
from posegen.config import Settings
from posegen.db.models import (
    TERMINAL_STATUSES,
    CreditKind,
    CreditLedger,
    GenerationStatus,
    LedgerUnit,
)
from posegen.queue import SubmitLimits

S = GenerationStatus
PRICE = 5
POSES = 3
ROOMY = SubmitLimits(max_active=1000, per_minute=1000)


def _ledger(engine: Engine, user_id: int) -> Counter[str]:
    L = CreditLedger
    with engine.connect() as conn:
        rows = conn.execute(
            select(L.kind, func.count(), func.sum(L.amount))
            .where(L.user_id == user_id)
            .group_by(L.kind)
        ).all()
    return Counter(
        {
            f"{CreditKind(k).value}:{what}": int(v)
            for k, n, s in rows
            for what, v in (("rows", n), ("sum", s))
        }
    )


def test_sigkilled_workers_lose_and_mint_nothing(
    engine: Engine, tuned: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    last_try: Settings = tuned(credits_per_pose=PRICE, max_attempts=1)
    retried: Settings = tuned(credits_per_pose=PRICE, max_attempts=3)
    owner = Owner(engine)
    start = 1000
    credits.grant(engine, owner.user_id, start, reason="chaos")
    ids = [
        queue.submit(engine, s, owner.request(poses=POSES), ROOMY).generation_id
        for s in (last_try, retried, last_try, retried, retried, last_try)
    ]
    env = {
        **_env(cli_env),
        "POSEGEN_CREDITS_PER_POSE": str(PRICE),
        # The third pose of every generation fails (real per-pose failures, refunded by pose).
        "POSEGEN_NOOP_FAIL_EVERY": str(POSES),
    }
    victim = Proc(env, tmp_path, "--concurrency", "6", POSEGEN_NOOP_POSE_SECONDS="1.5")
    survivor: Proc | None = None
    try:
        # Every generation has a pose done and more to go when the worker dies.
        wait_for(lambda: all(row(engine, g).poses_completed >= 1 for g in ids), 60, 0.05)
        queue.cancel(engine, ids[4], owner.user_id)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        survivor = Proc(env, tmp_path, "--concurrency", "6", POSEGEN_NOOP_POSE_SECONDS="0.05")
        wait_for(lambda: all(row(engine, g).status in TERMINAL_STATUSES for g in ids), 60, 0.1)
    finally:
        victim.close()
        if survivor is not None:
            survivor.close()

    charged = refunded = pose_refunds = generation_refunds = 0
    outcomes = Counter()
    for g in ids:
        r = row(engine, g)
        outcomes[r.status] += 1
        assert r.credit_charged == PRICE * POSES
        unfinished = POSES - r.poses_completed
        expected = 0 if r.status == S.COMPLETED else PRICE * unfinished
        assert r.credit_refunded == expected, (g, r.status, r.poses_completed)
        charged += r.credit_charged
        refunded += r.credit_refunded
        pose_refunds += r.poses_failed
        generation_refunds += POSES - r.poses_completed - r.poses_failed > 0
        assert r.poses_completed <= POSES - 1  # the last pose never completes
    # The ones on their last attempt failed (worker lost); the retried ones ran to the end
    # with their failing pose (partial); the cancelled one ended cancelled.
    assert outcomes[S.FAILED] == 3 and outcomes[S.CANCELLED] == 1 and outcomes[S.PARTIAL] == 2
    assert pose_refunds >= 2  # at least the two that ran to the end
    assert credits.balance(engine, owner.user_id) == start - charged + refunded
    ledger = _ledger(engine, owner.user_id)
    assert ledger["usage:rows"] == len(ids) and ledger["usage:sum"] == -charged
    assert ledger["refund:rows"] == pose_refunds + generation_refunds
    assert ledger["refund:sum"] == refunded
    assert credits.check(engine) == []
    assert_rollup_matches(engine)


def test_sigkilled_workers_give_a_quota_day_back_exactly_what_did_not_come_out(
    engine: Engine, tuned: Any, cli_env: dict[str, str], tmp_path: Path
) -> None:
    """The same chaos for a quota plan: afterwards the day's count is exactly the poses that
    completed, and it equals the day's pose rows on the ledger (one use per generation, one
    give-back per failed pose, one per generation that ended short with poses never run)."""
    last_try: Settings = tuned(max_attempts=1)
    retried: Settings = tuned(max_attempts=3)
    owner = Owner(engine)
    day = credits.plans.local_day(last_try)
    credits.plans.set_plan(
        engine, owner.user_id, daily_poses=100, valid_until=day + dt.timedelta(days=2)
    )
    ids = [
        queue.submit(engine, s, owner.request(poses=POSES), ROOMY).generation_id
        for s in (last_try, retried, last_try, retried, retried, last_try)
    ]
    env = {**_env(cli_env), "POSEGEN_NOOP_FAIL_EVERY": str(POSES)}
    victim = Proc(env, tmp_path, "--concurrency", "6", POSEGEN_NOOP_POSE_SECONDS="1.5")
    survivor: Proc | None = None
    try:
        wait_for(lambda: all(row(engine, g).poses_completed >= 1 for g in ids), 60, 0.05)
        queue.cancel(engine, ids[4], owner.user_id)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        survivor = Proc(env, tmp_path, "--concurrency", "6", POSEGEN_NOOP_POSE_SECONDS="0.05")
        wait_for(lambda: all(row(engine, g).status in TERMINAL_STATUSES for g in ids), 60, 0.1)
    finally:
        victim.close()
        if survivor is not None:
            survivor.close()

    completed = failed_poses = short = 0
    outcomes: Counter[str] = Counter()
    for g in ids:
        r = row(engine, g)
        outcomes[r.status] += 1
        assert r.credit_charged == 0 and r.credit_refunded == 0
        completed += r.poses_completed
        failed_poses += r.poses_failed
        short += POSES - r.poses_completed - r.poses_failed > 0
    assert outcomes[S.FAILED] == 3 and outcomes[S.CANCELLED] == 1 and outcomes[S.PARTIAL] == 2
    with engine.connect() as conn:
        assert credits.plans.used(conn, owner.user_id, day) == completed
        L = CreditLedger
        rows = conn.execute(
            select(L.kind, L.amount, L.quota_day)
            .where(L.user_id == owner.user_id, L.unit == LedgerUnit.POSES)
            .order_by(L.id)
        ).all()
    uses = [r for r in rows if CreditKind(r.kind) is CreditKind.USAGE]
    backs = [r for r in rows if CreditKind(r.kind) is CreditKind.REFUND]
    assert len(uses) == len(ids) and sum(r.amount for r in uses) == -POSES * len(ids)
    assert len(backs) == failed_poses + short
    assert sum(r.amount for r in backs) == POSES * len(ids) - completed
    assert {r.quota_day for r in rows} == {day}
    assert credits.quota_ledger.check(engine) == [] and credits.check(engine) == []
    assert credits.balance(engine, owner.user_id) == 0
    assert_rollup_matches(engine)
