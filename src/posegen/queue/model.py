"""The values that cross the queue's boundary: requests in, claimed jobs and outcomes out."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from posegen.db.models import GenerationStatus, GenerationType, PoseStatus

__all__ = [
    "ClaimedJob",
    "GenerationRequest",
    "GenerationStatus",
    "GenerationType",
    "HeartbeatResult",
    "PoseResult",
    "PoseStatus",
    "RecoveryOutcome",
    "SubmitResult",
    "variation_key",
]


@dataclass(frozen=True)
class GenerationRequest:
    """What a client asks for; ``submit`` turns it into one ``pending`` generation."""

    user_id: int
    project_id: int
    type: GenerationType
    #: library: selected pose ids in order; text: empty.
    pose_ids: list[int]
    #: Variations per pose (text: the number of images).
    variations: int
    prompt: str | None = None
    negative_prompt: str | None = None
    width: int = 512
    height: int = 512
    seed: int | None = None
    #: Higher runs first.
    priority: int = 0
    idempotency_key: str | None = None
    #: SHA-256 of the canonical request body, compared when an idempotency key is reused.
    request_hash: str | None = None
    #: W3C traceparent to store with the row; None: the current span's (if tracing is on).
    traceparent: str | None = None
    #: The backend it is accepted for (``None``: the deployment's ``serving_backend``) and the
    #: model it is bound to (``None``: pinned by the first claim, or the backend has none).
    backend: str | None = None
    model: str | None = None
    #: Export formats the worker makes with each pose, in the pose's own write.
    export_formats: tuple[str, ...] | None = None
    #: The background change of each result (``posegen.backgrounds.parse``'s form; None: none).
    background: dict[str, Any] | None = None

    @property
    def total_expected_poses(self) -> int:
        if self.type == GenerationType.TEXT:
            return self.variations
        return len(self.pose_ids) * self.variations


@dataclass(frozen=True)
class SubmitResult:
    generation_id: int
    #: False when an idempotency key matched an earlier identical request.
    created: bool


@dataclass(frozen=True)
class ClaimedJob:
    """A generation leased to one worker; ``lease_token`` fences every write about it."""

    id: int
    lease_token: int
    user_id: int
    project_id: int
    type: GenerationType
    pose_ids: list[int]
    variations: int
    prompt: str | None
    negative_prompt: str | None
    width: int
    height: int
    seed: int | None
    attempts: int
    max_attempts: int
    deadline_at: dt.datetime
    #: Variation keys already checkpointed by an earlier attempt: skip these on resume.
    done_keys: frozenset[str] = field(default_factory=frozenset)
    priority: int = 0
    total_expected_poses: int = 0
    #: The submit's trace context: the worker's spans for this generation continue it.
    traceparent: str | None = None
    #: What it is bound to (the claim pinned ``model`` if the request named none).
    backend: str = "posemap"
    model: str | None = None
    #: Export formats to make with each pose (None: none).
    export_formats: tuple[str, ...] | None = None
    #: The background change queued for each result as it lands (None: none).
    background: dict[str, Any] | None = None

    def variation_keys(self) -> list[tuple[int | None, int, str]]:
        """Every (pose_id, variation index, key) this generation must produce, in order."""
        poses: list[int | None] = (
            [None] if self.type == GenerationType.TEXT else list(self.pose_ids)
        )
        return [(p, i, variation_key(p, i)) for p in poses for i in range(self.variations)]


@dataclass(frozen=True)
class PoseResult:
    """One finished or permanently failed pose variation (the per-pose checkpoint)."""

    variation_key: str
    pose_id: int | None
    variation_index: int
    status: PoseStatus
    image_path: str | None = None
    thumbnail_path: str | None = None
    seed: int | None = None
    prompt_used: str | None = None
    duration_ms: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    meta: dict[str, Any] | None = None
    #: Bytes of the stored image and thumbnail (the owner's stored-result quota counts them).
    bytes: int | None = None
    #: The backend and model that made the image.
    backend: str | None = None
    model: str | None = None
    #: Exports made with the pose (``posegen.exporting.ExportFile``), written in its transaction.
    exports: tuple[Any, ...] = ()
    #: Follow-up work its new result needs (a background change asked at submit): each gets
    #: the new result's id and returns the ``posegen.queue.tasks.TaskSpec`` queued in the
    #: pose's own transaction.
    follow_ups: tuple[Any, ...] = ()


@dataclass(frozen=True)
class HeartbeatResult:
    """Outcome of one batched heartbeat: which leases are gone, which jobs were cancelled."""

    lost: frozenset[int]
    cancel_requested: frozenset[int]


@dataclass(frozen=True)
class RecoveryOutcome:
    requeued: int
    failed: int
    cancelled: int = 0
    #: False when another runner held the recovery lock, so this pass did nothing.
    ran: bool = True


def variation_key(pose_id: int | None, index: int) -> str:
    """The stable key of one variation: ``p{pose_id}-v{index}`` or ``text-v{index}``."""
    if index < 0:
        raise ValueError("variation index must be >= 0")
    return f"text-v{index}" if pose_id is None else f"p{pose_id}-v{index}"
