"""Chaos for money (both engines): real worker processes are SIGKILLed in the middle of charged
generations (one a cancel was requested on, some on their last attempt, the third pose of each
failing), a new worker takes over, and afterwards every credit is accounted for: each failed
pose was refunded once by its own write, each generation the rest of what its unfinished poses
cost, once, and the ledger's sum is the balance."""

from __future__ import annotations

import signal
from collections import Counter
from pathlib import Path
from typing import Any

from queue_helpers import Owner, assert_rollup_matches, row, wait_for
from sqlalchemy import Engine, func, select
from test_fast_recovery import Proc, _env

from posegen import credits, queue
from posegen.config import Settings
from posegen.db.models import TERMINAL_STATUSES, CreditKind, CreditLedger, GenerationStatus
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
