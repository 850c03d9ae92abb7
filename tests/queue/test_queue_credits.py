"""Credits on the queue's own transactions (both engines): charged at submit with the limits,
refused with nothing charged, never charged twice for a replay, refunded exactly once in the
transaction that ends a generation short (partial, failed, cancelled, given up by recovery)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from prometheus_client import REGISTRY
from queue_helpers import Owner, completed_result, expire_lease, row
from sqlalchemy import Engine, func, select

from posegen import credits, queue
from posegen.config import Settings
from posegen.db.models import CreditKind, CreditLedger, PoseGeneration, PoseStatus
from posegen.exceptions import InsufficientCredits
from posegen.queue import PoseResult, SubmitLimits, variation_key

PRICE = 7
ROOMY = SubmitLimits(max_active=1000, per_minute=1000)


def _ledger(engine: Engine, user_id: int) -> list[tuple[str, int, int | None]]:
    L = CreditLedger
    with engine.connect() as conn:
        return [
            (CreditKind(k).value, int(a), g)
            for k, a, g in conn.execute(
                select(L.kind, L.amount, L.generation_id).where(L.user_id == user_id).order_by(L.id)
            )
        ]


def _assert_balanced(engine: Engine) -> None:
    assert credits.check(engine) == []


@pytest.fixture
def priced(tuned: Callable[..., Settings]) -> Settings:
    return tuned(credits_per_pose=PRICE, max_attempts=2)


def _failed(pose_id: int, index: int) -> PoseResult:
    return PoseResult(variation_key(pose_id, index), pose_id, index, PoseStatus.FAILED)


def test_free_by_default_writes_no_ledger(engine: Engine, settings: Settings) -> None:
    owner = Owner(engine)
    gid = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    queue.fail_permanent(engine, job.id, job.lease_token, "bad", "bad")
    assert _ledger(engine, owner.user_id) == []
    r = row(engine, gid)
    assert (r.credit_charged, r.credit_refunded) == (0, 0)
    assert credits.balance(engine, owner.user_id) == 0


def _counter(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_charge_refusal_and_replay(engine: Engine, priced: Settings) -> None:
    charged_before = _counter("posegen_credits_total", kind="charged")
    refused_before = _counter("posegen_insufficient_credits_total")
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 3 * PRICE, reason="welcome")
    key = owner.request(poses=2, idempotency_key="k1")
    first = queue.submit(engine, priced, key, ROOMY)
    assert first.created and row(engine, first.generation_id).credit_charged == 2 * PRICE
    # The same key again: the first generation, not a second charge.
    again = queue.submit(engine, priced, owner.request(poses=2, idempotency_key="k1"), ROOMY)
    assert again.generation_id == first.generation_id and not again.created
    assert credits.balance(engine, owner.user_id) == PRICE

    with pytest.raises(InsufficientCredits) as err:
        queue.submit(engine, priced, owner.request(poses=2), ROOMY)
    assert (err.value.required, err.value.balance, err.value.http_status) == (2 * PRICE, PRICE, 402)
    with engine.connect() as conn:
        count = conn.execute(select(func.count()).select_from(PoseGeneration)).scalar_one()
    assert count == 1  # the refused request queued nothing
    assert _ledger(engine, owner.user_id) == [
        ("grant", 3 * PRICE, None),
        ("usage", -2 * PRICE, first.generation_id),
    ]
    _assert_balanced(engine)
    assert _counter("posegen_credits_total", kind="charged") - charged_before == 2 * PRICE
    assert _counter("posegen_insufficient_credits_total") - refused_before == 1


def test_partial_refunds_failed_poses_once(engine: Engine, priced: Settings) -> None:
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 100)
    req = owner.request(poses=3)
    gid = queue.submit(engine, priced, req, ROOMY).generation_id
    (job,) = queue.claim(engine, priced, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    refunded_before = _counter("posegen_credits_total", kind="refunded")
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[1], 0))
    # Each failed pose is refunded by the write that records it, before the generation ends.
    assert credits.balance(engine, owner.user_id) == 100 - 2 * PRICE
    assert row(engine, gid).credit_refunded == PRICE
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[1], 0))  # a replay
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[2], 0))
    assert queue.finish(engine, job.id, job.lease_token).value == "partial"
    assert _counter("posegen_credits_total", kind="refunded") - refunded_before == 2 * PRICE
    refunds = [(a, g) for k, a, g in _ledger(engine, owner.user_id) if k == "refund"]
    assert refunds == [(PRICE, gid), (PRICE, gid)]  # one per failed pose, none at the end
    r = row(engine, gid)
    assert (r.credit_charged, r.credit_refunded) == (3 * PRICE, 2 * PRICE)
    assert credits.balance(engine, owner.user_id) == 100 - PRICE
    with pytest.raises(Exception, match="lease"):
        queue.finish(engine, job.id, job.lease_token)  # a second finish changes nothing
    assert credits.balance(engine, owner.user_id) == 100 - PRICE
    _assert_balanced(engine)


def test_cancel_refunds_the_unfinished_rest(engine: Engine, priced: Settings) -> None:
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 100)
    pending_id = queue.submit(engine, priced, owner.request(poses=2), ROOMY).generation_id
    queue.cancel(engine, pending_id, owner.user_id)
    queue.cancel(engine, pending_id, owner.user_id)  # cancelling again refunds nothing more
    assert row(engine, pending_id).credit_refunded == 2 * PRICE
    assert credits.balance(engine, owner.user_id) == 100

    req = owner.request(poses=3)
    running = queue.submit(engine, priced, req, ROOMY).generation_id
    (job,) = queue.claim(engine, priced, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    queue.cancel(engine, running, owner.user_id)
    assert queue.finish(engine, job.id, job.lease_token).value == "cancelled"
    assert row(engine, running).credit_refunded == 2 * PRICE
    assert credits.balance(engine, owner.user_id) == 100 - PRICE
    _assert_balanced(engine)


def test_attempts_exhausted_refund_everything_once(engine: Engine, priced: Settings) -> None:
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 100)
    transient = queue.submit(engine, priced, owner.request(poses=2), ROOMY).generation_id
    for _ in range(priced.max_attempts):
        (job,) = queue.claim(engine, priced, "w", 1)
        queue.fail_transient(engine, priced, job.id, job.lease_token, "down", "backend down")
        _run_now(engine, transient)
    assert row(engine, transient).status == "failed"
    assert row(engine, transient).credit_refunded == 2 * PRICE

    # Recovery gives up on a generation whose worker stopped on its last attempt.
    lost = queue.submit(engine, priced, owner.request(poses=1), ROOMY).generation_id
    for _ in range(priced.max_attempts):
        queue.claim(engine, priced, "w", 1)
        expire_lease(engine, lost)
        queue.recover(engine, priced, "r")
        queue.recover(engine, priced, "r")  # a second pass finds nothing to refund
        _run_now(engine, lost)
    r = row(engine, lost)
    assert (r.status, r.credit_refunded) == ("failed", PRICE)
    assert credits.balance(engine, owner.user_id) == 100
    assert [k for k, _, _ in _ledger(engine, owner.user_id)].count("refund") == 2
    _assert_balanced(engine)


def _run_now(engine: Engine, gen_id: int) -> None:
    """Skip a retry's backoff: make the generation claimable now."""
    from sqlalchemy import update

    from posegen.db.types import utcnow

    with engine.begin() as conn:
        conn.execute(
            update(PoseGeneration)
            .where(PoseGeneration.id == gen_id, PoseGeneration.status == "pending")
            .values(run_after=utcnow())
        )


