"""Helpers for the queue tests: a user with a project and poses, and database inspection."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, case, func, insert, select, text

from posegen import accounts
from posegen.db.models import (
    GeneratedPose,
    GenerationStatus,
    GenerationType,
    PoseCategory,
    PoseGeneration,
    PoseLibrary,
    Project,
    UserGenerationStats,
)
from posegen.queue import GenerationRequest


class Owner:
    """A user, a project and library poses to submit against."""

    def __init__(self, engine: Engine, email: str = "q@example.com") -> None:
        self.engine = engine
        self.user_id = accounts.create_user(engine, "Queue User", email).account.id
        with engine.begin() as conn:
            self.project_id = conn.execute(
                insert(Project).values(user_id=self.user_id, name="p").returning(Project.id)
            ).scalar_one()
            cat = conn.execute(
                insert(PoseCategory)
                .values(slug=f"c-{self.user_id}", name="c")
                .returning(PoseCategory.id)
            ).scalar_one()
            self.pose_ids = [
                conn.execute(
                    insert(PoseLibrary)
                    .values(
                        slug=f"p-{self.user_id}-{i}",
                        name=f"pose {i}",
                        category_id=cat,
                        keypoints=[[0.5, 0.5]] * 18,
                    )
                    .returning(PoseLibrary.id)
                ).scalar_one()
                for i in range(4)
            ]

    def request(self, poses: int = 1, variations: int = 1, **kw: Any) -> GenerationRequest:
        return GenerationRequest(
            user_id=self.user_id,
            project_id=self.project_id,
            type=GenerationType.LIBRARY,
            pose_ids=self.pose_ids[:poses],
            variations=variations,
            **kw,
        )


def row(engine: Engine, gen_id: int) -> Any:
    with engine.connect() as conn:
        return conn.execute(select(PoseGeneration).where(PoseGeneration.id == gen_id)).one()


def pose_keys(engine: Engine, gen_id: int) -> list[str]:
    with engine.connect() as conn:
        return sorted(
            conn.execute(
                select(GeneratedPose.variation_key).where(GeneratedPose.generation_id == gen_id)
            ).scalars()
        )


def assert_rollup_matches(engine: Engine) -> None:
    """The rollup equals a recount from the job table, for every user."""
    G = PoseGeneration
    with engine.connect() as conn:
        recount = {
            r.user_id: (
                r.generations,
                r.completed,
                r.partial,
                r.failed,
                r.cancelled,
                r.poses,
            )
            for r in conn.execute(
                select(
                    G.user_id,
                    func.count().label("generations"),
                    _count_status(GenerationStatus.COMPLETED).label("completed"),
                    _count_status(GenerationStatus.PARTIAL).label("partial"),
                    _count_status(GenerationStatus.FAILED).label("failed"),
                    _count_status(GenerationStatus.CANCELLED).label("cancelled"),
                    func.coalesce(func.sum(G.poses_completed), 0).label("poses"),
                ).group_by(G.user_id)
            )
        }
        S = UserGenerationStats
        stored = {
            r.user_id: (
                r.generations,
                r.completed,
                r.partial,
                r.failed,
                r.cancelled,
                r.poses_completed,
            )
            for r in conn.execute(select(S))
        }
        # poses_completed in the rollup must also match the pose rows themselves
        pose_rows = conn.execute(
            select(func.count())
            .select_from(GeneratedPose)
            .where(GeneratedPose.status == "completed")
        ).scalar_one()
    assert stored == recount
    assert sum(v[5] for v in stored.values()) == pose_rows


def _count_status(status: GenerationStatus) -> Any:
    return func.coalesce(func.sum(case((PoseGeneration.status == status, 1), else_=0)), 0)


def wait_for(cond: Any, timeout: float = 30.0, interval: float = 0.05) -> None:
    """Poll ``cond()`` until true; fail with a clear message after ``timeout`` seconds."""
    import time

    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        time.sleep(interval)


def events_of(engine: Engine, gen_id: int) -> list[tuple[str, dict[str, Any]]]:
    from posegen.db.models import GenerationEvent

    with engine.connect() as conn:
        return [
            (r.kind, r.data)
            for r in conn.execute(
                select(GenerationEvent.kind, GenerationEvent.data)
                .where(GenerationEvent.generation_id == gen_id)
                .order_by(GenerationEvent.id)
            )
        ]


def expire_lease(engine: Engine, gen_id: int) -> None:
    """Move a lease's expiry into the past, as if its worker had stopped heartbeating."""
    import datetime as dt

    from sqlalchemy import update

    from posegen.db.types import utcnow

    with engine.begin() as conn:
        conn.execute(
            update(PoseGeneration)
            .where(PoseGeneration.id == gen_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def completed_result(pose_id: int | None, index: int) -> Any:
    from posegen.db.models import PoseStatus
    from posegen.queue import PoseResult, variation_key

    return PoseResult(variation_key(pose_id, index), pose_id, index, PoseStatus.COMPLETED)


def waiting_on_lock(engine: Engine, pid: int) -> bool:
    """PostgreSQL: whether the backend ``pid`` is waiting for a lock right now."""
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                text("SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = :p"),
                {"p": pid},
            )
        )
