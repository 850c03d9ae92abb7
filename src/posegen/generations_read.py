"""Read-side of generations for the API: views, lists, events, results, limit counters.

Job state is written only by :mod:`posegen.queue`; this module never changes it.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, case, func, select

from posegen import pagination
from posegen.backends import PREVIEW_BACKENDS
from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import (
    TERMINAL_STATUSES,
    GeneratedPose,
    GenerationEvent,
    GenerationStatus,
    GenerationTask,
    GenerationType,
    PoseGeneration,
    PoseStatus,
    TaskStatus,
)
from posegen.db.types import utcnow
from posegen.exceptions import NotFound
from posegen.storage import StoredFile, make_storage

log = logging.getLogger(__name__)

ACTIVE_STATUSES = (GenerationStatus.PENDING, GenerationStatus.PROCESSING)
#: Events after which a stream ends: the generation's end, and ``tasks_settled`` (its follow-up
#: tasks are all done). A later ``task_queued`` reopens the stream (a reconnect replays it).
TERMINAL_EVENT_KINDS = frozenset(s.value for s in TERMINAL_STATUSES) | {"tasks_settled"}


def stream_status_column() -> Any:
    """The status an event stream follows: the generation's, but ``processing`` while an
    ended generation still has follow-up tasks open (their events are still to come)."""
    open_tasks = (
        select(GenerationTask.id)
        .where(
            GenerationTask.generation_id == PoseGeneration.id,
            GenerationTask.status.in_((TaskStatus.PENDING, TaskStatus.PROCESSING)),
        )
        .exists()
    )
    return case((open_tasks, GenerationStatus.PROCESSING.value), else_=PoseGeneration.status)


G = PoseGeneration


@dataclass(frozen=True)
class GenerationView:
    id: int
    user_id: int
    project_id: int
    type: GenerationType
    status: GenerationStatus
    prompt: str | None
    negative_prompt: str | None
    pose_ids: list[int]
    variations: int
    total: int
    completed: int
    failed: int
    width: int
    height: int
    seed: int | None
    priority: int
    attempts: int
    max_attempts: int
    cancel_requested: bool
    created_at: dt.datetime
    started_at: dt.datetime | None
    completed_at: dt.datetime | None
    error_kind: str | None
    error_message: str | None
    #: Raw failure text: admins only (the owner sees ``error_message``, a sentence per kind).
    error_detail: str | None = None
    backend: str = "posemap"
    model: str | None = None

    @property
    def preview(self) -> bool:
        """Its images are previews (a skeleton drawing), not a model's pictures."""
        return self.backend in PREVIEW_BACKENDS

    credit_charged: int = 0
    credit_refunded: int = 0
    #: The owner keeps it past the results retention.
    kept: bool = False
    #: Export formats made with each pose (empty: none asked at submit).
    export_formats: tuple[str, ...] = ()
    #: The background change made of each result (stored form; None: none asked at submit).
    background: dict[str, Any] | None = None

    @property
    def percent(self) -> float:
        return round(100.0 * (self.completed + self.failed) / max(self.total, 1), 1)

    def eta_seconds(self, now: dt.datetime | None = None) -> float | None:
        """Remaining time at the rate seen so far; None until one pose is done."""
        done = self.completed + self.failed
        if self.status != GenerationStatus.PROCESSING or self.started_at is None or done == 0:
            return None
        elapsed = ((now or utcnow()) - self.started_at).total_seconds()
        return round(max(elapsed, 0.0) / done * (self.total - done), 1)


_COLUMNS = (
    G.id,
    G.user_id,
    G.project_id,
    G.type,
    G.status,
    G.prompt,
    G.negative_prompt,
    G.selected_pose_ids,
    G.variations,
    G.total_expected_poses,
    G.poses_completed,
    G.poses_failed,
    G.width,
    G.height,
    G.seed,
    G.priority,
    G.attempts,
    G.max_attempts,
    G.cancel_requested,
    G.created_at,
    G.started_at,
    G.completed_at,
    G.error_kind,
    G.error_message,
    G.error_detail,
    G.backend,
    G.model,
    G.credit_charged,
    G.credit_refunded,
    G.kept,
    G.export_formats,
    G.background,
)


def _view(row: Any) -> GenerationView:
    return GenerationView(
        id=row.id,
        user_id=row.user_id,
        project_id=row.project_id,
        type=GenerationType(row.type),
        status=GenerationStatus(row.status),
        prompt=row.prompt,
        negative_prompt=row.negative_prompt,
        pose_ids=list(row.selected_pose_ids or []),
        variations=row.variations,
        total=row.total_expected_poses,
        completed=row.poses_completed,
        failed=row.poses_failed,
        width=row.width,
        height=row.height,
        seed=row.seed,
        priority=row.priority,
        attempts=row.attempts,
        max_attempts=row.max_attempts,
        cancel_requested=bool(row.cancel_requested),
        created_at=row.created_at,
        started_at=row.started_at,
        completed_at=row.completed_at,
        error_kind=row.error_kind,
        error_message=row.error_message,
        error_detail=row.error_detail,
        backend=row.backend,
        model=row.model,
        credit_charged=int(row.credit_charged or 0),
        credit_refunded=int(row.credit_refunded or 0),
        kept=bool(row.kept),
        export_formats=tuple(row.export_formats or ()),
        background=row.background,
    )


def get_visible(engine: Engine, generation_id: int, user_id: int | None) -> GenerationView:
    """A generation the caller may see (``user_id`` None = admin); another user's is NotFound."""
    stmt = select(*_COLUMNS).where(G.id == generation_id)
    if user_id is not None:
        stmt = stmt.where(G.user_id == user_id)
    with read_connection(engine) as conn:
        row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"generation {generation_id} not found")
    return _view(row)


