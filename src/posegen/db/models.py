"""The data model (tables, columns, indexes), identical on SQLite and PostgreSQL.

Table and column names are part of the interface (operators' SQL relies on them). Indexes are
chosen from the hot queries; live-state indexes are partial so they stay tiny on a table of
millions of finished rows. ``posegen db verify`` checks the ones listed in ``REQUIRED_INDEXES``.
"""

from __future__ import annotations

import datetime as dt
import enum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    Enum,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from posegen.db.types import BigIntPK, UTCDateTime, utcnow

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


#: SQLite otherwise hands out max(id) + 1, so the id of a deleted newest row comes back (a stale
#: link, cookie or event id would name a new row). PostgreSQL sequences never go back.
SQLITE_AUTOINCREMENT: dict[str, Any] = {"sqlite_autoincrement": True}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Role(enum.StrEnum):
    """The one definition of roles; the original compared "admin" with "ADMIN"."""

    USER = "user"
    ADMIN = "admin"


class GenerationStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL_STATUSES = (
    GenerationStatus.COMPLETED,
    GenerationStatus.PARTIAL,
    GenerationStatus.FAILED,
    GenerationStatus.CANCELLED,
)


class GenerationType(enum.StrEnum):
    LIBRARY = "library"
    TEXT = "text"


