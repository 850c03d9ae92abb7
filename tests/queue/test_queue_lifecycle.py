"""Cancel, retry with backoff, max attempts, permanent failure, release and recovery."""

from __future__ import annotations

import datetime as dt
import threading
import time

import pytest
from queue_helpers import assert_rollup_matches, completed_result, events_of, expire_lease, row
from sqlalchemy import select

from posegen import failures, queue
from posegen.db.models import GenerationStatus, RecoveryRun
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, LeaseLost, NotFound

S = GenerationStatus


def test_cancel_pending_processing_and_finished(engine, settings, owner):
    pending = queue.submit(engine, settings, owner.request()).generation_id
    running = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    with pytest.raises(NotFound):
        queue.cancel(engine, pending, owner.user_id + 1000)  # someone else's: not revealed
    assert queue.cancel(engine, pending, owner.user_id) == S.CANCELLED
    assert queue.cancel(engine, pending, None) == S.CANCELLED  # idempotent
    assert row(engine, pending).completed_at is not None
    (job,) = queue.claim(engine, settings, "w", 5)
    assert job.id == running  # the cancelled one is never claimed
    assert queue.cancel(engine, running, None) == S.PROCESSING
    # the worker learns at its next heartbeat or pose write
    assert queue.heartbeat(engine, settings, running, job.lease_token) is True
    (outcome,) = queue.record_poses(
        engine, [queue.PoseWrite(running, job.lease_token, completed_result(owner.pose_ids[0], 0))]
    )
    assert outcome.cancel_requested and outcome.counted
    assert queue.finish(engine, running, job.lease_token) == S.CANCELLED
    assert row(engine, running).poses_completed == 1
    done = queue.submit(engine, settings, owner.request()).generation_id
    (j,) = queue.claim(engine, settings, "w", 1)
    queue.record_pose(engine, done, j.lease_token, completed_result(owner.pose_ids[0], 0))
    assert queue.finish(engine, done, j.lease_token) == S.COMPLETED
    with pytest.raises(Conflict) as err:
        queue.cancel(engine, done, owner.user_id)
    assert err.value.kind == "not-cancellable"
    assert row(engine, done).status == S.COMPLETED
    assert_rollup_matches(engine)


def test_transient_failures_back_off_then_fail_when_exhausted(engine, tuned, owner):
    s = tuned(retry_backoff_base_seconds=10, retry_backoff_max_seconds=15, max_attempts=3)
    gen = queue.submit(engine, s, owner.request()).generation_id
    delays = []
    for attempt in (1, 2):
        (job,) = queue.claim(engine, s, "w", 1)
        assert job.attempts == attempt
        now = utcnow()
        assert queue.fail_transient(engine, s, gen, job.lease_token, "unreachable", "down") == (
            S.PENDING
        )
        r = row(engine, gen)
        assert (r.error_kind, r.error_detail, r.leased_by) == ("unreachable", "down", None)
        assert r.error_message == failures.FALLBACK  # never the raw text
        delays.append((r.run_after - now).total_seconds())
        assert queue.claim(engine, s, "w", 1) == []  # not before run_after
        with engine.begin() as conn:  # skip the wait
            conn.exec_driver_sql("UPDATE pose_generations SET run_after = created_at")
    # 10 s * 2^0 and 10 s * 2^1 (capped at 15), each with +-20 % jitter
    assert 8 <= delays[0] <= 12.1 and 12 <= delays[1] <= 15.1
    (job,) = queue.claim(engine, s, "w", 1)
    assert queue.fail_transient(engine, s, gen, job.lease_token, "unreachable", "down") == S.FAILED
    r = row(engine, gen)
    assert r.status == S.FAILED and r.attempts == 3 and "gave up after 3 attempts" in r.error_detail
    kinds = [k for k, _ in events_of(engine, gen)]
    assert kinds.count("retrying") == 2 and kinds[-1] == "failed"
    assert_rollup_matches(engine)


def test_permanent_failure_and_incomplete_finish(engine, settings, owner):
    a = queue.submit(engine, settings, owner.request()).generation_id
    b = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    jobs = {j.id: j for j in queue.claim(engine, settings, "w", 2)}
    assert (
        queue.fail_permanent(engine, a, jobs[a].lease_token, "bad-weights", "no file") == S.FAILED
    )
    assert (row(engine, a).error_kind, row(engine, a).error_detail) == ("bad-weights", "no file")
    queue.record_pose(engine, b, jobs[b].lease_token, completed_result(owner.pose_ids[0], 0))
    assert queue.finish(engine, b, jobs[b].lease_token) == S.PARTIAL
    assert row(engine, b).error_kind == "incomplete"
    assert_rollup_matches(engine)


