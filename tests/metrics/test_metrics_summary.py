"""Summaries over a window: by status, success over finished ones, poses, errors, popular poses,
queue depth and lag, live workers."""

from __future__ import annotations

import datetime as dt

import pytest
from metrics_seed import Seeded, add_users
from sqlalchemy import insert

from posegen.db.models import (
    GeneratedPose,
    PoseCategory,
    PoseGeneration,
    PoseLibrary,
    Worker,
)
from posegen.exceptions import InvalidInput
from posegen.metrics import summary

NOW = dt.datetime(2026, 6, 1, 12, 0, tzinfo=dt.UTC)
RECENT = NOW - dt.timedelta(minutes=20)
OLD = NOW - dt.timedelta(days=3)


def gen(conn, seeded, user, status, created, *, error_kind=None, run_after=None, poses=()):
    """One generation with its pose rows: poses = [(pose_id, status, duration_ms, error_kind)]."""
    done = sum(1 for p in poses if p[1] == "completed")
    failed = len(poses) - done
    gid = conn.execute(
        insert(PoseGeneration)
        .values(
            user_id=user,
            project_id=seeded.projects[user],
            type="library",
            variations=1,
            total_expected_poses=max(len(poses), 1),
            status=status,
            poses_completed=done,
            poses_failed=failed,
            created_at=created,
            run_after=run_after or created,
            error_kind=error_kind,
        )
        .returning(PoseGeneration.id)
    ).scalar_one()
    for i, (pose_id, pstatus, ms, kind) in enumerate(poses):
        conn.execute(
            insert(GeneratedPose).values(
                generation_id=gid,
                variation_key=f"p{pose_id}-v{i}",
                pose_id=pose_id,
                variation_index=i,
                status=pstatus,
                duration_ms=ms,
                error_kind=kind,
            )
        )
    return gid


@pytest.fixture
def world(engine):
    seeded = Seeded()
    u1, u2 = add_users(engine, seeded, 2)
    with engine.begin() as conn:
        cat = conn.execute(
            insert(PoseCategory).values(slug="c", name="C").returning(PoseCategory.id)
        ).scalar_one()
        wave, sit = (
            conn.execute(
                insert(PoseLibrary)
                .values(slug=s, name=s.title(), category_id=cat, keypoints=[])
                .returning(PoseLibrary.id)
            ).scalar_one()
            for s in ("wave", "sit")
        )
        ok = "completed"
        # inside the last hour
        gen(
            conn,
            seeded,
            u1,
            "completed",
            RECENT,
            poses=[(wave, ok, 1000, None), (sit, ok, 3000, None)],
        )
        gen(conn, seeded, u1, "completed", RECENT, poses=[(wave, ok, 2000, None)])
        gen(
            conn,
            seeded,
            u2,
            "partial",
            RECENT,
            poses=[(wave, ok, 2000, None), (sit, "failed", None, "timeout")],
        )
        gen(
            conn,
            seeded,
            u2,
            "failed",
            RECENT,
            error_kind="blocked-address",
            poses=[(sit, "failed", None, "blocked-address")],
        )
        gen(conn, seeded, u2, "cancelled", RECENT)
        gen(conn, seeded, u1, "pending", NOW - dt.timedelta(minutes=5))
        # backing off until later: pending, but not late
        gen(
            conn,
            seeded,
            u1,
            "pending",
            NOW - dt.timedelta(minutes=50),
            run_after=NOW + dt.timedelta(minutes=5),
        )
        gen(conn, seeded, u2, "processing", NOW - dt.timedelta(minutes=2))
        # three days ago: only in 7d / all
        gen(conn, seeded, u2, "failed", OLD, error_kind="timeout")
        gen(conn, seeded, u2, "completed", OLD, poses=[(sit, ok, 9000, None)])
        conn.execute(
            insert(Worker),
            [
                {
                    "id": "w-live",
                    "host": "a",
                    "pid": 1,
                    "concurrency": 4,
                    "in_flight": 1,
                    "last_seen_at": NOW - dt.timedelta(seconds=10),
                    "stopped_at": None,
                },
                {
                    "id": "w-stale",
                    "host": "b",
                    "pid": 2,
                    "concurrency": 4,
                    "in_flight": 2,
                    "last_seen_at": NOW - dt.timedelta(hours=1),
                    "stopped_at": None,
                },
                {
                    "id": "w-stopped",
                    "host": "c",
                    "pid": 3,
                    "concurrency": 4,
                    "in_flight": 0,
                    "last_seen_at": NOW,
                    "stopped_at": NOW,
                },
            ],
        )
    return {"wave": wave, "sit": sit}


