"""A quota plan's poses on the ledger (both engines): each quota submit writes one pose row in
its own transaction (a replay writes none), and the poses that did not come out (failed poses,
the cancelled rest, a generation given up after its attempts or by recovery) go back to the day
they were counted on exactly once, in the transaction that writes the terminal state. The day's
count always equals its pose rows (``credits check``); plan changes are ledger rows."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import replace

from queue_helpers import Owner, completed_result, expire_lease, row
from sqlalchemy import Engine, select, update
from test_queue_credits import ROOMY, _failed, _run_now

from posegen import credits, queue
from posegen.config import Settings
from posegen.db.models import CreditKind, CreditLedger, LedgerUnit, QuotaUsage
from posegen.exceptions import DailyQuotaExceeded

QUOTA = 50
L = CreditLedger


def _subscriber(engine: Engine, settings: Settings, email: str = "sub@example.com") -> Owner:
    owner = Owner(engine, email)
    until = credits.plans.local_day(settings) + dt.timedelta(days=2)
    credits.plans.set_plan(engine, owner.user_id, daily_poses=QUOTA, valid_until=until)
    return owner


def _pose_rows(engine: Engine, user_id: int) -> list[tuple[str, int, int | None, str]]:
    """(kind, poses, generation, key) of the user's pose rows, oldest first."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(L.kind, L.amount, L.generation_id, L.idempotency_key)
            .where(L.user_id == user_id, L.unit == LedgerUnit.POSES)
            .order_by(L.id)
        ).all()
    return [(CreditKind(k).value, int(a), g, key) for k, a, g, key in rows]


def _used(engine: Engine, settings: Settings, user_id: int) -> int:
    with engine.connect() as conn:
        return credits.plans.used(conn, user_id, credits.plans.local_day(settings))


def _assert_counted(engine: Engine) -> None:
    assert credits.quota_ledger.check(engine) == []
    assert credits.check(engine) == []


def test_submit_ledgers_the_poses_once_and_a_plan_change_is_a_row(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned(credits_per_pose=9)
    owner = _subscriber(engine, s)
    req = owner.request(poses=3)
    keyed = replace(req, idempotency_key="k1")
    first = queue.submit(engine, s, keyed, ROOMY)
    again = queue.submit(engine, s, keyed, ROOMY)
    assert again.generation_id == first.generation_id and not again.created
    assert _pose_rows(engine, owner.user_id) == [
        ("usage", -3, first.generation_id, f"quota:use:{first.generation_id}")
    ]
    assert _used(engine, s, owner.user_id) == 3
    assert credits.balance(engine, owner.user_id) == 0  # poses move no credits
    with engine.connect() as conn:
        (plan,) = conn.execute(
            select(L.amount, L.plan_id, L.unit).where(
                L.user_id == owner.user_id, L.kind == CreditKind.PLAN
            )
        ).all()
    assert plan.amount == 0 and plan.plan_id is not None
    assert LedgerUnit(plan.unit) is LedgerUnit.CREDITS
    entries = credits.ledger_page(engine, owner.user_id)
    assert [(e.kind, e.unit, e.amount) for e in entries] == [
        ("usage", "poses", -3),
        ("plan", "credits", 0),
    ]
    _assert_counted(engine)


def test_failed_poses_go_back_once_and_the_rest_at_the_end(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned(max_attempts=2)
    owner = _subscriber(engine, s)
    req = owner.request(poses=4)
    gid = queue.submit(engine, s, req, ROOMY).generation_id
    (job,) = queue.claim(engine, s, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[1], 0))
    # Given back by the write that records it, before the generation ends.
    assert _used(engine, s, owner.user_id) == 3
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[1], 0))  # a replay
    assert _used(engine, s, owner.user_id) == 3
    queue.fail_permanent(engine, job.id, job.lease_token, "bad", "bad")
    assert row(engine, gid).status == "failed"
    # The failed pose by its key, the two never written by the generation's: 1 pose used.
    assert [(k, a) for k, a, _, _ in _pose_rows(engine, owner.user_id)] == [
        ("usage", -4),
        ("refund", 1),
        ("refund", 2),
    ]
    assert _used(engine, s, owner.user_id) == 1
    assert credits.plans.standing(engine, s, owner.user_id).left_today == QUOTA - 1
    _assert_counted(engine)


