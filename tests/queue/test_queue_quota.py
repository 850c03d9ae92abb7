"""Result-byte quota: a generation reserves its size estimate at submit and gives it back when it
ends; stored bytes are counted from each pose's files and freed when its project is deleted; a
submit that would pass the cap is refused in the same transaction (both engines)."""

from __future__ import annotations

import datetime as dt

import pytest
from queue_helpers import Owner
from sqlalchemy import Engine, event, select

from posegen import projects, queue
from posegen.config import Settings
from posegen.db.models import PoseStatus, UserGenerationStats
from posegen.exceptions import QuotaExceeded, RateLimited
from posegen.queue import SubmitLimits, estimate_result_bytes
from posegen.queue.quota import THUMBNAIL_BYTES_ESTIMATE


def _quota(engine: Engine, user_id: int) -> tuple[int, int, int]:
    s = UserGenerationStats
    with engine.connect() as conn:
        row = conn.execute(
            select(s.result_bytes, s.reserved_bytes, s.window_submissions).where(
                s.user_id == user_id
            )
        ).one()
    return int(row[0]), int(row[1]), int(row[2])


def test_estimate_is_pixels_times_bytes_per_pixel_plus_thumbnails(settings: Settings) -> None:
    # The example: 500 poses at 2048x2048 is about 6 GB.
    big = estimate_result_bytes(settings, 500, 2048, 2048)
    assert 6.0e9 < big < 6.6e9
    assert estimate_result_bytes(settings, 2, 64, 64) == 2 * (
        64 * 64 * 3 + THUMBNAIL_BYTES_ESTIMATE
    )


def test_reserved_at_submit_released_at_end_stored_counted_and_freed(
    engine: Engine, settings: Settings
) -> None:
    owner = Owner(engine)
    req = owner.request(poses=2, variations=1, width=256, height=256)
    gid = queue.submit(engine, settings, req).generation_id
    estimate = estimate_result_bytes(settings, 2, 256, 256)
    # Counted in the window even without limits (operators' submits are never refused).
    assert _quota(engine, owner.user_id) == (0, estimate, 1)

    (job,) = queue.claim(engine, settings, "w1", 1)
    results = [
        queue.PoseResult(
            variation_key=queue.variation_key(p, 0),
            pose_id=p,
            variation_index=0,
            status=PoseStatus.COMPLETED,
            image_path=f"x/{p}.png",
            bytes=1000 + p,
        )
        for p in req.pose_ids
    ]
    queue.record_pose(engine, job.id, job.lease_token, results[0])
    queue.record_pose(engine, job.id, job.lease_token, results[0])  # a replay counts once
    stored_first = 1000 + req.pose_ids[0]
    assert _quota(engine, owner.user_id)[0] == stored_first
    queue.record_pose(engine, job.id, job.lease_token, results[1])
    assert queue.finish(engine, job.id, job.lease_token).value == "completed"
    stored = sum(1000 + p for p in req.pose_ids)
    assert _quota(engine, owner.user_id)[:2] == (stored, 0)

    # A cancelled pending generation gives its reservation back too.
    other = queue.submit(engine, settings, owner.request()).generation_id
    assert _quota(engine, owner.user_id)[1] > 0
    queue.cancel(engine, other, owner.user_id)
    assert _quota(engine, owner.user_id)[:2] == (stored, 0)

    projects.remove(engine, owner.project_id, owner.user_id)
    assert _quota(engine, owner.user_id)[:2] == (0, 0)
    assert gid  # the generation went with its project


def test_submit_over_the_result_quota_is_refused_and_changes_nothing(
    engine: Engine, settings: Settings
) -> None:
    owner = Owner(engine)
    one = estimate_result_bytes(settings, 1, 512, 512)
    limits = SubmitLimits(max_active=100, per_minute=100, max_result_bytes=2 * one + 10)
    for _ in range(2):
        queue.submit(engine, settings, owner.request(), limits)
    before = _quota(engine, owner.user_id)
    with pytest.raises(QuotaExceeded) as err:
        queue.submit(engine, settings, owner.request(), limits)
    assert err.value.kind == "result-quota-exceeded" and err.value.http_status == 413
    assert _quota(engine, owner.user_id) == before

    with pytest.raises(QuotaExceeded) as too_big:
        queue.submit(engine, settings, owner.request(poses=3, variations=1), limits)
    assert too_big.value.kind == "generation-too-large"

    # Refusals by rate come before bytes, and say when to come back.
    tight = SubmitLimits(max_active=1, per_minute=100, max_result_bytes=10**12)
    with pytest.raises(RateLimited) as busy:
        queue.submit(engine, settings, owner.request(), tight)
    assert busy.value.kind == "too-many-active" and busy.value.retry_after >= 1


def test_refused_submit_for_someone_elses_project_is_not_found(
    engine: Engine, settings: Settings
) -> None:
    owner, other = Owner(engine), Owner(engine, "other@example.com")
    stolen = owner.request()
    stolen = type(stolen)(**{**stolen.__dict__, "project_id": other.project_id})
    with pytest.raises(Exception) as err:
        queue.submit(engine, settings, stolen, SubmitLimits.from_settings(settings))
    assert getattr(err.value, "kind", None) == "not-found"


def test_a_limited_submit_is_one_statement_on_postgresql(
    engine: Engine, settings: Settings
) -> None:
    """The limits joined the submit statement instead of adding round trips (SQLite runs
    in-process, where statements cost no round trip, so only PostgreSQL is counted)."""
    if engine.dialect.name != "postgresql":
        pytest.skip("the one-statement submit is PostgreSQL's form")
    owner = Owner(engine)
    limits = SubmitLimits.from_settings(settings)
    queue.submit(engine, settings, owner.request(), limits)  # warm: pool, prepared statements
    seen: list[str] = []

    def record(conn: object, cursor: object, statement: str, *args: object) -> None:
        seen.append(statement)

    event.listen(engine, "before_cursor_execute", record)
    try:
        queue.submit(engine, settings, owner.request(), limits)
    finally:
        event.remove(engine, "before_cursor_execute", record)
    assert len(seen) == 1, seen
    assert "user_generation_stats" in seen[0] and "INSERT INTO pose_generations" in seen[0]


def test_a_new_window_opens_when_the_last_one_has_closed(
    engine: Engine, settings: Settings
) -> None:
    owner = Owner(engine)
    limits = SubmitLimits(max_active=100, per_minute=2, max_result_bytes=10**15)
    for _ in range(2):
        queue.submit(engine, settings, owner.request(), limits)
    with pytest.raises(RateLimited) as err:
        queue.submit(engine, settings, owner.request(), limits)
    assert err.value.kind == "too-many-submissions" and 1 <= err.value.retry_after <= 60
    # Move the window's start back past a minute, as the clock would.
    s = UserGenerationStats
    with engine.begin() as conn:
        started = conn.execute(select(s.window_started_at).where(s.user_id == owner.user_id))
        opened = started.scalar_one()
        conn.execute(
            s.__table__.update()
            .where(s.user_id == owner.user_id)
            .values(window_started_at=opened - dt.timedelta(seconds=61))
        )
    queue.submit(engine, settings, owner.request(), limits)
    with engine.connect() as conn:
        row = conn.execute(
            select(s.window_started_at, s.window_submissions).where(s.user_id == owner.user_id)
        ).one()
    assert row.window_submissions == 1 and row.window_started_at > opened