def test_check_finds_and_fixes_a_drifted_balance(engine: Engine) -> None:
    from sqlalchemy import update

    from posegen.db.models import User

    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 40, reason="r")
    credits.grant(engine, owner.user_id, -15, kind=CreditKind.ADJUSTMENT, reason="oops")
    assert credits.check(engine) == []
    with engine.begin() as conn:
        conn.execute(update(User).where(User.id == owner.user_id).values(credit_balance=99))
    (bad,) = credits.check(engine)
    assert (bad.balance, bad.ledger_sum) == (99, 25)
    assert credits.check(engine, fix=True) == [bad]
    assert credits.check(engine) == [] and credits.balance(engine, owner.user_id) == 25
    with pytest.raises(InsufficientCredits):
        credits.grant(engine, owner.user_id, -26, kind=CreditKind.ADJUSTMENT)
    assert credits.balance(engine, owner.user_id) == 25


def test_refunds_and_submits_of_one_user_at_once_neither_deadlock_nor_drift(
    engine: Engine, priced: Settings
) -> None:
    import threading

    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 10_000)
    first = [queue.submit(engine, priced, owner.request(), ROOMY).generation_id for _ in range(40)]
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
            later.append(queue.submit(engine, priced, owner.request(), ROOMY).generation_id)

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
    assert len(later) == 40
    # 80 charged, the first 40 refunded in full.
    assert credits.balance(engine, owner.user_id) == 10_000 - 40 * PRICE
    assert all(row(engine, g).credit_refunded == PRICE for g in first)
    _assert_balanced(engine)


def test_a_failed_pose_then_a_failed_generation_refund_each_part_once(
    engine: Engine, priced: Settings
) -> None:
    owner = Owner(engine)
    credits.grant(engine, owner.user_id, 100)
    req = owner.request(poses=4)
    gid = queue.submit(engine, priced, req, ROOMY).generation_id
    (job,) = queue.claim(engine, priced, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(req.pose_ids[0], 0))
    queue.record_pose(engine, job.id, job.lease_token, _failed(req.pose_ids[1], 0))
    queue.fail_permanent(engine, job.id, job.lease_token, "bad", "bad")
    # The failed pose by its key, the two never written by the generation's: 3 poses back.
    assert [(k, a) for k, a, _ in _ledger(engine, owner.user_id)][-2:] == [
        ("refund", PRICE),
        ("refund", 2 * PRICE),
    ]
    r = row(engine, gid)
    assert (r.credit_charged, r.credit_refunded) == (4 * PRICE, 3 * PRICE)
    assert credits.balance(engine, owner.user_id) == 100 - PRICE
    _assert_balanced(engine)
