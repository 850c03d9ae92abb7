"""Helpers to put volume into the base tables with plain SQL inserts (both engines)."""

from __future__ import annotations

import datetime as dt
import random
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import Engine, insert

from posegen.db.models import PoseGeneration, Project, User
from posegen.db.types import utcnow

#: The JSON keys of one top-users entry: exactly the seed's.
TOP_USER_FIELDS = {
    "userId",
    "userName",
    "userEmail",
    "generationCount",
    "totalPoses",
    "successRate",
}


@dataclass
class Seeded:
    """What was inserted, counted independently of posegen (the truth tests compare with)."""

    names: dict[int, tuple[str, str]] = field(default_factory=dict)
    generations: Counter[int] = field(default_factory=Counter)
    completed: Counter[int] = field(default_factory=Counter)
    poses: Counter[int] = field(default_factory=Counter)
    by_status: Counter[tuple[int, str]] = field(default_factory=Counter)
    projects: dict[int, int] = field(default_factory=dict)


def add_users(engine: Engine, seeded: Seeded, count: int, start: int = 1) -> list[int]:
    rows = [
        {"name": f"User {i}", "email": f"user{i}@example.com", "role": "user"}
        for i in range(start, start + count)
    ]
    with engine.begin() as conn:
        users = conn.execute(insert(User).returning(User.id, User.name, User.email), rows).all()
        projects = conn.execute(
            insert(Project).returning(Project.id, Project.user_id),
            [{"user_id": u.id, "name": "p"} for u in users],
        ).all()
    for u in users:
        seeded.names[u.id] = (u.name, u.email)
    for p in projects:
        seeded.projects[p.user_id] = p.id
    return sorted(u.id for u in users)


def add_generations(
    engine: Engine,
    seeded: Seeded,
    plan: list[tuple[int, str, int]],
    created_at: dt.datetime | None = None,
) -> None:
    """Insert generations (user_id, status, poses_completed) directly, bypassing the queue."""
    now = created_at or utcnow()
    rows = []
    for user_id, status, poses in plan:
        rows.append(
            {
                "user_id": user_id,
                "project_id": seeded.projects[user_id],
                "type": "text",
                "prompt": "x",
                "variations": max(poses, 1),
                "total_expected_poses": max(poses, 1),
                "status": status,
                "poses_completed": poses,
                "created_at": now,
                "run_after": now,
            }
        )
        seeded.generations[user_id] += 1
        seeded.by_status[(user_id, status)] += 1
        if status == "completed":
            seeded.completed[user_id] += 1
        seeded.poses[user_id] += poses
    with engine.begin() as conn:
        conn.execute(insert(PoseGeneration), rows)


STATUSES = ["completed"] * 6 + ["partial", "failed", "cancelled", "pending", "processing"]


def random_plan(user_ids: list[int], count: int, rng: random.Random) -> list[tuple[int, str, int]]:
    """``count`` generations over ``user_ids``, skewed so a few users have most of them."""
    plan = []
    for _ in range(count):
        user = user_ids[min(int(len(user_ids) * rng.random() ** 3), len(user_ids) - 1)]
        status = rng.choice(STATUSES)
        poses = rng.randint(1, 4) if status in ("completed", "partial") else 0
        plan.append((user, status, poses))
    return plan
