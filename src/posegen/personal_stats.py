"""A user's own figures (``GET /stats``): poses generated, active projects, generations of the
last 7 days, credits spent (net of refunds, all time and 30 days) and the most used poses.
Every query is limited to one user's rows through an index on ``user_id``."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, and_, func, select

from posegen.db.engine import read_connection
from posegen.db.models import (
    CreditKind,
    CreditLedger,
    GeneratedPose,
    LedgerUnit,
    PoseGeneration,
    PoseLibrary,
    Project,
    ProjectStatus,
)
from posegen.db.types import utcnow

G = PoseGeneration
L = CreditLedger
TOP_POSES = 5


@dataclass(frozen=True)
class TopPose:
    pose_id: int
    pose_name: str
    usage_count: int
    preview_url: str | None


@dataclass(frozen=True)
class PersonalStats:
    total_poses_generated: int
    total_projects: int
    recent_generations: int
    credits_spent: int
    credits_spent_30_days: int
    average_per_generation: float | None
    top_used_poses: list[TopPose]


def for_user(engine: Engine, user_id: int, now: dt.datetime | None = None) -> PersonalStats:
    now = now or utcnow()
    spent = -func.coalesce(func.sum(L.amount), 0)
    money = and_(L.kind.in_([CreditKind.USAGE, CreditKind.REFUND]), L.unit == LedgerUnit.CREDITS)
    with read_connection(engine) as conn:
        poses, charged_generations = conn.execute(
            select(
                func.coalesce(func.sum(G.poses_completed + G.poses_failed), 0),
                func.count().filter(G.credit_charged > 0),
            ).where(G.user_id == user_id)
        ).one()
        recent = conn.execute(
            select(func.count()).where(
                G.user_id == user_id, G.created_at >= now - dt.timedelta(days=7)
            )
        ).scalar_one()
        projects = conn.execute(
            select(func.count()).where(
                Project.user_id == user_id, Project.status == ProjectStatus.ACTIVE
            )
        ).scalar_one()
        total = conn.execute(select(spent).where(L.user_id == user_id, money)).scalar_one()
        month = conn.execute(
            select(spent).where(
                L.user_id == user_id, money, L.created_at >= now - dt.timedelta(days=30)
            )
        ).scalar_one()
        top = conn.execute(
            select(
                GeneratedPose.pose_id,
                PoseLibrary.name,
                PoseLibrary.preview_image_url,
                func.count().label("n"),
            )
            .join(G, G.id == GeneratedPose.generation_id)
            .join(PoseLibrary, and_(PoseLibrary.id == GeneratedPose.pose_id))
            .where(G.user_id == user_id)
            .group_by(GeneratedPose.pose_id, PoseLibrary.name, PoseLibrary.preview_image_url)
            .order_by(func.count().desc(), GeneratedPose.pose_id)
            .limit(TOP_POSES)
        ).all()
    return PersonalStats(
        total_poses_generated=int(poses),
        total_projects=int(projects),
        recent_generations=int(recent),
        credits_spent=int(total),
        credits_spent_30_days=int(month),
        average_per_generation=round(int(total) / charged_generations, 2)
        if charged_generations
        else None,
        top_used_poses=[TopPose(int(p or 0), str(name), int(n), prev) for p, name, prev, n in top],
    )
