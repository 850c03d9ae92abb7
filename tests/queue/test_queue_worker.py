"""The worker in-process (a thread): burst draining, priorities, retries, cancel, heartbeats,
graceful stop and lease loss, with handlers gated on events instead of timing."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from queue_helpers import (
    assert_rollup_matches,
    completed_result,
    events_of,
    expire_lease,
    pose_keys,
    row,
    wait_for,
)
from sqlalchemy import select

from posegen import queue
from posegen.db.models import GenerationStatus
from posegen.db.models import Worker as WorkerRow
from posegen.exceptions import GeneratorError, LeaseLost
from posegen.queue import ClaimedJob
from posegen.worker import JobContext, Worker, noop, registry

S = GenerationStatus


def start(w: Worker) -> threading.Thread:
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return t


def each_pose(
    before: Callable[[ClaimedJob, str], None] | None = None,
) -> Callable[[ClaimedJob, JobContext], None]:
    """A handler recording every pending variation, calling ``before`` ahead of each."""

    def handle(job: ClaimedJob, ctx: JobContext) -> None:
        for pose_id, index, key in job.variation_keys():
            if key in job.done_keys:
                continue
            if ctx.should_stop():
                return
            if before:
                before(job, key)
            ctx.record_pose(completed_result(pose_id, index))

    return handle


def test_burst_drains_everything_with_exact_pose_rows(engine, settings, owner):
    shapes = [(p, v) for p in (1, 2, 3) for v in (1, 2)] * 4
    ids = queue.submit_many(engine, settings, [owner.request(p, v) for p, v in shapes])
    w = Worker(settings, engine, noop.make_handler(settings), concurrency=4, burst=True)
    w.run()
    assert w.stats["completed"] == len(ids) and w.stats["claimed"] == len(ids)
    for gen, (p, v) in zip(ids, shapes, strict=True):
        r = row(engine, gen)
        assert (r.status, r.poses_completed, r.attempts) == (S.COMPLETED, p * v, 1)
        expected = sorted(f"p{pid}-v{i}" for pid in owner.pose_ids[:p] for i in range(v))
        assert pose_keys(engine, gen) == expected
        assert [k for k, _ in events_of(engine, gen)] == ["queued", "started"] + ["pose"] * (
            p * v
        ) + ["completed"]
    with engine.connect() as conn:
        (reg,) = conn.execute(select(WorkerRow)).all()
    assert reg.id == w.id and reg.concurrency == 4 and reg.stopped_at is not None
    assert registry.list_workers(engine, 60, include_stopped=True)[0].alive is False
    assert_rollup_matches(engine)


def test_priorities_run_first(engine, settings, owner):
    order: list[int] = []
    low = queue.submit(engine, settings, owner.request(priority=1)).generation_id
    high = queue.submit(engine, settings, owner.request(priority=9)).generation_id
    mid = queue.submit(engine, settings, owner.request(priority=5)).generation_id
    handler = each_pose(lambda job, key: order.append(job.id))
    Worker(settings, engine, handler, concurrency=1, burst=True).run()
    assert order == [high, mid, low]


def test_transient_errors_retry_and_permanent_errors_fail(engine, settings, owner):
    flaky = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    broken = queue.submit(engine, settings, owner.request()).generation_id
    calls: dict[int, int] = {}

    def handler(job: ClaimedJob, ctx: JobContext) -> None:
        calls[job.id] = calls.get(job.id, 0) + 1
        if job.id == broken:
            raise GeneratorError("weights missing", transient=False, kind="config")
        if calls[job.id] == 1:
            pose_id, index, _ = job.variation_keys()[0]
            ctx.record_pose(completed_result(pose_id, index))  # a checkpoint before failing
            raise GeneratorError("backend unreachable", transient=True, kind="unreachable")
        assert len(job.done_keys) == 1  # resumes after the checkpoint
        each_pose()(job, ctx)

    Worker(settings, engine, handler, concurrency=2, burst=True).run()
    r = row(engine, flaky)
    assert (r.status, r.attempts, r.poses_completed, calls[flaky]) == (S.COMPLETED, 2, 2, 2)
    assert "retrying" in [k for k, _ in events_of(engine, flaky)]
    b = row(engine, broken)
    assert (b.status, b.error_kind, b.error_detail) == (S.FAILED, "config", "weights missing")
    assert_rollup_matches(engine)


def test_cancel_stops_a_running_generation_between_poses(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=4)).generation_id
    first_done, go_on = threading.Event(), threading.Event()

    def gate(job: ClaimedJob, key: str) -> None:
        if key != job.variation_keys()[0][2]:
            first_done.set()
            go_on.wait(10)

    w = Worker(settings, engine, each_pose(gate), concurrency=1)
    t = start(w)
    assert first_done.wait(10)
    assert queue.cancel(engine, gen, owner.user_id) == S.PROCESSING
    go_on.set()  # the second pose is written; the worker learns of the cancel there
    wait_for(lambda: row(engine, gen).status == S.CANCELLED, 10)
    w.stop()
    t.join(10)
    assert row(engine, gen).poses_completed == 2
    assert_rollup_matches(engine)


def test_heartbeats_keep_a_long_generation_leased(engine, tuned, owner):
    # A 1.2 s lease (heartbeat every 0.4 s): a beat may come 0.8 s late before the lease runs
    # out. With 0.6 s, a machine at load 10 was late enough once (the lease was recovered).
    s = tuned(lease_seconds=1.2, recovery_interval_seconds=0.1)
    gen = queue.submit(engine, s, owner.request(poses=3)).generation_id
    # each pose takes longer than the whole lease; the heartbeat every lease/3 keeps it
    handler = each_pose(lambda job, key: threading.Event().wait(1.3))
    Worker(s, engine, handler, concurrency=1, burst=True).run()
    r = row(engine, gen)
    assert (r.status, r.attempts, r.lease_token) == (S.COMPLETED, 1, 1)


def test_stop_releases_unfinished_work_without_counting_the_attempt(engine, tuned, owner):
    s = tuned(shutdown_grace_seconds=0.3)
    finishing = queue.submit(engine, s, owner.request(poses=3)).generation_id
    hung = queue.submit(engine, s, owner.request(poses=3)).generation_id
    stopping, release_hung = threading.Event(), threading.Event()
    seen: list[Any] = []
    parked: set[int] = set()

    def gate(job: ClaimedJob, key: str) -> None:
        if key != job.variation_keys()[0][2]:
            # the second pose is in flight when the stop comes: "finishing" completes it within
            # the grace period; "hung" hangs past it
            parked.add(job.id)
            (stopping if job.id == finishing else release_hung).wait(10)
        seen.append(key)

    def handler(job: ClaimedJob, ctx: JobContext) -> None:
        try:
            each_pose(gate)(job, ctx)
        except LeaseLost:
            seen.append(("lost", job.id))
            raise

    w = Worker(s, engine, handler, concurrency=2)
    t = start(w)
    # Both must be inside their second pose when the stop comes (not between poses, where a
    # stopping worker's handler returns before it writes anything).
    wait_for(lambda: parked >= {finishing, hung}, 10)
    w.stop()
    stopping.set()
    t.join(10)
    assert not t.is_alive()
    release_hung.set()
    wait_for(lambda: ("lost", hung) in seen, 10)  # its late write was refused
    for gen, done in ((finishing, 2), (hung, 1)):
        r = row(engine, gen)
        assert (r.status, r.attempts, r.leased_by, r.poses_completed) == (S.PENDING, 0, None, done)
    assert w.stats["released"] == 2
    assert_rollup_matches(engine)


def test_a_worker_that_lost_its_lease_discards_its_work(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    in_handler, go_on = threading.Event(), threading.Event()

    def gate(job: ClaimedJob, key: str) -> None:
        in_handler.set()
        go_on.wait(10)

    w = Worker(settings, engine, each_pose(gate), concurrency=1, run_recovery=False)
    t = start(w)
    assert in_handler.wait(10)
    expire_lease(engine, gen)
    assert queue.recover(engine, settings, "other").requeued == 1
    (taken,) = queue.claim(engine, settings, "thief", 1)
    go_on.set()
    wait_for(lambda: w.stats["lease-lost"] == 1, 10)
    w.stop()
    t.join(10)
    assert pose_keys(engine, gen) == [] and row(engine, gen).lease_token == taken.lease_token
    assert row(engine, gen).status == S.PROCESSING and row(engine, gen).leased_by == "thief"


def test_wake_up_by_notify_or_by_polling(engine, tuned, owner):
    """PostgreSQL: NOTIFY wakes an idle worker long before its 30 s poll. Poll-only mode (and
    SQLite, which has no NOTIFY) picks work up at the poll interval."""
    modes = [(True, 30.0), (False, 0.05)] if engine.dialect.name == "postgresql" else [(True, 0.05)]
    for listen, poll in modes:
        s = tuned(listen_notify=listen, poll_interval_seconds=poll)
        w = Worker(s, engine, noop.make_handler(s), concurrency=1, run_recovery=False)
        t = start(w)
        wait_for(lambda: registry.list_workers(engine, 60) != [], 10)  # registered and idle
        threading.Event().wait(0.5)
        gen = queue.submit(engine, s, owner.request()).generation_id
        wait_for(lambda g=gen: row(engine, g).status == S.COMPLETED, 10)
        w.stop()
        t.join(10)
        assert not t.is_alive()


def test_a_burst_worker_recovers_an_expired_lease_before_it_leaves(engine, tuned, owner):
    """A generation left processing under a lease that ran out (its worker stalled or died) is
    work: a burst worker requeues it and finishes it instead of exiting with it processing."""
    s = tuned(recovery_interval_seconds=3600.0)
    gen = queue.submit(engine, s, owner.request(poses=2)).generation_id
    (stalled,) = queue.claim(engine, s, "stalled-worker", 1)
    assert stalled.id == gen
    expire_lease(engine, gen)
    w = Worker(s, engine, noop.make_handler(s), concurrency=1, burst=True)
    w.run()
    r = row(engine, gen)
    assert (r.status, r.attempts, r.poses_completed) == (S.COMPLETED, 2, 2)
    assert w.stats["completed"] == 1
    assert_rollup_matches(engine)
