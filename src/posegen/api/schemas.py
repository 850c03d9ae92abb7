"""Request and response bodies. JSON is camelCase (as the seed's responses were); Python is not.

Request models forbid unknown fields, so a typo is a 422 instead of a silently ignored option.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from posegen.backends import RequestBackend
from posegen.db.models import GenerationStatus, GenerationType, PoseStatus, ProjectStatus, Role

T = TypeVar("T")

#: 2**32 - 1: the seed range every backend (torch, ComfyUI) accepts.
MAX_SEED = 4_294_967_295
#: Ids are BIGINT; a larger number can never match and must not reach the driver.
MAX_ID = 2**63 - 1
Id = Annotated[int, Field(ge=1, le=MAX_ID)]


class ApiModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class RequestModel(ApiModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        # JSON bodies are checked by the input guard; multipart fields arrive here unchecked, and
        # PostgreSQL text cannot hold NUL (the insert would fail as a 500).
        if _has_nul(value):
            raise ValueError("text must not contain NUL characters")
        return value


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, list | tuple):
        return any(_has_nul(v) for v in value)
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    return False


class Problem(BaseModel):
    """An RFC 9457 problem document; ``kind`` repeats the last segment of ``type``."""

    type: str
    title: str
    status: int
    detail: str
    kind: str
    errors: list[dict[str, Any]] | None = None


class Page(ApiModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = Field(
        description="Pass as `cursor` to get the next page; null on the last page."
    )


# --- library -------------------------------------------------------------------------------

#: A pose: ``{"canvas": [w, h] (or "aspect"), "framing", "people": [{"body": 18 x [x, y, c] |
#: null, "hands"?: [left, right] x 21, "face"?: 70}]}``, points normalised to the canvas; or
#: today's list of 18 ``[x, y]`` points (drawn on a square). Checked by :mod:`posegen.pose`
#: (422 ``invalid-pose`` naming the bad part); stored and returned in the canonical shape.
Keypoints = Annotated[
    dict[str, Any] | list[Any],
    Field(
        description="The pose (canvas, framing, people: body 18 points, optional hands 2x21, "
        "face 70), or a list of 18 [x, y] points normalised to a square.",
    ),
]
Tag = Annotated[str, Field(min_length=1, max_length=50)]
_EXAMPLE_POINTS: dict[str, Any] = {
    "canvas": [512, 768],
    "framing": "full_body",
    "people": [{"body": [[0.5, 0.1 + i * 0.04, 1.0] for i in range(17)] + [None]}],
}


Difficulty = Literal["beginner", "intermediate", "advanced"]
Suitability = Literal["any", "female", "male"]
Framing = Literal["full_body", "half_body", "portrait"]


class CategoryOut(ApiModel):
    id: int
    slug: str
    name: str
    description: str
    sort_order: int
    pose_count: int = Field(description="Poses you can see in this category itself.")
    parent_id: int | None = Field(default=None, description="The parent category; null: a root.")
    depth: int = Field(default=0, description="0 for a root category.")
    total_pose_count: int = Field(
        default=0, description="Poses you can see in this category and every one below it."
    )
    children: list[int] = Field(default_factory=list, description="Child category ids, in order.")


class PoseOut(ApiModel):
    id: int
    slug: str
    name: str
    description: str
    category_id: int
    category_slug: str
    tags: list[str]
    keypoints: dict[str, Any] | None = Field(description="The pose, canonical shape.")
    controlnet_map_url: str | None
    map_upload_id: int | None = Field(default=None, description="The admin upload used as map.")
    preview_image_url: str | None
    is_public: bool
    map_url: str = Field(description="API path of the pose map PNG.")
    created_at: dt.datetime
    difficulty: Difficulty = "beginner"
    suitability: Suitability = "any"
    framing: Framing = Field(default="full_body", description="The pose JSON's framing.")
    featured: bool = False
    premium: bool = False
    source: str | None = None
    licence: str | None = None
    author: str | None = None
    popularity: int = Field(default=0, description="Generations that used it + favourites.")
    use_count: int = Field(default=0, description="Generations that used it (once each).")
    favorite_count: int = 0
    rating_average: float | None = Field(default=None, description="Mean stars; null: unrated.")
    rating_count: int = 0
    is_favorite: bool = Field(default=False, description="Whether it is one of your favourites.")
    my_rating: int | None = Field(default=None, description="Your stars; null: not rated.")


class FavoriteOut(ApiModel):
    pose_id: int
    is_favorite: bool
    favorite_count: int
    popularity: int


class RatingIn(RequestModel):
    stars: int = Field(strict=True, ge=1, le=5, description="1 to 5 (a JSON number).")


class RatingOut(ApiModel):
    pose_id: int
    stars: int | None = Field(description="Your stars; null after a DELETE.")
    rating_average: float | None
    rating_count: int


class PoseWrite(RequestModel):
    slug: Annotated[str, Field(min_length=1, max_length=100)] | None = None
    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    description: Annotated[str, Field(max_length=2000)] | None = None
    category: Annotated[str, Field(min_length=1, max_length=64)] | Id | None = Field(
        default=None, description="Category slug or id."
    )
    tags: Annotated[list[Tag], Field(max_length=30)] | None = None
    keypoints: Keypoints | None = None
    controlnet_map_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = Field(
        default=None, description="An http(s) URL; stored files are named by `mapUploadId`."
    )
    map_upload_id: Id | None = Field(default=None, description="One of your uploads (admin).")
    preview_image_url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    is_public: bool | None = None
    difficulty: Difficulty | None = None
    suitability: Suitability | None = None
    framing: Framing | None = Field(
        default=None, description="Written into the pose JSON too (they are one value)."
    )
    featured: bool | None = None
    premium: bool | None = None
    source: Annotated[str, Field(max_length=200)] | None = None
    licence: Annotated[str, Field(max_length=200)] | None = None
    author: Annotated[str, Field(max_length=200)] | None = None


class PoseCreate(PoseWrite):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "Hero",
                    "category": "standing",
                    "tags": ["bold"],
                    "keypoints": _EXAMPLE_POINTS,
                }
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=200)]
    category: Annotated[str, Field(min_length=1, max_length=64)] | Id = Field(
        description="Category slug or id."
    )


# --- projects ------------------------------------------------------------------------------

SubjectUrl = Annotated[
    str, Field(min_length=1, max_length=2048, description="An http(s) URL of the subject image.")
]
SubjectUpload = Annotated[
    int, Field(ge=1, le=MAX_ID, description="One of your uploads (`POST /uploads`).")
]


class ProjectCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"name": "Summer shoot", "subjectImageUrl": "https://cdn.example.com/me.png"}
            ]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=200)]
    subject_image_url: SubjectUrl | None = None
    subject_upload_id: SubjectUpload | None = None


class ProjectUpdate(RequestModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "Renamed"}]})

    name: Annotated[str, Field(min_length=1, max_length=200)] | None = None
    subject_image_url: SubjectUrl | None = None
    subject_upload_id: SubjectUpload | None = None


class ProjectOut(ApiModel):
    id: int
    name: str
    subject_image_url: str | None
    subject_upload_id: int | None
    status: ProjectStatus
    created_at: dt.datetime
    updated_at: dt.datetime


# --- uploads -------------------------------------------------------------------------------


class UploadOut(ApiModel):
    id: int
    sha256: str
    width: int
    height: int
    bytes: int
    content_type: str
    created_at: dt.datetime
    content_url: str = Field(description="API path of the stored bytes.")


# --- generations ---------------------------------------------------------------------------

Prompt = Annotated[str, Field(min_length=3, max_length=500)]
Side = Annotated[int, Field(ge=64, le=2048, multiple_of=8)]


#: An export format's name (the renderer's table plus the operator's additions).
ExportFormatName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class ExportOut(ApiModel):
    format: str
    url: str
    width: int
    height: int
    bytes: int
    content_type: str


class ExportsRequest(RequestModel):
    """Formats to export a finished generation's completed results in."""

    model_config = ConfigDict(json_schema_extra={"examples": [{"formats": ["instagram_story"]}]})

    formats: Annotated[list[ExportFormatName], Field(min_length=1, max_length=32)]