def test_release_gives_the_attempt_back(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    queue.record_pose(engine, gen, job.lease_token, completed_result(owner.pose_ids[0], 0))
    queue.release(engine, gen, job.lease_token)
    r = row(engine, gen)
    assert (r.status, r.attempts, r.leased_by, r.poses_completed) == (S.PENDING, 0, None, 1)
    kind, data = events_of(engine, gen)[-1]
    assert kind == "queued" and data["reason"] == "released"
    with pytest.raises(LeaseLost):
        queue.release(engine, gen, job.lease_token)
    (again,) = queue.claim(engine, settings, "w", 1)
    assert again.attempts == 1 and again.lease_token == job.lease_token + 1
    assert again.done_keys == {f"p{owner.pose_ids[0]}-v0"}
    assert_rollup_matches(engine)


def test_recovery_requeues_then_fails_and_records_runs(engine, tuned, owner):
    s = tuned(max_attempts=2)
    gen = queue.submit(engine, s, owner.request()).generation_id
    cancelled = queue.submit(engine, s, owner.request()).generation_id
    healthy = queue.submit(engine, s, owner.request()).generation_id
    queue.claim(engine, s, "dead", 3)
    queue.cancel(engine, cancelled, None)
    for g in (gen, cancelled):
        expire_lease(engine, g)
    out = queue.recover(engine, s, "r1")
    assert (out.requeued, out.failed, out.cancelled) == (1, 0, 1)
    assert row(engine, gen).status == S.PENDING and row(engine, gen).error_kind == "lease-expired"
    assert row(engine, cancelled).status == S.CANCELLED
    assert row(engine, healthy).status == S.PROCESSING  # its lease is still valid
    (job,) = queue.claim(engine, s, "dead-again", 1)
    assert job.id == gen and job.attempts == 2
    expire_lease(engine, gen)
    out = queue.recover(engine, s, "r1")
    assert (out.requeued, out.failed) == (0, 1)
    r = row(engine, gen)
    assert r.status == S.FAILED and "gave up after 2 attempts" in r.error_detail
    with engine.connect() as conn:
        runs = conn.execute(select(RecoveryRun).order_by(RecoveryRun.id)).all()
    assert [(x.runner, x.requeued, x.failed) for x in runs] == [("r1", 1, 1), ("r1", 0, 1)]
    assert all(x.finished_at >= x.started_at for x in runs)
    assert_rollup_matches(engine)


def test_recovery_batches_through_many_rows(engine, tuned, owner):
    s = tuned(recovery_batch_size=7)
    ids = queue.submit_many(engine, s, [owner.request() for _ in range(20)])
    queue.claim(engine, s, "dead", 20)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE pose_generations SET lease_expires_at = created_at")
    out = queue.recover(engine, s, "r")
    assert out.requeued == 20
    assert {row(engine, i).status for i in ids} == {S.PENDING}
    assert_rollup_matches(engine)


def test_a_passed_deadline_is_recovered_even_with_heartbeats(engine, tuned, owner):
    s = tuned(deadline_base_seconds=0.2, deadline_per_pose_seconds=0.1)
    gen = queue.submit(engine, s, owner.request()).generation_id
    (job,) = queue.claim(engine, s, "hung", 1)
    time.sleep(0.4)
    queue.heartbeat(engine, s, gen, job.lease_token)  # a hung handler's worker still beats
    assert row(engine, gen).lease_expires_at <= utcnow() - dt.timedelta(seconds=0.05)
    assert queue.recover(engine, s, "r").requeued == 1
    assert row(engine, gen).error_kind == "deadline-exceeded"


def test_concurrent_recovery_runners_requeue_each_row_once(engine, settings, owner):
    ids = queue.submit_many(engine, settings, [owner.request() for _ in range(30)])
    queue.claim(engine, settings, "dead", 30)
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE pose_generations SET lease_expires_at = created_at")
    outcomes: list[queue.RecoveryOutcome] = []
    barrier = threading.Barrier(4)

    def runner(name: str) -> None:
        barrier.wait()
        outcomes.append(queue.recover(engine, settings, name))

    threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sum(o.requeued for o in outcomes) == 30
    for gen in ids:
        assert [k for k, _ in events_of(engine, gen)].count("retrying") == 1
        assert row(engine, gen).attempts == 1
    assert_rollup_matches(engine)


def test_recovery_lock_held_elsewhere_skips_the_pass(engine, settings, owner):
    """PostgreSQL: one runner across the fleet (advisory lock). SQLite: the write lock."""
    from posegen.queue.dialects import ops_for

    gen = queue.submit(engine, settings, owner.request()).generation_id
    queue.claim(engine, settings, "dead", 1)
    expire_lease(engine, gen)
    if engine.dialect.name == "postgresql":
        with engine.connect() as other, other.begin():
            assert ops_for(other).try_recovery_lock(other)
            out = queue.recover(engine, settings, "second")
        assert (out.ran, out.requeued) == (False, 0)
        with engine.connect() as conn:
            assert conn.execute(select(RecoveryRun)).all() == []
    assert queue.recover(engine, settings, "first").requeued == 1
