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
    #: A column the index itself must match on (an index condition, not a filter applied to
    #: every row it reads): the claim's backend binding is served by the index, not scanned.
    index_column: str | None = None


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
        # A worker claims only what it serves: its backend (an equality on the index's first
        # column) and its model, or generations no model is pinned to yet.
        "SELECT id FROM pose_generations "
        "WHERE status = 'pending' AND backend = :backend "
        "AND (model IS NULL OR model = :model) AND run_after <= :now "
        "ORDER BY priority DESC, run_after, id LIMIT :limit"
    ),
    explain_params={
        "now": "2100-01-01T00:00:00+00:00",
        "limit": 10,
        "backend": "diffusers",
        "model": "sd15.safetensors",
    },
    index_column="backend",
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

#: "Is there anything for this worker left?" (burst workers exit when not).
PENDING_FOR_BACKEND = HotQuery(
    name="pending for a backend",
    index="ix_pose_generations_claim",
    sql=(
        "SELECT id FROM pose_generations "
        "WHERE status = 'pending' AND backend = :backend "
        "AND (model IS NULL OR model = :model) LIMIT 1"
    ),
    explain_params={"backend": "comfyui", "model": "v1-5-pruned-emaonly.safetensors"},
    index_column="backend",
)

ALL: tuple[HotQuery, ...] = (
    RECOVERY_SCAN,
    CLAIM_SCAN,
    PENDING_FOR_BACKEND,
    TOP_USERS,
    USER_GENERATIONS,
)
