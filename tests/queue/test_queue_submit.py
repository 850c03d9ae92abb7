"""Submit: one pending row, rollup, a queued event; idempotency keys; clear refusals."""

from __future__ import annotations

import dataclasses

import pytest
from queue_helpers import Owner, assert_rollup_matches, events_of, row

from posegen import queue
from posegen.db.models import GenerationStatus, GenerationType
from posegen.exceptions import Conflict, InvalidInput, NotFound


def test_submit_creates_pending_row_event_and_rollup(engine, settings, owner):
    res = queue.submit(engine, settings, owner.request(poses=3, variations=2, priority=5))
    assert res.created
    r = row(engine, res.generation_id)
    assert r.status == GenerationStatus.PENDING
    assert r.total_expected_poses == 6
    assert r.selected_pose_ids == owner.pose_ids[:3]
    assert (r.priority, r.attempts, r.lease_token, r.max_attempts) == (5, 0, 0, 3)
    kind, data = events_of(engine, res.generation_id)[0]
    assert kind == "queued"
    assert data == {"status": "pending", "completed": 0, "failed": 0, "total": 6, "priority": 5}
    text = queue.submit(
        engine,
        settings,
        dataclasses.replace(
            owner.request(), type=GenerationType.TEXT, pose_ids=[], variations=4, prompt="a cat"
        ),
    )
    assert row(engine, text.generation_id).total_expected_poses == 4
    assert_rollup_matches(engine)


def test_idempotency_key_returns_first_or_conflicts(engine, settings, owner):
    req = owner.request(idempotency_key="k1", request_hash="h1")
    first = queue.submit(engine, settings, req)
    again = queue.submit(engine, settings, req)
    assert again == queue.SubmitResult(first.generation_id, False)
    with pytest.raises(Conflict) as err:
        queue.submit(engine, settings, dataclasses.replace(req, request_hash="h2"))
    assert err.value.kind == "idempotency-conflict"
    # the same key belongs to each user separately
    other = Owner(engine, "other@example.com")
    mine = queue.submit(engine, settings, other.request(idempotency_key="k1", request_hash="h9"))
    assert mine.created and mine.generation_id != first.generation_id
    assert_rollup_matches(engine)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"variations": 0}, "variations"),
        ({"pose_ids": []}, "at least one pose"),
        ({"pose_ids": [1, 1]}, "repeat"),
        ({"width": 10}, "width"),
        ({"type": GenerationType.TEXT}, "no pose ids"),
        ({"type": GenerationType.TEXT, "pose_ids": []}, "needs a prompt"),
    ],
)
def test_bad_requests_are_refused_and_nothing_is_written(engine, settings, owner, change, needle):
    with pytest.raises(InvalidInput, match=needle):
        queue.submit(engine, settings, dataclasses.replace(owner.request(), **change))
    assert queue.claim(engine, settings, "w", 10) == []
    assert_rollup_matches(engine)


def test_project_of_another_user_is_not_found(engine, settings, owner):
    other = Owner(engine, "other@example.com")
    req = dataclasses.replace(owner.request(), project_id=other.project_id)
    with pytest.raises(NotFound):
        queue.submit(engine, settings, req)
    with pytest.raises(NotFound):
        queue.submit_many(engine, settings, [owner.request(), req])
    assert queue.claim(engine, settings, "w", 10) == []


def test_submit_many_is_one_transaction_with_ids_in_order(engine, settings, owner):
    reqs = [owner.request(priority=i) for i in range(5)]
    ids = queue.submit_many(engine, settings, reqs)
    assert ids == sorted(ids) and len(ids) == 5
    assert [row(engine, i).priority for i in ids] == list(range(5))
    with pytest.raises(InvalidInput):
        queue.submit_many(engine, settings, [owner.request(idempotency_key="x")])
    assert_rollup_matches(engine)
