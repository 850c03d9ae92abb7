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
    #: The one engine the query is for (its SQL or its index exists only there); None: both.
    dialect: str | None = None


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

# The library browser (posegen.library.query): each sort walks its index from the cursor on;
# a category, the caller's favourites, a text query and tags are index conditions.
_AFTER = "(popularity, id) < (:after_popularity, :after_id)"
_AFTER_PARAMS: dict[str, object] = {"after_popularity": 2**40, "after_id": 2**40, "limit": 50}

LIBRARY_POPULAR = HotQuery(
    name="library by popularity",
    index="ix_pose_library_popularity_id",
    sql=(
        f"SELECT id FROM pose_library WHERE is_public AND {_AFTER} "
        "ORDER BY popularity DESC, id DESC LIMIT :limit"
    ),
    explain_params=_AFTER_PARAMS,
)

LIBRARY_CATEGORY = HotQuery(
    name="library category by popularity",
    index="ix_pose_library_category_id_popularity_id",
    sql=(
        f"SELECT id FROM pose_library WHERE category_id = :category_id AND is_public AND {_AFTER} "
        "ORDER BY popularity DESC, id DESC LIMIT :limit"
    ),
    explain_params={**_AFTER_PARAMS, "category_id": 1},
    index_column="category_id",
)

LIBRARY_NEWEST = HotQuery(
    name="library newest",
    index="ix_pose_library_created_at_id",
    sql=(
        "SELECT id FROM pose_library WHERE is_public AND (created_at, id) < (:after, :after_id) "
        "ORDER BY created_at DESC, id DESC LIMIT :limit"
    ),
    explain_params={"after": "2100-01-01T00:00:00+00:00", "after_id": 2**40, "limit": 50},
)

LIBRARY_NAME = HotQuery(
    name="library by name",
    index="ix_pose_library_name_id",
    sql=(
        "SELECT id FROM pose_library WHERE is_public AND (name, id) > (:after, :after_id) "
        "ORDER BY name, id LIMIT :limit"
    ),
    explain_params={"after": "", "after_id": 0, "limit": 50},
)

LIBRARY_FAVORITES = HotQuery(
    name="library favourites",
    index="ix_pose_favorites_user_id_pose_id",
    sql=(
        "SELECT p.id FROM pose_favorites f JOIN pose_library p ON p.id = f.pose_id "
        "WHERE f.user_id = :user_id ORDER BY p.popularity DESC, p.id DESC LIMIT :limit"
    ),
    explain_params={"user_id": 1, "limit": 50},
    index_column="user_id",
)

LIBRARY_SEARCH = HotQuery(
    name="library text search",
    index="ix_pose_library_search_tsv",
    sql=(
        "SELECT id FROM pose_library "
        "WHERE search_tsv @@ websearch_to_tsquery('english', :q) AND is_public "
        "ORDER BY ts_rank(search_tsv, websearch_to_tsquery('english', :q)) DESC, id DESC "
        "LIMIT :limit"
    ),
    explain_params={"q": "hands on hips", "limit": 50},
    dialect="postgresql",
)

LIBRARY_TAGS = HotQuery(
    name="library tags",
    index="ix_pose_library_search_tsv",
    sql=(
        # No ORDER BY: with one, an empty table's planner rightly walks the popularity index
        # instead; the question here is whether the GIN index can serve the tag condition.
        "SELECT id FROM pose_library WHERE search_tsv @@ plainto_tsquery('simple', :tag) "
        "AND CAST(tags AS jsonb) @> CAST(:tags AS jsonb) AND is_public"
    ),
    explain_params={"tag": "full-body", "tags": '["full-body"]'},
    dialect="postgresql",
)

ALL: tuple[HotQuery, ...] = (
    RECOVERY_SCAN,
    CLAIM_SCAN,
    PENDING_FOR_BACKEND,
    TOP_USERS,
    USER_GENERATIONS,
    LIBRARY_POPULAR,
    LIBRARY_CATEGORY,
    LIBRARY_NEWEST,
    LIBRARY_NAME,
    LIBRARY_FAVORITES,
    LIBRARY_SEARCH,
    LIBRARY_TAGS,
)