def list_generations(
    engine: Engine,
    *,
    user_id: int | None,
    status: GenerationStatus | None = None,
    project_id: int | None = None,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[GenerationView]:
    """Newest first, keyset-paginated on (created_at, id)."""
    stmt = select(*_COLUMNS)
    if user_id is not None:
        stmt = stmt.where(G.user_id == user_id)
    if status is not None:
        stmt = stmt.where(G.status == status)
    if project_id is not None:
        stmt = stmt.where(G.project_id == project_id)
    stmt = pagination.newest_first(stmt, G.created_at, G.id, cursor, limit)
    with read_connection(engine) as conn:
        rows = [_view(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.created_at, v.id))


def find_by_idempotency_key(
    engine: Engine, user_id: int, key: str
) -> tuple[int, str | None] | None:
    """(generation id, request hash) of an earlier submission with this key, if any."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(G.id, G.request_hash).where(G.user_id == user_id, G.idempotency_key == key)
        ).first()
    return None if row is None else (row.id, row.request_hash)


@dataclass(frozen=True)
class EventRow:
    id: int
    kind: str
    data: dict[str, Any]
    created_at: dt.datetime


def events_after(
    engine: Engine, generation_id: int, after_id: int, limit: int = 200
) -> tuple[list[EventRow], GenerationStatus | None]:
    """Events newer than ``after_id`` in id order, and the generation's status as its stream
    follows it (:func:`stream_status_column`; None once it is deleted), in one read."""
    E = GenerationEvent
    with read_connection(engine) as conn, conn.begin():
        rows = conn.execute(
            select(E.id, E.kind, E.data, E.created_at)
            .where(E.generation_id == generation_id, E.id > after_id)
            .order_by(E.id)
            .limit(limit)
        ).all()
        status = conn.execute(
            select(stream_status_column()).where(G.id == generation_id)
        ).scalar_one_or_none()
    events = [EventRow(r.id, r.kind, dict(r.data or {}), r.created_at) for r in rows]
    return events, None if status is None else GenerationStatus(status)


@dataclass(frozen=True)
class ResultRow:
    id: int
    variation_key: str
    pose_id: int | None
    variation_index: int
    status: PoseStatus
    image_path: str | None
    thumbnail_path: str | None
    seed: int | None
    prompt_used: str | None
    duration_ms: int | None
    error_kind: str | None
    error_message: str | None
    created_at: dt.datetime
    #: Raw failure text: admins only.
    error_detail: str | None = None
    #: What made it (rows older than the binding: the generation's backend, model unknown).
    backend: str | None = None
    model: str | None = None

    @property
    def preview(self) -> bool:
        return self.backend in PREVIEW_BACKENDS


def _result(r: Any) -> ResultRow:
    return ResultRow(
        r.id,
        r.variation_key,
        r.pose_id,
        r.variation_index,
        PoseStatus(r.status),
        r.image_path,
        r.thumbnail_path,
        r.seed,
        r.prompt_used,
        r.duration_ms,
        r.error_kind,
        r.error_message,
        r.created_at,
        r.error_detail,
        r.backend,
        r.model,
    )


_RESULT_COLUMNS = (
    GeneratedPose.id,
    GeneratedPose.variation_key,
    GeneratedPose.pose_id,
    GeneratedPose.variation_index,
    GeneratedPose.status,
    GeneratedPose.image_path,
    GeneratedPose.thumbnail_path,
    GeneratedPose.seed,
    GeneratedPose.prompt_used,
    GeneratedPose.duration_ms,
    GeneratedPose.error_kind,
    GeneratedPose.error_message,
    GeneratedPose.created_at,
    GeneratedPose.error_detail,
    func.coalesce(
        GeneratedPose.backend,
        select(G.backend).where(G.id == GeneratedPose.generation_id).scalar_subquery(),
    ).label("backend"),
    GeneratedPose.model,
)


def results(engine: Engine, generation_id: int) -> list[ResultRow]:
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(*_RESULT_COLUMNS)
            .where(GeneratedPose.generation_id == generation_id)
            .order_by(GeneratedPose.id)
        ).all()
    return [_result(r) for r in rows]


def result(engine: Engine, generation_id: int, result_id: int) -> ResultRow:
    with read_connection(engine) as conn:
        row = conn.execute(
            select(*_RESULT_COLUMNS).where(
                GeneratedPose.generation_id == generation_id, GeneratedPose.id == result_id
            )
        ).first()
    if row is None:
        raise NotFound(f"result {result_id} not found")
    return _result(row)


def archive_files(
    engine: Engine, settings: Settings, generation_id: int
) -> list[tuple[str, Callable[[], StoredFile]]]:
    """``(<variation key>.png, opener)`` for every completed image: the members of a generation's
    ZIP, each opened from the result store only when the archive reaches it (one object open at
    a time, however many images)."""
    from posegen.backgrounds import records as variants  # a domain's rows (no cycle)

    store = make_storage(settings)
    out: list[tuple[str, Callable[[], StoredFile]]] = [
        (f"{row.variation_key}.png", functools.partial(store.open_stream, row.image_path))
        for row in results(engine, generation_id)
        if row.status == PoseStatus.COMPLETED and row.image_path
    ]
    # Changed backgrounds beside their originals: ``<variation key>.<variant key>.png``.
    out.extend(
        (
            f"{v.variation_key}.{v.variant_key}.png",
            functools.partial(store.open_stream, v.image_path),
        )
        for v in variants.of_generation(engine, generation_id)
    )
    return out