class PoseStatus(enum.StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"


class ProjectStatus(enum.StrEnum):
    ACTIVE = "active"
    ARCHIVED = "archived"


def _enum(cls: type[enum.StrEnum], name: str) -> Enum:
    # VARCHAR + CHECK on both engines: no PostgreSQL ENUM type to migrate when values change.
    return Enum(
        cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=16,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("credit_balance >= 0", name="credit_balance"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    email: Mapped[str] = mapped_column(String(320), unique=True)
    role: Mapped[Role] = mapped_column(_enum(Role, "role"), default=Role.USER)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Always the sum of the user's ``credit_ledger`` rows: written in the same transaction as
    #: each row (``posegen credits check`` proves it); the CHECK makes overdrawing impossible.
    #: Server default only: rows inserted by code that predates this column still work.
    credit_balance: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


class CreditKind(enum.StrEnum):
    GRANT = "grant"
    PURCHASE = "purchase"
    USAGE = "usage"
    REFUND = "refund"
    ADJUSTMENT = "adjustment"
    #: A plan change (amount 0, ``plan_id`` names the ``credit_plans`` row).
    PLAN = "plan"


class LedgerUnit(enum.StrEnum):
    """What a ledger row's amount counts: credits (the balance) or poses (a quota day)."""

    CREDITS = "credits"
    POSES = "poses"


class CreditLedger(Base):
    """Append-only: every change of a user's credit balance, signed. Rows are never updated
    or deleted (except with their user). References are plain ids, not foreign keys: deleting
    a project and its generations must not take the money's history with it."""

    __tablename__ = "credit_ledger"
    __table_args__ = (
        # A user's ledger newest first, in keyset pages; also the per-user sum.
        Index("ix_credit_ledger_user_id_id", "user_id", "id"),
        # A generation's rows (its charge, refunds, quota use): what refunds read.
        Index("ix_credit_ledger_generation_id", "generation_id"),
        CheckConstraint("amount <> 0 OR kind = 'plan'", name="amount_nonzero"),
        # Poses are counted against one local day's quota; credits against no day.
        CheckConstraint("(unit = 'poses') = (quota_day IS NOT NULL)", name="quota_day"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    amount: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[CreditKind] = mapped_column(_enum(CreditKind, "credit_kind"))
    generation_id: Mapped[int | None] = mapped_column(BigInteger)
    pose_id: Mapped[int | None] = mapped_column(BigInteger)
    payment_ref: Mapped[str | None] = mapped_column(String(200))
    #: What makes a second write of the same change a no-op (``usage:generation:17``).
    idempotency_key: Mapped[str] = mapped_column(String(200), unique=True)
    #: The admin who made a grant or adjustment; None for the system.
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: ``credits``: the row moves the balance (which is the sum of these rows); ``poses``: a
    #: quota plan's use (negative) or give-back (positive) on ``quota_day``, which moves
    #: ``quota_usage`` instead (its ``poses`` is minus the sum of these rows for the day).
    unit: Mapped[LedgerUnit] = mapped_column(
        _enum(LedgerUnit, "ledger_unit"), default=LedgerUnit.CREDITS, server_default="credits"
    )
    quota_day: Mapped[dt.date | None] = mapped_column(Date)
    #: The ``credit_plans`` row a ``plan`` row records.
    plan_id: Mapped[int | None] = mapped_column(BigInteger)


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    #: SHA-256 of the key. Keys are 256-bit random tokens, so a fast hash is enough.
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_used_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    revoked_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())


class Upload(Base):
    """An image a user uploaded: owned, content-addressed (one row per owner and content).

    The file lives at ``<uploads>/<user_id>/<sha256[:2]>/<sha256>.<ext>``; nothing a client
    sends ever names a path. Projects and library poses refer to a row by id.
    """

    __tablename__ = "uploads"
    __table_args__ = (
        UniqueConstraint("user_id", "sha256"),
        CheckConstraint("bytes >= 0 AND width >= 1 AND height >= 1", name="sizes"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    sha256: Mapped[str] = mapped_column(String(64))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(32))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebSession(Base):
    """One signed-in dashboard browser. The signed cookie carries a nonce; this row holds its
    hash, and signing out deletes the row, so a copied cookie stops working at once."""

    __tablename__ = "web_sessions"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    api_key_id: Mapped[int] = mapped_column(
        ForeignKey("api_keys.id", ondelete="CASCADE"), index=True
    )
    #: SHA-256 of the cookie's random nonce.
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(UTCDateTime())


class PoseCategory(Base):
    __tablename__ = "pose_categories"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    slug: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    sort_order: Mapped[int] = mapped_column(Integer, default=0)
    #: The parent category (a tree, ordered by ``sort_order`` among siblings); None: a root.
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("pose_categories.id", ondelete="SET NULL"), index=True
    )


class PoseLibrary(Base):
    __tablename__ = "pose_library"
    __table_args__ = (
        CheckConstraint(
            "keypoints IS NOT NULL OR controlnet_map_url IS NOT NULL OR map_upload_id IS NOT NULL",
            name="has_map_source",
        ),
        CheckConstraint(
            "difficulty IN ('beginner', 'intermediate', 'advanced')", name="difficulty"
        ),
        CheckConstraint("suitability IN ('any', 'female', 'male')", name="suitability"),
        CheckConstraint("framing IN ('full_body', 'half_body', 'portrait')", name="framing"),
        CheckConstraint(
            "use_count >= 0 AND favorite_count >= 0 AND rating_count >= 0 AND rating_sum >= 0",
            name="counts",
        ),
        CheckConstraint("popularity = use_count + favorite_count", name="popularity"),
        # A user's private pose (owner set) is never public: no public listing can show it.
        CheckConstraint("owner_user_id IS NULL OR is_public = false", name="owned_private"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    slug: Mapped[str] = mapped_column(String(100), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int] = mapped_column(
        ForeignKey("pose_categories.id", ondelete="RESTRICT"), index=True
    )
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    #: The pose in its canonical JSON shape (:mod:`posegen.pose.schema`): canvas, framing,
    #: people of COCO-18 body points (+ optional hands, face), normalised to the canvas.
    keypoints: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    controlnet_map_url: Mapped[str | None] = mapped_column(String(2048))
    #: An admin's upload used as the map; RESTRICT: an upload in use is never deleted under it.
    map_upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="RESTRICT"), index=True
    )
    preview_image_url: Mapped[str | None] = mapped_column(String(2048))
    is_public: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Discovery attributes (posegen.library.attributes holds the closed sets).
    difficulty: Mapped[str] = mapped_column(String(16), server_default=text("'beginner'"))
    suitability: Mapped[str] = mapped_column(String(16), server_default=text("'any'"))
    #: A copy of ``keypoints["framing"]`` (written together, so they always agree) for filters;
    #: set by the admin for a map-only pose.
    framing: Mapped[str] = mapped_column(String(16), server_default=text("'full_body'"))
    featured: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    premium: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    source: Mapped[str | None] = mapped_column(String(200))
    licence: Mapped[str | None] = mapped_column(String(200))
    author: Mapped[str | None] = mapped_column(String(200))
    #: Generations that used the pose (once each), counted in the submit transaction.
    use_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Always COUNT(pose_favorites) / COUNT and SUM(stars) of pose_ratings for the pose: written
    #: in the same transaction as each favourite or rating row (posegen.library.favorites).
    favorite_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    rating_count: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    rating_sum: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: use_count + favorite_count (a CHECK holds it so); a column so a sort index can hold it.
    popularity: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: The user whose private pose this is (``posegen.library.private``); NULL: a library pose.
    #: An owned pose is never public (the CHECK), so no listing of public poses can show it.
    owner_user_id: Mapped[int | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )


# Discovery sorts (keyset pages walk these; filters on few-valued columns ride along) and the
# category filter with the popular sort. PostgreSQL also has the full-text column and its GIN
# index, which the tag filter uses too (posegen.library.search; not models: engine-specific).
Index("ix_pose_library_popularity_id", PoseLibrary.popularity, PoseLibrary.id)
Index("ix_pose_library_created_at_id", PoseLibrary.created_at, PoseLibrary.id)
Index("ix_pose_library_name_id", PoseLibrary.name, PoseLibrary.id)
Index(
    "ix_pose_library_category_id_popularity_id",
    PoseLibrary.category_id,
    PoseLibrary.popularity,
    PoseLibrary.id,
)


class PoseFavorite(Base):
    """One user's favourite pose (at most one row per user and pose)."""

    __tablename__ = "pose_favorites"
    __table_args__ = (Index("ix_pose_favorites_user_id_pose_id", "user_id", "pose_id"),)

    pose_id: Mapped[int] = mapped_column(
        ForeignKey("pose_library.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PoseRating(Base):
    """One user's 1-5 star rating of a pose (at most one row per user and pose)."""

    __tablename__ = "pose_ratings"
    __table_args__ = (
        CheckConstraint("stars BETWEEN 1 AND 5", name="stars"),
        Index("ix_pose_ratings_user_id_pose_id", "user_id", "pose_id"),
    )

    pose_id: Mapped[int] = mapped_column(
        ForeignKey("pose_library.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    stars: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Project(Base):
    __tablename__ = "projects"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    #: An http(s) URL (fetched safely by the worker); uploads are named by ``subject_upload_id``.
    subject_image_url: Mapped[str | None] = mapped_column(String(2048))
    subject_upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[ProjectStatus] = mapped_column(
        _enum(ProjectStatus, "project_status"), default=ProjectStatus.ACTIVE
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PoseGeneration(Base):
    """The job table. Only ``posegen.queue`` writes its state columns."""

    __tablename__ = "pose_generations"
    __table_args__ = (
        UniqueConstraint("user_id", "idempotency_key"),
        CheckConstraint("variations >= 1", name="variations_positive"),
        CheckConstraint("total_expected_poses >= 1", name="total_positive"),
        CheckConstraint(
            "poses_completed >= 0 AND poses_failed >= 0 "
            "AND poses_completed + poses_failed <= total_expected_poses",
            name="pose_counts",
        ),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        CheckConstraint("lease_token >= 0", name="lease_token"),
        # Listing a user's generations, newest first.
        Index("ix_pose_generations_user_created", "user_id", "created_at"),
        Index("ix_pose_generations_project_id", "project_id"),
        Index("ix_pose_generations_created_at", "created_at"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    type: Mapped[GenerationType] = mapped_column(_enum(GenerationType, "generation_type"))
    prompt: Mapped[str | None] = mapped_column(Text)
    negative_prompt: Mapped[str | None] = mapped_column(Text)
    selected_pose_ids: Mapped[list[int]] = mapped_column(JSON, default=list)
    variations: Mapped[int] = mapped_column(Integer, default=1)
    total_expected_poses: Mapped[int] = mapped_column(Integer)
    width: Mapped[int] = mapped_column(Integer, default=512)
    height: Mapped[int] = mapped_column(Integer, default=512)
    seed: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[GenerationStatus] = mapped_column(
        _enum(GenerationStatus, "generation_status"), default=GenerationStatus.PENDING
    )
    priority: Mapped[int] = mapped_column(Integer, default=0)
    poses_completed: Mapped[int] = mapped_column(Integer, default=0)
    poses_failed: Mapped[int] = mapped_column(Integer, default=0)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Fencing token: only ever increases; every worker write is conditioned on it.
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    heartbeat_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: min(last heartbeat + lease, hard deadline): the one column recovery scans.
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    deadline_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error_kind: Mapped[str | None] = mapped_column(String(64))
    #: The sentence shown to the owner (from ``error_kind``); never raw exception text.
    error_message: Mapped[str | None] = mapped_column(Text)
    #: The raw failure text (exception, address, SQL): logs and admins only.
    error_detail: Mapped[str | None] = mapped_column(Text)
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_hash: Mapped[str | None] = mapped_column(String(64))
    #: Result bytes held against the owner's quota from submit until the generation ends.
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Credits charged at submit and refunded when it ended (``posegen.credits``).
    credit_charged: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    credit_refunded: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: W3C traceparent of the submit's span: the worker continues that trace (NULL: untraced).
    traceparent: Mapped[str | None] = mapped_column(String(64))
    #: The backend this generation was accepted for; only a worker serving it claims it.
    backend: Mapped[str] = mapped_column(
        String(16), default="posemap", server_default=text("'posemap'")
    )
    #: The model it is bound to (named in the request, else pinned by its first claim so a
    #: retry never mixes two models' images); NULL = any model of the backend, or none exists.
    model: Mapped[str | None] = mapped_column(String(200))
    #: The owner keeps it: the results retention (``posegen prune``) never deletes it.
    kept: Mapped[bool] = mapped_column(Boolean, default=False, server_default=text("false"))
    #: Export formats the worker makes with each pose, in the pose's own write (NULL: none).
    export_formats: Mapped[list[str] | None] = mapped_column(JSON)
    #: The background change made of each result (``posegen.backgrounds``; NULL: none).
    background: Mapped[dict[str, Any] | None] = mapped_column(JSON)


# Queue indexes live in their own migration revision (0002); declared here so the models are the
# whole truth and the migration test can compare them.
Index(
    "ix_pose_generations_claim",
    # Backend first: a worker's claim is an equality on it, then the queue order.
    PoseGeneration.backend,
    PoseGeneration.priority.desc(),
    PoseGeneration.run_after,
    PoseGeneration.id,
    postgresql_where=text("status = 'pending'"),
    sqlite_where=text("status = 'pending'"),
)
Index(
    "ix_pose_generations_recovery",
    PoseGeneration.lease_expires_at,
    postgresql_where=text("status = 'processing'"),
    sqlite_where=text("status = 'processing'"),
)


class GeneratedPose(Base):
    """One finished (or permanently failed) pose variation: the per-pose checkpoint."""

    __tablename__ = "generated_poses"
    __table_args__ = (UniqueConstraint("generation_id", "variation_key"), SQLITE_AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE")
    )
    variation_key: Mapped[str] = mapped_column(String(100))
    pose_id: Mapped[int | None] = mapped_column(
        ForeignKey("pose_library.id", ondelete="SET NULL"), index=True
    )
    variation_index: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[PoseStatus] = mapped_column(_enum(PoseStatus, "pose_status"))
    image_path: Mapped[str | None] = mapped_column(String(1024))
    thumbnail_path: Mapped[str | None] = mapped_column(String(1024))
    seed: Mapped[int | None] = mapped_column(BigInteger)
    prompt_used: Mapped[str | None] = mapped_column(Text)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[str | None] = mapped_column(Text)
    meta: Mapped[dict[str, Any] | None] = mapped_column("metadata", JSON)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Bytes of the stored image and thumbnail (counted in the owner's ``result_bytes``).
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    #: The backend and model that made this image (NULL on rows older than the binding).
    backend: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))


class GenerationEvent(Base):
    """Append-only event log per generation; the SSE stream replays it from Last-Event-ID."""

    __tablename__ = "generation_events"
    __table_args__ = (
        Index("ix_generation_events_generation_id_id", "generation_id", "id"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE")
    )
    kind: Mapped[str] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class GenerationLog(Base):
    """Log lines about one generation (from every process that touched it), for the dashboard.

    Bounded: each process keeps at most ``posegen.observe.dblog.MAX_LINES_PER_GENERATION`` lines
    per generation; rows go with their generation.
    """

    __tablename__ = "generation_logs"
    __table_args__ = (
        Index("ix_generation_logs_generation_id_id", "generation_id", "id"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE")
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    level: Mapped[str] = mapped_column(String(16))
    logger: Mapped[str] = mapped_column(String(100))
    message: Mapped[str] = mapped_column(Text)
    fields: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class UserGenerationStats(Base):
    """Per-user rollup, written in the same transaction as every queue state change."""

    __tablename__ = "user_generation_stats"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    generations: Mapped[int] = mapped_column(BigInteger, default=0)
    completed: Mapped[int] = mapped_column(BigInteger, default=0)
    partial: Mapped[int] = mapped_column(BigInteger, default=0)
    failed: Mapped[int] = mapped_column(BigInteger, default=0)
    cancelled: Mapped[int] = mapped_column(BigInteger, default=0)
    poses_completed: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Per-user limits live on this row because the submit transaction already upserts it: its
    # row lock serialises one user's submits, and active = generations - the terminal counts.
    #: The per-minute window: when it opened and how many submits it admitted. Deleting
    #: generations does not touch it.
    window_started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    window_submissions: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    #: Bytes of the user's stored results (images and thumbnails).
    result_bytes: Mapped[int] = mapped_column(BigInteger, default=0, server_default=text("0"))
    #: Estimated bytes of the user's active generations, released when each ends.
    reserved_bytes: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))


Index(
    "ix_user_generation_stats_top",
    UserGenerationStats.generations.desc(),
    UserGenerationStats.user_id,
)


class Worker(Base):
    """One row per worker process, so operators can see who is alive."""

    __tablename__ = "workers"

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    host: Mapped[str] = mapped_column(String(255))
    pid: Mapped[int] = mapped_column(Integer)
    concurrency: Mapped[int] = mapped_column(Integer)
    in_flight: Mapped[int] = mapped_column(Integer, default=0)
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    stopped_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: The lock the worker holds for its life ('pg-advisory' | 'flock'), which recovery probes
    #: to requeue a dead worker's generations in seconds; NULL: none (its leases decide).
    liveness: Mapped[str | None] = mapped_column(String(20))
    #: Why the worker stopped claiming (its backend is unavailable); NULL while it claims.
    paused_reason: Mapped[str | None] = mapped_column(String(500))
    paused_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: What it serves: it claims only generations bound to this backend (and model).
    backend: Mapped[str | None] = mapped_column(String(16))
    model: Mapped[str | None] = mapped_column(String(200))


class RecoveryRun(Base):
    """Outcome of each recovery pass (shown by ``GET /admin/recovery``)."""

    __tablename__ = "recovery_runs"
    __table_args__ = SQLITE_AUTOINCREMENT

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    runner: Mapped[str] = mapped_column(String(100))
    started_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    requeued: Mapped[int] = mapped_column(Integer, default=0)
    failed: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text)


#: Indexes the hot queries rely on; ``posegen db verify`` checks each exists.
REQUIRED_INDEXES: dict[str, str] = {
    "ix_pose_generations_claim": "pose_generations",
    "ix_pose_generations_recovery": "pose_generations",
    "ix_pose_generations_user_created": "pose_generations",
    "ix_user_generation_stats_top": "user_generation_stats",
    "uq_generated_poses_generation_id_variation_key": "generated_poses",
    "ix_generation_events_generation_id_id": "generation_events",
    "ix_pose_library_popularity_id": "pose_library",
    "ix_pose_library_created_at_id": "pose_library",
    "ix_pose_library_name_id": "pose_library",
    "ix_pose_library_category_id_popularity_id": "pose_library",
    "ix_pose_favorites_user_id_pose_id": "pose_favorites",
}


class UploadDetection(Base):
    """The person in an upload (a project's subject), found once by the vision helper: the
    canonical pose, the box and the mask, for framing and background changes."""

    __tablename__ = "upload_detections"

    upload_id: Mapped[int] = mapped_column(
        BigIntPK, ForeignKey("uploads.id", ondelete="CASCADE"), primary_key=True
    )
    #: ``found`` or ``no-person``.
    status: Mapped[str] = mapped_column(String(16))
    #: Canonical pose JSON (canvas = the upload's size); NULL when no person was found.
    pose: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: ``[x0, y0, x1, y1]`` normalised to the upload.
    box: Mapped[list[float] | None] = mapped_column(JSON)
    #: The person mask as a grayscale PNG at the upload's size.
    mask_png: Mapped[bytes | None] = mapped_column(LargeBinary)
    warnings: Mapped[list[dict[str, str]]] = mapped_column(JSON, default=list)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


#: Engine-specific text search made by the ``k_library`` migration, not by these models: a
#: generated tsvector column and GIN indexes on PostgreSQL, an FTS5 table (and its shadow
#: tables) on SQLite. ``posegen.library.search`` queries them.
SEARCH_OBJECTS = frozenset({"search_tsv", "ix_pose_library_search_tsv"})


def in_models(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
    """Alembic ``include_object``: leave the engine-specific search objects out of comparisons."""
    return not (name in SEARCH_OBJECTS or (name or "").startswith("pose_library_fts"))


# --- community requests (``posegen.community``) ---------------------------------------------


class RequestStatus(enum.StrEnum):
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    APPROVED = "approved"
    REJECTED = "rejected"
    COMPLETED = "completed"


#: Statuses of a request still being worked on: votes count, a duplicate name is refused.
ACTIVE_REQUEST_STATUSES = (
    RequestStatus.OPEN,
    RequestStatus.APPROVED,
    RequestStatus.IN_PROGRESS,
)


class PoseRequest(Base):
    """A user's request for a library pose; others vote, admins review it."""

    __tablename__ = "pose_requests"
    __table_args__ = (
        CheckConstraint("vote_count >= 0", name="vote_count"),
        # Lists: by status, most votes first or newest first (keyset on the id).
        Index("ix_pose_requests_status_votes", "status", "vote_count", "id"),
        Index("ix_pose_requests_status_id", "status", "id"),
        Index("ix_pose_requests_requester_id_id", "requester_id", "id"),
        # One active request per user and name: a second is refused, even when two race.
        Index(
            "uq_pose_requests_active_name",
            "requester_id",
            "name_key",
            unique=True,
            postgresql_where=text("status IN ('open', 'approved', 'in_progress')"),
            sqlite_where=text("status IN ('open', 'approved', 'in_progress')"),
        ),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    requester_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(200))
    #: The name folded (lower case, single spaces): what "the same name" means.
    name_key: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    category_id: Mapped[int | None] = mapped_column(
        ForeignKey("pose_categories.id", ondelete="SET NULL"), index=True
    )
    use_case: Mapped[str] = mapped_column(Text, default="")
    #: The requester's own upload; deleting it only clears the reference.
    reference_upload_id: Mapped[int | None] = mapped_column(
        ForeignKey("uploads.id", ondelete="SET NULL"), index=True
    )
    status: Mapped[RequestStatus] = mapped_column(
        _enum(RequestStatus, "request_status"), default=RequestStatus.OPEN
    )
    admin_note: Mapped[str | None] = mapped_column(Text)
    fulfilled_pose_id: Mapped[int | None] = mapped_column(
        ForeignKey("pose_library.id", ondelete="SET NULL"), index=True
    )
    #: Always the number of ``pose_request_votes`` rows: changed in the vote's transaction.
    vote_count: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PoseRequestVote(Base):
    """One vote per user per request (never the requester's own)."""

    __tablename__ = "pose_request_votes"

    request_id: Mapped[int] = mapped_column(
        ForeignKey("pose_requests.id", ondelete="CASCADE"), primary_key=True
    )
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PoseRequestEvent(Base):
    """Append-only history of a request: created, then each status change with its note."""

    __tablename__ = "pose_request_events"
    __table_args__ = (
        Index("ix_pose_request_events_request_id_id", "request_id", "id"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    request_id: Mapped[int] = mapped_column(ForeignKey("pose_requests.id", ondelete="CASCADE"))
    status: Mapped[RequestStatus] = mapped_column(_enum(RequestStatus, "request_event_status"))
    note: Mapped[str | None] = mapped_column(Text)
    #: The admin who made the change; NULL for the requester's own creation or the CLI.
    actor_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    pose_id: Mapped[int | None] = mapped_column(ForeignKey("pose_library.id", ondelete="SET NULL"))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class PlanKind(enum.StrEnum):
    PAYG = "payg"
    QUOTA = "quota"


class CreditPlan(Base):
    """Append-only: every plan a user was put on, by whom. A user's plan is their newest row
    (none: pay as you go). A quota plan admits ``daily_poses`` poses per local day (the zone is
    ``POSEGEN_QUOTA_TIMEZONE``) up to and including the local date ``valid_until``; after that the
    user pays as they go again."""

    __tablename__ = "credit_plans"
    __table_args__ = (
        Index("ix_credit_plans_user_id_id", "user_id", "id"),
        CheckConstraint(
            "(plan = 'payg' AND daily_poses IS NULL AND valid_until IS NULL) OR "
            "(plan = 'quota' AND daily_poses >= 1 AND valid_until IS NOT NULL)",
            name="plan_shape",
        ),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    plan: Mapped[PlanKind] = mapped_column(_enum(PlanKind, "plan_kind"))
    daily_poses: Mapped[int | None] = mapped_column(Integer)
    valid_until: Mapped[dt.date | None] = mapped_column(Date)
    #: The admin who set it; None for the system.
    actor_id: Mapped[int | None] = mapped_column(BigInteger)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class QuotaUsage(Base):
    """Poses a quota user consumed on one local day, counted in the submit transaction by a
    conditional upsert (its row lock admits exactly the quota). Keyed by the local date, so a
    new day is a new row: nothing resets, nothing races at midnight."""

    __tablename__ = "quota_usage"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    day: Mapped[dt.date] = mapped_column(Date, primary_key=True)
    poses: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class CreditHourly(Base):
    """Per-user, per-hour credit rollup (charged at submit, refunded), written in the same
    transaction as the ledger rows it counts: the admin metrics sum these rows over a period
    instead of scanning generations."""

    __tablename__ = "credit_hourly"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    #: The UTC hour the rows fell in (minutes and seconds zero).
    hour: Mapped[dt.datetime] = mapped_column(UTCDateTime(), primary_key=True)
    charged: Mapped[int] = mapped_column(BigInteger, default=0)
    refunded: Mapped[int] = mapped_column(BigInteger, default=0)


Index("ix_credit_hourly_hour", CreditHourly.hour)


class TaskStatus(enum.StrEnum):
    PENDING = "pending"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"


class GenerationTask(Base):
    """Work on a generation after (or beside) its poses: exports on demand now, background
    changes later. Claimed, leased, fenced and recovered by ``posegen.queue.tasks`` only."""

    __tablename__ = "generation_tasks"
    __table_args__ = (
        # One task per (generation, key): asking twice for the same work queues it once.
        UniqueConstraint("generation_id", "task_key"),
        CheckConstraint("attempts >= 0 AND max_attempts >= 1", name="attempts"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE")
    )
    #: The one result it works on (NULL: the whole generation, e.g. one export format).
    result_id: Mapped[int | None] = mapped_column(
        ForeignKey("generated_poses.id", ondelete="CASCADE")
    )
    #: 'export' (a worker handler registered under this name runs it).
    kind: Mapped[str] = mapped_column(String(16))
    #: The idempotency key within the generation, e.g. ``export:instagram_story``.
    task_key: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[TaskStatus] = mapped_column(
        _enum(TaskStatus, "task_status"), default=TaskStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int] = mapped_column(Integer, default=3)
    run_after: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    #: Fencing token: only ever increases; every worker write is conditioned on it.
    lease_token: Mapped[int] = mapped_column(BigInteger, default=0)
    leased_by: Mapped[str | None] = mapped_column(String(100))
    lease_expires_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    error_kind: Mapped[str | None] = mapped_column(String(64))
    error_message: Mapped[str | None] = mapped_column(Text)
    error_detail: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
    started_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    completed_at: Mapped[dt.datetime | None] = mapped_column(UTCDateTime())
    #: Credits a failure of this task pays back (charged when queued, or the part of the
    #: generation's price that covered it); 0: free.
    credit_charged: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    #: Times it was queued for money: the round in its ledger keys (a failed task queued
    #: again is charged again, and refunded again at most once).
    charges: Mapped[int] = mapped_column(Integer, server_default=text("0"))


Index(
    "ix_generation_tasks_claim",
    GenerationTask.run_after,
    GenerationTask.id,
    postgresql_where=text("status = 'pending'"),
    sqlite_where=text("status = 'pending'"),
)
Index(
    "ix_generation_tasks_recovery",
    GenerationTask.lease_expires_at,
    postgresql_where=text("status = 'processing'"),
    sqlite_where=text("status = 'processing'"),
)


class ResultExport(Base):
    """One exported file of one result (a format: size, framing, file type). Written in the
    same transaction as its pose (exports at generation time) or its task (on demand)."""

    __tablename__ = "result_exports"
    __table_args__ = (
        UniqueConstraint("result_id", "variant_key", "format"),
        SQLITE_AUTOINCREMENT,
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("generated_poses.id", ondelete="CASCADE"))
    #: Denormalised for the archive and deletion queries (one generation's exports).
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE"), index=True
    )
    format: Mapped[str] = mapped_column(String(64))
    #: What it was made from: ``''`` the original result, else the background variant's key.
    variant_key: Mapped[str] = mapped_column(String(200), default="", server_default="")
    #: The ``result_variants`` row it was made from (None: the original); a plain id, both
    #: rows go with their result.
    variant_id: Mapped[int | None] = mapped_column(BigInteger)
    #: The store's relative name of the file (like ``generated_poses.image_path``).
    path: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    content_type: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)


class ResultVariant(Base):
    """A changed image of one result (a new background), stored beside the original, which is
    kept. Written in the fenced completion of the task that made it."""

    __tablename__ = "result_variants"
    __table_args__ = (UniqueConstraint("result_id", "variant_key"), SQLITE_AUTOINCREMENT)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    result_id: Mapped[int] = mapped_column(ForeignKey("generated_poses.id", ondelete="CASCADE"))
    generation_id: Mapped[int] = mapped_column(
        ForeignKey("pose_generations.id", ondelete="CASCADE"), index=True
    )
    #: ``background``.
    kind: Mapped[str] = mapped_column(String(16))
    #: What makes it (the task key): one variant per distinct change of a result.
    variant_key: Mapped[str] = mapped_column(String(200))
    params: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    image_path: Mapped[str] = mapped_column(String(1024))
    thumbnail_path: Mapped[str] = mapped_column(String(1024))
    bytes: Mapped[int] = mapped_column(BigInteger)
    width: Mapped[int] = mapped_column(Integer)
    height: Mapped[int] = mapped_column(Integer)
    #: The task that made it (a plain id: the task row may be gone with a retried request).
    task_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(UTCDateTime(), default=utcnow)
