"""Transitions made through ``posegen.queue`` keep the rollup equal to a recount."""

from __future__ import annotations

from collections import Counter

from sqlalchemy import insert

from posegen import accounts, queue
from posegen.db.models import GenerationStatus, GenerationType, PoseStatus, Project
from posegen.metrics import rollup
from posegen.metrics.check import Counts, check, fetch_rollup
from posegen.queue import GenerationRequest, PoseResult


def test_queue_transitions_keep_the_rollup_exact(engine, settings):
    users = [
        accounts.create_user(engine, f"U{i}", f"u{i}@example.com").account.id for i in range(3)
    ]
    with engine.begin() as conn:
        projects = {
            u: conn.execute(
                insert(Project).values(user_id=u, name="p").returning(Project.id)
            ).scalar_one()
            for u in users
        }

    def submit(user, n=2):
        req = GenerationRequest(
            user_id=user,
            project_id=projects[user],
            type=GenerationType.TEXT,
            pose_ids=[],
            variations=n,
            prompt="a pose",
        )
        return queue.submit(engine, settings, req).generation_id

    a, b, c = users
    ids = {u: [submit(u) for _ in range(k)] for u, k in ((a, 4), (b, 2), (c, 1))}
    assert check(engine).ok  # submits alone
    assert [u.user_id for u in rollup.top_users(engine, 3)] == [a, b, c]

    queue.cancel(engine, ids[c][0], c)
    jobs = {j.id: j for j in queue.claim(engine, settings, "w1", 10)}
    assert set(jobs) == set(ids[a] + ids[b])

    def pose(job, index, status=PoseStatus.COMPLETED):
        key = queue.variation_key(None, index)
        kind = "timeout" if status is PoseStatus.FAILED else None
        queue.record_pose(
            engine,
            job.id,
            job.lease_token,
            PoseResult(key, None, index, status, duration_ms=10, error_kind=kind),
        )

    outcomes = Counter()
    for n, gid in enumerate(ids[a]):
        job = jobs[gid]
        pose(job, 0)
        pose(job, 0)  # a replayed checkpoint must not count twice
        if n == 0:
            pose(job, 1, PoseStatus.FAILED)  # -> partial
        elif n == 1:
            queue.fail_permanent(engine, job.id, job.lease_token, "bad-format", "no")
            outcomes[GenerationStatus.FAILED] += 1
            continue
        else:
            pose(job, 1)
        outcomes[queue.finish(engine, job.id, job.lease_token)] += 1
    for gid in ids[b]:
        job = jobs[gid]
        pose(job, 0)
        pose(job, 1)
        outcomes[queue.finish(engine, job.id, job.lease_token)] += 1

    assert outcomes == {
        GenerationStatus.COMPLETED: 4,
        GenerationStatus.PARTIAL: 1,
        GenerationStatus.FAILED: 1,
    }
    report = check(engine)
    assert report.ok, report.as_dict()
    # a: 1 (partial) + 1 (before failing) + 2 + 2 completed poses
    assert fetch_rollup(engine, a) == Counts(
        generations=4, completed=2, partial=1, failed=1, cancelled=0, poses_completed=6
    )
    assert fetch_rollup(engine, b) == Counts(2, 2, 0, 0, 0, 4)
    assert fetch_rollup(engine, c) == Counts(1, 0, 0, 0, 1, 0)
    top = {u.user_id: u for u in rollup.top_users(engine, 3)}
    assert top[a].success_rate == 0.5 and top[b].success_rate == 1.0 and top[c].success_rate == 0
    assert top[a].total_poses == 6
