"""Top users from the per-user rollup, in time that does not grow with the number of generations.

The seed answered "top users" with one JOIN + GROUP BY over every generation; on a million rows
that is slower than the N+1 it replaced. ``user_generation_stats`` is kept by ``posegen.queue`` in
the same transaction as each state change, so the answer is the first ``limit`` entries of the
index ``ix_user_generation_stats_top`` joined to ``users`` by primary key: O(limit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, text

from posegen.db.engine import read_connection
from posegen.db.hot_queries import TOP_USERS
from posegen.exceptions import InvalidInput

MIN_LIMIT = 1
MAX_LIMIT = 100
DEFAULT_LIMIT = 10

_TOP_USERS_SQL = text(TOP_USERS.sql)


@dataclass(frozen=True)
class TopUser:
    """One row of the top-users answer (the seed's fields)."""

    user_id: int
    user_name: str
    user_email: str
    generation_count: int
    total_poses: int
    success_rate: float

    def as_json(self) -> dict[str, Any]:
        """The seed's camelCase response object."""
        return {
            "userId": self.user_id,
            "userName": self.user_name,
            "userEmail": self.user_email,
            "generationCount": self.generation_count,
            "totalPoses": self.total_poses,
            "successRate": self.success_rate,
        }


def success_rate(completed: int, generations: int) -> float:
    """completed / generations rounded to two decimals, 0 when there are none.

    Rounds half up, as the seed's ``Math.round(x * 100) / 100`` does (Python's ``round`` would
    round half to even and answer 0.12 where the seed answers 0.13 for 0.125).
    """
    if generations <= 0:
        return 0.0
    return math.floor(completed * 100 / generations + 0.5) / 100


def check_limit(limit: int) -> int:
    """The limit, or :class:`InvalidInput` when it is outside 1..100."""
    if not MIN_LIMIT <= limit <= MAX_LIMIT:
        raise InvalidInput(f"limit must be between {MIN_LIMIT} and {MAX_LIMIT}, got {limit}")
    return limit


def top_users(engine: Engine, limit: int = DEFAULT_LIMIT) -> list[TopUser]:
    """The ``limit`` users with the most generations; ties go to the lower user id."""
    check_limit(limit)
    with read_connection(engine) as conn:
        rows = conn.execute(_TOP_USERS_SQL, {"limit": limit}).all()
    return [
        TopUser(
            user_id=int(r.user_id),
            user_name=r.name,
            user_email=r.email,
            generation_count=int(r.generations),
            total_poses=int(r.poses_completed),
            success_rate=success_rate(int(r.completed), int(r.generations)),
        )
        for r in rows
    ]
