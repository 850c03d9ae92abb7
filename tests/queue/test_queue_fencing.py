"""Fencing: once a lease is recovered and re-claimed, every write under the old token is
refused (LeaseLost) and leaves no trace; checkpoints are idempotent and never over-count."""

from __future__ import annotations

import pytest
from queue_helpers import (
    assert_rollup_matches,
    completed_result,
    events_of,
    expire_lease,
    pose_keys,
    row,
)
from sqlalchemy import func, select

from posegen import failures, queue
from posegen.db.models import GeneratedPose, GenerationEvent, GenerationStatus, PoseStatus
from posegen.exceptions import InvalidInput, LeaseLost
from posegen.metrics import prom


def _snapshot(engine, gen_id):
    r = row(engine, gen_id)
    with engine.connect() as conn:
        n_events = conn.execute(
            select(func.count()).where(GenerationEvent.generation_id == gen_id)
        ).scalar_one()
    return (
        r.status,
        r.lease_token,
        r.poses_completed,
        r.poses_failed,
        r.attempts,
        r.leased_by,
        r.lease_expires_at,
        r.error_kind,
        n_events,
        tuple(pose_keys(engine, gen_id)),
    )


def test_zombie_writes_are_rejected_and_leave_no_trace(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=2, variations=1)).generation_id
    (zombie,) = queue.claim(engine, settings, "zombie", 1)
    p0 = owner.pose_ids[0]
    queue.record_pose(engine, gen, zombie.lease_token, completed_result(p0, 0))

    expire_lease(engine, gen)
    out = queue.recover(engine, settings, "test")
    assert (out.requeued, out.failed, out.ran) == (1, 0, True)
    (owner_job,) = queue.claim(engine, settings, "new-owner", 1)
    assert owner_job.lease_token == zombie.lease_token + 1
    assert owner_job.done_keys == {f"p{p0}-v0"}  # the checkpoint survives the takeover

    before = _snapshot(engine, gen)
    losses = prom.LEASE_LOSSES._value.get()
    old = zombie.lease_token
    p1 = owner.pose_ids[1]
    attempts = [
        lambda: queue.heartbeat(engine, settings, gen, old),
        lambda: queue.record_pose(engine, gen, old, completed_result(p1, 0)),
        lambda: queue.record_pose(engine, gen, old, completed_result(p0, 0)),
        lambda: queue.finish(engine, gen, old),
        lambda: queue.fail_transient(engine, settings, gen, old, "x", "y"),
        lambda: queue.fail_permanent(engine, gen, old, "x", "y"),
        lambda: queue.release(engine, gen, old),
    ]
    for attempt in attempts:
        with pytest.raises(LeaseLost):
            attempt()
    assert _snapshot(engine, gen) == before
    assert prom.LEASE_LOSSES._value.get() - losses == len(attempts)

    # the new owner finishes; the zombie still cannot touch the ended row
    queue.record_pose(engine, gen, owner_job.lease_token, completed_result(p1, 0))
    assert queue.finish(engine, gen, owner_job.lease_token) == GenerationStatus.COMPLETED
    with pytest.raises(LeaseLost):
        queue.finish(engine, gen, old)
    with pytest.raises(LeaseLost):
        queue.record_pose(engine, gen, owner_job.lease_token, completed_result(p1, 0))
    r = row(engine, gen)
    assert (r.poses_completed, r.poses_failed, r.status) == (2, 0, GenerationStatus.COMPLETED)
    assert pose_keys(engine, gen) == sorted([f"p{p0}-v0", f"p{p1}-v0"])
    assert_rollup_matches(engine)


def test_a_pose_recorded_twice_counts_once(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(poses=1, variations=2)).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    p = owner.pose_ids[0]
    for _ in range(3):
        queue.record_pose(engine, gen, job.lease_token, completed_result(p, 0))
    assert (row(engine, gen).poses_completed, len(pose_keys(engine, gen))) == (1, 1)
    assert [k for k, _ in events_of(engine, gen)].count("pose") == 1
    failed = queue.PoseResult(f"p{p}-v1", p, 1, PoseStatus.FAILED, error_kind="nsfw")
    queue.record_pose(engine, gen, job.lease_token, failed)
    queue.record_pose(engine, gen, job.lease_token, failed)
    r = row(engine, gen)
    assert (r.poses_completed, r.poses_failed) == (1, 1)
    assert queue.finish(engine, gen, job.lease_token) == GenerationStatus.PARTIAL
    kind, data = events_of(engine, gen)[-1]
    assert kind == "partial" and data["completed"] == 1 and data["failed"] == 1
    assert_rollup_matches(engine)


def test_pose_results_must_match_their_key(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request()).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    bad = queue.PoseResult("p999-v0", owner.pose_ids[0], 0, PoseStatus.COMPLETED)
    with pytest.raises(InvalidInput):
        queue.record_pose(engine, gen, job.lease_token, bad)
    # a key of another pose fits the format but would exceed the total: refused, not counted
    queue.record_pose(engine, gen, job.lease_token, completed_result(owner.pose_ids[0], 0))
    with pytest.raises(InvalidInput):
        queue.record_pose(engine, gen, job.lease_token, completed_result(owner.pose_ids[1], 0))
    assert (row(engine, gen).poses_completed, len(pose_keys(engine, gen))) == (1, 1)
    assert_rollup_matches(engine)


def test_pose_rows_keep_every_field_of_the_result(engine, settings, owner):
    gen = queue.submit(engine, settings, owner.request(variations=2)).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    p = owner.pose_ids[0]
    full = queue.PoseResult(
        f"p{p}-v0",
        p,
        0,
        PoseStatus.COMPLETED,
        image_path="results/1/a.png",
        thumbnail_path="results/1/a.thumb.webp",
        seed=42,
        prompt_used="a dancer",
        duration_ms=1234,
        meta={"backend": "test", "steps": 2},
    )
    bad = queue.PoseResult(
        f"p{p}-v1", p, 1, PoseStatus.FAILED, error_kind="nsfw", error_message="blocked"
    )
    outcomes = queue.record_poses(
        engine, [queue.PoseWrite(gen, job.lease_token, r) for r in (full, bad)]
    )
    assert [o.counted for o in outcomes] == [True, True]
    with engine.connect() as conn:
        rows = conn.execute(
            select(GeneratedPose)
            .where(GeneratedPose.generation_id == gen)
            .order_by(GeneratedPose.variation_key)
        ).all()
    got = [
        (r.variation_key, r.pose_id, r.variation_index, r.status, r.image_path, r.thumbnail_path,
         r.seed, r.prompt_used, r.duration_ms, r.error_kind, r.error_message, r.error_detail,
         r._mapping["metadata"])
        for r in rows
    ]  # fmt: skip
    assert got == [
        (f"p{p}-v0", p, 0, PoseStatus.COMPLETED, "results/1/a.png", "results/1/a.thumb.webp",
         42, "a dancer", 1234, None, None, None, {"backend": "test", "steps": 2}),
        # The owner reads a sentence for the kind; the raw text is kept as the detail.
        (f"p{p}-v1", p, 1, PoseStatus.FAILED, None, None, None, None, None, "nsfw",
         failures.FALLBACK, "blocked", None),
    ]  # fmt: skip
