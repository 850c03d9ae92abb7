"""Claim: batches, order (priority, run_after, id), leases, and N claimers racing."""

from __future__ import annotations

import datetime as dt
import threading
from collections import Counter

from queue_helpers import events_of, row
from sqlalchemy import update

from posegen import queue
from posegen.db.models import GenerationStatus, PoseGeneration
from posegen.db.types import utcnow


def test_claim_sets_the_lease(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=2, variations=3)).generation_id
    before = utcnow()
    (job,) = queue.claim(engine, settings, "worker-a", 5)
    assert (job.id, job.lease_token, job.attempts, job.total_expected_poses) == (gen, 1, 1, 6)
    assert job.pose_ids == owner.pose_ids[:2] and job.done_keys == frozenset()
    r = row(engine, gen)
    assert r.status == GenerationStatus.PROCESSING and r.leased_by == "worker-a"
    assert r.started_at >= before - dt.timedelta(seconds=1)
    # deadline = base + per pose * poses; the lease is min(now + lease, deadline)
    expected_deadline = settings.deadline_seconds(6)
    assert abs((r.deadline_at - r.heartbeat_at).total_seconds() - expected_deadline) < 1
    assert abs((r.lease_expires_at - r.heartbeat_at).total_seconds() - settings.lease_seconds) < 1
    assert job.deadline_at == r.deadline_at
    assert events_of(engine, gen)[-1][0] == "started"
    # claimed once per lease
    assert queue.claim(engine, settings, "worker-b", 5) == []


def test_lease_is_capped_by_a_short_deadline(engine, tuned, owner):
    tight = tuned(lease_seconds=60, deadline_base_seconds=1, deadline_per_pose_seconds=1)
    queue.submit(engine, tight, owner.request())
    (job,) = queue.claim(engine, tight, "w", 1)
    r = row(engine, job.id)
    assert r.lease_expires_at == r.deadline_at
    assert queue.heartbeat(engine, tight, job.id, job.lease_token) is False
    assert row(engine, job.id).lease_expires_at == r.deadline_at


def test_order_is_priority_then_run_after_then_id(engine, settings, owner):
    low = queue.submit(engine, settings, owner.request(priority=0)).generation_id
    high = queue.submit(engine, settings, owner.request(priority=10)).generation_id
    mid1 = queue.submit(engine, settings, owner.request(priority=5)).generation_id
    mid2 = queue.submit(engine, settings, owner.request(priority=5)).generation_id
    later = queue.submit(engine, settings, owner.request(priority=99)).generation_id
    with engine.begin() as conn:
        # mid2 became runnable earlier than mid1; "later" is not runnable yet at all
        conn.execute(
            update(PoseGeneration)
            .where(PoseGeneration.id == mid2)
            .values(run_after=utcnow() - dt.timedelta(minutes=5))
        )
        conn.execute(
            update(PoseGeneration)
            .where(PoseGeneration.id == later)
            .values(run_after=utcnow() + dt.timedelta(hours=1))
        )
    first = queue.claim(engine, settings, "w", 2)
    assert [j.id for j in first] == [high, mid2]
    rest = queue.claim(engine, settings, "w", 10)
    assert [j.id for j in rest] == [mid1, low]
    assert queue.claim(engine, settings, "w", 10) == []
    assert queue.pending_exists(engine)


def test_claimers_racing_each_claim_every_job_exactly_once(engine, settings, owner):
    total = 60
    queue.submit_many(engine, settings, [owner.request() for _ in range(total)])
    claimed: Counter[int] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(6)
    errors: list[BaseException] = []

    def claimer(name: str) -> None:
        try:
            start.wait()
            while True:
                jobs = queue.claim(engine, settings, name, 4)
                if not jobs:
                    return
                with lock:
                    claimed.update(j.id for j in jobs)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=claimer, args=(f"c{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(claimed) == total
    assert set(claimed.values()) == {1}
    with engine.connect() as conn:
        tokens = conn.execute(
            PoseGeneration.__table__.select().with_only_columns(
                PoseGeneration.lease_token, PoseGeneration.attempts, PoseGeneration.status
            )
        ).all()
    assert {tuple(t) for t in tokens} == {(1, 1, GenerationStatus.PROCESSING)}