def window(period=None, start=None, end=None):
    return summary.resolve_window(period, start, end, now=NOW)


def test_summary_of_the_last_hour(engine, world):
    s = summary.summary(engine, window("1h"), worker_stale_seconds=180, now=NOW)
    assert s["generations"]["byStatus"] == {
        "pending": 2,
        "processing": 1,
        "completed": 2,
        "partial": 1,
        "failed": 1,
        "cancelled": 1,
    }
    assert s["generations"]["total"] == 8
    assert s["finished"] == 4  # cancelled is not an outcome of the service
    assert s["successRate"] == 0.5
    assert s["poses"] == {"completed": 4, "failed": 2}
    assert s["avgSecondsPerPose"] == 2.0  # (1000 + 3000 + 2000 + 2000) / 4 ms
    assert s["queue"] == {
        "pending": 2,
        "processing": 1,
        "oldestPendingAgeSeconds": 3000.0,
        "lagSeconds": 300.0,
    }
    assert s["workers"] == {"live": 1, "inFlight": 1, "capacity": 4, "paused": 0}
    assert s["period"] == "1h" and s["from"] == (NOW - dt.timedelta(hours=1)).isoformat()


def test_longer_windows_and_from_to(engine, world):
    week = summary.summary(engine, window("7d"), worker_stale_seconds=180, now=NOW)
    assert week["generations"]["total"] == 10 and week["successRate"] == 0.5  # 3 of 6
    everything = summary.summary(engine, window("all"), worker_stale_seconds=180, now=NOW)
    assert everything["generations"]["total"] == 10 and everything["from"] is None
    old_only = window(start=OLD - dt.timedelta(hours=1), end=OLD + dt.timedelta(hours=1))
    s = summary.summary(engine, old_only, worker_stale_seconds=180, now=NOW)
    assert s["generations"]["total"] == 2 and s["avgSecondsPerPose"] == 9.0
    # the queue is live state, whatever the window
    assert s["queue"]["pending"] == 2


def test_errors_grouped_by_kind(engine, world):
    hour = summary.errors(engine, window("1h"))["errors"]
    assert hour == [
        {"kind": "blocked-address", "generations": 1, "poses": 1},
        {"kind": "timeout", "generations": 0, "poses": 1},
    ]
    week = {e["kind"]: e for e in summary.errors(engine, window("7d"))["errors"]}
    assert week["timeout"] == {"kind": "timeout", "generations": 1, "poses": 1}


def test_popular_poses(engine, world):
    hour = summary.popular_poses(engine, window("1h"), 10)["poses"]
    assert [(p["slug"], p["images"], p["generations"]) for p in hour] == [
        ("wave", 3, 3),
        ("sit", 1, 1),
    ]
    week = summary.popular_poses(engine, window("7d"), 1)["poses"]
    assert [(p["slug"], p["images"]) for p in week] == [("wave", 3)]


def test_bad_windows_are_refused():
    with pytest.raises(InvalidInput, match="period must be one of"):
        summary.resolve_window("2w", now=NOW)
    with pytest.raises(InvalidInput, match="not both"):
        summary.resolve_window("1h", start=NOW, now=NOW)
    with pytest.raises(InvalidInput, match="before"):
        summary.resolve_window(start=NOW, end=NOW - dt.timedelta(seconds=1), now=NOW)
    naive = summary.resolve_window(start=dt.datetime(2026, 1, 1), now=NOW)
    assert naive.start == dt.datetime(2026, 1, 1, tzinfo=dt.UTC) and naive.end == NOW