def test_cancelled_and_given_up_generations_give_back_exactly_once(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned(max_attempts=2)
    owner = _subscriber(engine, s)
    pending = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    queue.cancel(engine, pending, owner.user_id)
    queue.cancel(engine, pending, owner.user_id)  # cancelling again gives nothing more back
    assert _used(engine, s, owner.user_id) == 0

    req = owner.request(poses=3)
    running = queue.submit(engine, s, req, ROOMY).generation_id
    (job,) = queue.claim(engine, s, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    queue.cancel(engine, running, owner.user_id)
    assert queue.finish(engine, job.id, job.lease_token).value == "cancelled"
    assert _used(engine, s, owner.user_id) == 1

    transient = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    for _ in range(s.max_attempts):
        (job,) = queue.claim(engine, s, "w", 1)
        queue.fail_transient(engine, s, job.id, job.lease_token, "down", "backend down")
        _run_now(engine, transient)
    assert row(engine, transient).status == "failed"
    assert _used(engine, s, owner.user_id) == 1

    # Recovery gives up on a generation whose worker stopped on its last attempt.
    lost = queue.submit(engine, s, owner.request(poses=1), ROOMY).generation_id
    for _ in range(s.max_attempts):
        queue.claim(engine, s, "w", 1)
        expire_lease(engine, lost)
        queue.recover(engine, s, "r")
        queue.recover(engine, s, "r")  # a second pass finds nothing to give back
        _run_now(engine, lost)
    assert row(engine, lost).status == "failed"
    assert _used(engine, s, owner.user_id) == 1
    backs = [(g, a) for k, a, g, _ in _pose_rows(engine, owner.user_id) if k == "refund"]
    assert sorted(backs) == sorted([(pending, 2), (running, 2), (transient, 2), (lost, 1)])
    _assert_counted(engine)


def test_a_give_back_lands_on_the_day_it_was_counted(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned()
    owner = _subscriber(engine, s)
    gid = queue.submit(engine, s, owner.request(poses=2), ROOMY).generation_id
    today = credits.plans.local_day(s)
    # Pretend it was counted yesterday (a generation that ends after local midnight).
    yesterday = today - dt.timedelta(days=1)
    with engine.begin() as conn:
        conn.execute(update(QuotaUsage).values(day=yesterday))
        conn.execute(update(L).where(L.unit == LedgerUnit.POSES).values(quota_day=yesterday))
    queue.cancel(engine, gid, owner.user_id)
    with engine.connect() as conn:
        assert credits.plans.used(conn, owner.user_id, yesterday) == 0
        assert credits.plans.used(conn, owner.user_id, today) == 0
    _assert_counted(engine)


def test_check_finds_and_fixes_a_drifted_day(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned()
    owner = _subscriber(engine, s)
    queue.submit(engine, s, owner.request(poses=2), ROOMY)
    _assert_counted(engine)
    with engine.begin() as conn:
        conn.execute(update(QuotaUsage).values(poses=5))
    (bad,) = credits.quota_ledger.check(engine)
    assert (bad.user_id, bad.day, bad.counted, bad.ledgered) == (
        owner.user_id,
        credits.plans.local_day(s),
        5,
        2,
    )
    assert credits.quota_ledger.check(engine, fix=True) == [bad]
    assert _used(engine, s, owner.user_id) == 2
    _assert_counted(engine)


def test_give_backs_and_quota_submits_of_one_user_at_once_neither_deadlock_nor_drift(
    engine: Engine, tuned: Callable[..., Settings]
) -> None:
    s = tuned()
    owner = _subscriber(engine, s)
    first = [queue.submit(engine, s, owner.request(), ROOMY).generation_id for _ in range(40)]
    errors: list[BaseException] = []
    later: list[int] = []
    barrier = threading.Barrier(4)

    def guarded(fn: Callable[[], None]) -> None:
        try:
            barrier.wait()
            fn()
        except BaseException as exc:  # reported below
            errors.append(exc)

    def submits() -> None:
        for _ in range(20):
            try:
                later.append(queue.submit(engine, s, owner.request(), ROOMY).generation_id)
            except DailyQuotaExceeded:
                pass

    def cancels(ids: list[int]) -> None:
        for gid in ids:
            queue.cancel(engine, gid, owner.user_id)

    threads = [
        threading.Thread(target=guarded, args=(submits,)),
        threading.Thread(target=guarded, args=(submits,)),
        threading.Thread(target=guarded, args=(lambda: cancels(first[::2]),)),
        threading.Thread(target=guarded, args=(lambda: cancels(first[1::2]),)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert errors == []
    # 40 + 40 asked for, 50 a day: the 40 cancelled ones went back, so all 40 later ones fit
    # only as far as the give-backs came first; whatever the order, the count is the ledger's.
    assert _used(engine, s, owner.user_id) == len(later) <= QUOTA
    assert len(later) >= QUOTA - 40
    _assert_counted(engine)