class ExportQueued(ApiModel):
    format: str
    #: pending | processing | completed | failed (the format's task; completed: every result
    #: already has it).
    status: str
    #: True when this request queued the work (False: it existed or was already queued).
    queued: bool
    task_id: int | None


class ExportsAccepted(ApiModel):
    generation_id: int
    formats: list[ExportQueued]
    events_url: str


class GenerationCreate(RequestModel):
    """Library poses (``poseIds``) or a text description of the pose (``textPrompt``)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"projectId": 1, "poseIds": [1, 2], "variations": 2}]}
    )

    project_id: Id
    pose_ids: Annotated[list[Id], Field(min_length=1)] | None = None
    text_prompt: Prompt | None = None
    prompt: Prompt | None = Field(default=None, description="Extra prompt for library poses.")
    negative_prompt: Annotated[str, Field(max_length=500)] | None = None
    variations: Annotated[int, Field(ge=1)] = 1
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] | None = None
    width: Side | None = None
    height: Side | None = None
    priority: Annotated[int, Field(ge=-100, le=100)] | None = Field(
        default=None, description="Admins only; higher runs first."
    )
    backend: RequestBackend | None = Field(
        default=None,
        description="The backend to run on (default: the deployment's). Refused with "
        "`backend-unavailable` when no worker has served it recently.",
    )
    model: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        default=None,
        description="A model of that backend (weights file or folder name, ComfyUI checkpoint); "
        "default: whichever model first picks it up.",
    )
    export_formats: Annotated[list[ExportFormatName], Field(min_length=1, max_length=32)] | None = (
        Field(
            default=None,
            description="Export formats the worker makes with each pose, in the pose's own write "
            "(names from `GET /exports/formats`); 422 `unknown-export-format` otherwise.",
        )
    )
    background: dict[str, Any] | None = Field(
        default=None,
        description='Change each result\'s background: `{"mode": "solid", "color": "#RRGGBB"}`, '
        '`{"mode": "image", "uploadId": n}`, `{"mode": "blur", "radius"?: px}` or '
        '`{"mode": "prompt", "prompt": "..."}` (backends that can inpaint). The changed image '
        "is a variant beside the original; priced by `POSEGEN_CREDITS_BACKGROUND_SURCHARGE`.",
    )

    @field_validator("pose_ids")
    @classmethod
    def _unique(cls, value: list[int] | None) -> list[int] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("poseIds must not repeat a pose (ask for more variations instead)")
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> GenerationCreate:
        if (self.pose_ids is None) == (self.text_prompt is None):
            raise ValueError("give exactly one of poseIds or textPrompt")
        if self.text_prompt is not None and self.prompt is not None:
            raise ValueError("prompt goes with poseIds; textPrompt is the whole prompt")
        return self


class GenerationOut(ApiModel):
    id: int
    project_id: int
    user_id: int
    type: GenerationType
    status: GenerationStatus
    prompt: str | None
    negative_prompt: str | None
    pose_ids: list[int]
    variations: int
    total: int
    completed: int
    failed: int
    percent: float
    eta_seconds: float | None
    width: int
    height: int
    seed: int | None
    priority: int
    attempts: int
    max_attempts: int
    cancel_requested: bool
    error_kind: str | None
    #: A sentence for the owner, chosen by ``error_kind``; never raw exception text.
    error_message: str | None
    #: The raw failure text, for admins only (absent for everyone else).
    error_detail: str | None = None
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    events_url: str
    results_url: str
    backend: str = Field(description="The backend it is bound to.")
    model: str | None = Field(description="The model it is bound to, once known.")
    preview: bool = Field(
        description="True: its images are skeleton previews (posemap), not a model's pictures."
    )
    warning: str | None = Field(
        default=None, description="Set on submit when the generation may wait long."
    )
    credit_charged: int = Field(description="Credits charged at submit.")
    credit_refunded: int = Field(description="Credits refunded for poses that did not complete.")
    kept: bool = Field(
        default=False,
        description="The owner keeps it: the results retention never deletes it "
        "(PUT/DELETE /generations/{id}/keep).",
    )
    export_formats: list[str] = Field(
        default_factory=list, description="Export formats made with each pose (`exportFormats`)."
    )
    background: dict[str, Any] | None = Field(
        default=None, description="The background change made of each result (`background`)."
    )


class VariantOut(ApiModel):
    id: int
    kind: str = Field(description="`background`.")
    background: dict[str, Any] = Field(description="The change that made it.")
    image_url: str
    thumbnail_url: str
    width: int
    height: int
    bytes: int
    created_at: dt.datetime
    exports: list[ExportOut] = Field(
        default_factory=list, description="The variant's exports (the formats its result has)."
    )


class BackgroundTaskOut(ApiModel):
    generation_id: int
    result_id: int
    task_id: int
    task_key: str
    status: str = Field(description="pending, processing, completed or failed.")
    queued: bool = Field(description="True when this request queued it (and charged it).")
    background: dict[str, Any]
    price: int = Field(description="Credits one change costs (charged when queued).")
    events_url: str


class ResultOut(ApiModel):
    id: int
    variation_key: str
    pose_id: int | None
    variation_index: int
    status: PoseStatus
    seed: int | None
    prompt_used: str | None
    duration_ms: int | None
    error_kind: str | None
    error_message: str | None
    #: The raw failure text, for admins only (absent for everyone else).
    error_detail: str | None = None
    image_url: str | None
    thumbnail_url: str | None
    created_at: dt.datetime
    backend: str | None = Field(description="The backend that made it.")
    model: str | None = Field(description="The model that made it (none for posemap).")
    preview: bool = Field(description="True: a skeleton preview, not a model's picture.")
    exports: list[ExportOut] = Field(
        default_factory=list, description="The result's exports, one per format made."
    )
    variants: list[VariantOut] = Field(
        default_factory=list,
        description="Changed images of this result (a new background), beside the original.",
    )


class EventOut(ApiModel):
    """The ``data`` of one server-sent event; the event's ``id`` is the event row id."""

    id: int
    kind: str
    generation_id: int
    data: dict[str, Any]
    created_at: dt.datetime


