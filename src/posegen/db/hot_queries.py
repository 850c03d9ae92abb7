"""The hot queries, in one place: the queue and metrics modules run them, ``db verify`` EXPLAINs
them. Each names the index that must serve it."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class HotQuery:
    name: str
    index: str
    #: SQL with named bind parameters (``:name``).
    sql: str
    #: Literal values used when EXPLAINing on PostgreSQL.
    explain_params: dict[str, object]


RECOVERY_SCAN = HotQuery(
    name="recovery scan",
    index="ix_pose_generations_recovery",
    sql=(
        "SELECT id FROM pose_generations "
        "WHERE status = 'processing' AND lease_expires_at < :now "
        "ORDER BY lease_expires_at LIMIT :limit"
    ),
    explain_params={"now": "2100-01-01T00:00:00+00:00", "limit": 100},
)

CLAIM_SCAN = HotQuery(
    name="claim",
    index="ix_pose_generations_claim",
    sql=(
        "SELECT id FROM pose_generations "
        "WHERE status = 'pending' AND run_after <= :now "
        "ORDER BY priority DESC, run_after, id LIMIT :limit"
    ),
    explain_params={"now": "2100-01-01T00:00:00+00:00", "limit": 10},
)

TOP_USERS = HotQuery(
    name="top users",
    index="ix_user_generation_stats_top",
    sql=(
        "SELECT s.user_id, u.name, u.email, s.generations, s.completed, s.poses_completed "
        "FROM user_generation_stats s JOIN users u ON u.id = s.user_id "
        "ORDER BY s.generations DESC, s.user_id LIMIT :limit"
    ),
    explain_params={"limit": 10},
)

USER_GENERATIONS = HotQuery(
    name="user's generations",
    index="ix_pose_generations_user_created",
    sql=(
        "SELECT id FROM pose_generations WHERE user_id = :user_id "
        "ORDER BY created_at DESC LIMIT :limit"
    ),
    explain_params={"user_id": 1, "limit": 20},
)

ALL: tuple[HotQuery, ...] = (RECOVERY_SCAN, CLAIM_SCAN, TOP_USERS, USER_GENERATIONS)