# --- admin and health ----------------------------------------------------------------------


class RecoveryRunOut(ApiModel):
    id: int
    runner: str
    started_at: dt.datetime
    finished_at: dt.datetime | None
    requeued: int
    failed: int
    error: str | None


class RecoveryOut(ApiModel):
    queued: int
    processing: int
    stuck: int
    last_run: RecoveryRunOut | None


class RecoveryRunResult(ApiModel):
    requeued: int
    failed: int
    cancelled: int
    ran: bool = Field(description="False when another runner held the recovery lock.")


class WorkerOut(ApiModel):
    id: str
    host: str
    pid: int
    concurrency: int
    in_flight: int
    started_at: dt.datetime
    last_seen_at: dt.datetime
    stopped_at: dt.datetime | None
    alive: bool
    #: Alive but claiming nothing: its backend is unavailable (circuit breaker open).
    paused: bool = False
    paused_reason: str | None = None
    paused_at: dt.datetime | None = None
    backend: str | None = None
    model: str | None = None


class UserOut(ApiModel):
    id: int
    name: str
    email: str
    role: Role
    active_keys: int | None = None


class UserCreate(RequestModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"name": "Ada", "email": "ada@example.com", "role": "user"}]
        }
    )

    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: Annotated[str, Field(min_length=3, max_length=320)]
    role: Role = Role.USER


class NewKeyOut(ApiModel):
    user: UserOut
    api_key: str = Field(description="Shown once; only its SHA-256 is stored.")
    prefix: str


class RevokedOut(ApiModel):
    revoked: int


class HealthOut(ApiModel):
    status: Literal["ok"]


class ReadyOut(ApiModel):
    status: Literal["ready"]
    database: Literal["ok"]
    migrations: Literal["head"]


class CreditsOut(ApiModel):
    balance: int
    plan: str = Field(
        description="`payg` (pay as you go) or `quota` (a daily number of poses, no credits "
        "charged, until its end date; an expired quota plan reads `payg`)."
    )
    quota_left_today: int | None = Field(
        description="Poses left today (in `POSEGEN_QUOTA_TIMEZONE`) on a quota plan; null on payg."
    )


class LedgerEntryOut(ApiModel):
    id: int
    amount: int
    kind: str
    generation_id: int | None
    pose_id: int | None
    payment_ref: str | None
    actor_id: int | None
    reason: str | None
    created_at: dt.datetime
    unit: Literal["credits", "poses"] = Field(
        description="credits: moves the balance; poses: a quota plan's use (negative) or poses "
        "given back (positive) on quotaDay."
    )
    quota_day: dt.date | None = Field(description="The local day a poses entry counts on.")
    plan_id: int | None = Field(description="The plan change a `plan` entry records.")


class CreditGrant(RequestModel):
    amount: int = Field(ge=-(10**12), le=10**12, description="Credits to add (negative: remove).")
    kind: Literal["grant", "adjustment", "purchase"] = "grant"
    reason: str | None = Field(default=None, max_length=500)
    payment_ref: str | None = Field(default=None, max_length=200)


class CreditGrantOut(ApiModel):
    user_id: int
    balance: int
    applied: bool = Field(description="False when the Idempotency-Key was already used.")


class CreditUsageOut(ApiModel):
    total_spent: int = Field(description="Credits charged minus refunded, all time.")
    last_30_days: int
    average_per_generation: float | None


class TopPoseOut(ApiModel):
    pose_id: int
    pose_name: str
    usage_count: int
    preview_url: str | None


class StatsOut(ApiModel):
    total_poses_generated: int = Field(description="Poses written, failed ones included.")
    total_projects: int = Field(description="Active projects.")
    recent_generations: int = Field(description="Generations submitted in the last 7 days.")
    credit_usage: CreditUsageOut
    top_used_poses: list[TopPoseOut]


class PlanIn(RequestModel):
    """A quota plan (`quota` and `until` both) or pay as you go (`plan: payg`, neither)."""

    plan: Literal["payg", "quota"]
    quota: int | None = Field(default=None, ge=1, le=1_000_000, description="Poses per day.")
    until: dt.date | None = Field(
        default=None, description="Last local date (inclusive) the quota plan applies."
    )
    reason: str | None = Field(default=None, max_length=500)


class PlanOut(ApiModel):
    user_id: int
    plan: str
    quota: int | None
    until: dt.date | None
