"""Per-user limits, checked and counted inside the submit transaction.

The counters live on the user's ``user_generation_stats`` row, which every submit upserts anyway:
active generations (``generations`` minus the four terminal counts), the per-minute submission
window (``window_started_at``, ``window_submissions``), and stored and reserved result bytes.
Admission is ONE conditional upsert of that row: the insert branch needs the project to be the
user's, the update branch's ``WHERE`` holds every limit. PostgreSQL evaluates that ``WHERE`` on
the latest row version after taking the row lock (and SQLite runs it under ``BEGIN IMMEDIATE``),
so concurrent submits of one user queue on the row and each sees the ones before it: exactly
the limit is admitted. Nothing here reads ``pose_generations``, so deleting a project (and its
generations) does not reopen the window.

The window is fixed: it opens at the first submit after the previous one closed and admits
``per_minute`` submits in :data:`WINDOW`. A refused submit changes nothing; the caller then
learns why from :func:`refusal`, which reads the row again (the statement itself only says "no").
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update

from posegen.config import Settings
from posegen.db.models import (
    GeneratedPose,
    Project,
    ResultExport,
    ResultVariant,
    UserGenerationStats,
)
from posegen.exceptions import NotFound, PosegenError, QuotaExceeded, RateLimited

WINDOW = dt.timedelta(minutes=1)
#: Nothing says when an active generation ends; ask clients to come back after a short while.
ACTIVE_RETRY_AFTER_SECONDS = 5
#: A thumbnail is a JPEG within 400x400 at quality 85: well under this.
THUMBNAIL_BYTES_ESTIMATE = 64 * 1024
_NO_LIMIT = 2**62


@dataclass(frozen=True)
class SubmitLimits:
    """What one user may have: active generations, submits per window, result bytes."""

    max_active: int = _NO_LIMIT
    per_minute: int = _NO_LIMIT
    max_result_bytes: int = _NO_LIMIT

    @classmethod
    def from_settings(cls, settings: Settings) -> SubmitLimits:
        return cls(
            max_active=settings.max_active_generations,
            per_minute=settings.submissions_per_minute,
            max_result_bytes=settings.max_result_bytes_per_user,
        )


#: Operators' paths (CLI submit, bulk, load tests): counted, never refused.
UNLIMITED = SubmitLimits()


def estimate_result_bytes(settings: Settings, total_poses: int, width: int, height: int) -> int:
    """Upper estimate of what a generation will store: each image as an RGB PNG at
    ``result_bytes_per_pixel`` plus its thumbnail."""
    per_image = math.ceil(width * height * settings.result_bytes_per_pixel)
    return total_poses * (per_image + THUMBNAIL_BYTES_ESTIMATE)


def admit_sql(p: Callable[[str], str], extra: str = "") -> str:
    """The admission upsert; ``p(name)`` spells a parameter in the driver's style.

    Parameters: user_id, project_id, reserved_bytes (this generation's estimate), now,
    window_floor (now - WINDOW), max_active, per_minute, max_bytes. Returns ``user_id`` when
    the submit is admitted, nothing when a limit (or the project's owner) refuses it.
    ``extra``: one more SQL condition the admission needs (``AND ...``), spelled by the caller.
    """
    s = "user_generation_stats"
    fresh = f"{s}.window_started_at > {p('window_floor')}"
    return (
        f"INSERT INTO {s} (user_id, generations, completed, partial, failed, cancelled, "
        "poses_completed, result_bytes, reserved_bytes, window_started_at, window_submissions, "
        f"updated_at) SELECT {p('user_id')}, 1, 0, 0, 0, 0, 0, 0, {p('reserved_bytes')}, "
        f"{p('now')}, 1, {p('now')} FROM projects WHERE id = {p('project_id')} "
        f"AND user_id = {p('user_id')} AND {p('reserved_bytes')} <= {p('max_bytes')} {extra} "
        f"ON CONFLICT (user_id) DO UPDATE SET generations = {s}.generations + 1, "
        f"reserved_bytes = {s}.reserved_bytes + excluded.reserved_bytes, "
        f"window_started_at = CASE WHEN {fresh} THEN {s}.window_started_at "
        "ELSE excluded.window_started_at END, "
        f"window_submissions = CASE WHEN {fresh} THEN {s}.window_submissions + 1 ELSE 1 END, "
        "updated_at = excluded.updated_at "
        f"WHERE {s}.generations - {s}.completed - {s}.partial - {s}.failed - {s}.cancelled "
        f"< {p('max_active')} "
        f"AND ({s}.window_started_at IS NULL OR NOT ({fresh}) "
        f"OR {s}.window_submissions < {p('per_minute')}) "
        f"AND {s}.result_bytes + {s}.reserved_bytes + excluded.reserved_bytes <= {p('max_bytes')} "
        "RETURNING user_id"
    )


def admit_params(
    user_id: int, project_id: int, reserved_bytes: int, limits: SubmitLimits, now: dt.datetime
) -> dict[str, Any]:
    return {
        "user_id": user_id,
        "project_id": project_id,
        "reserved_bytes": reserved_bytes,
        "now": now,
        "window_floor": now - WINDOW,
        "max_active": limits.max_active,
        "per_minute": limits.per_minute,
        "max_bytes": limits.max_result_bytes,
    }


def refusal(
    conn: Connection,
    user_id: int,
    project_id: int,
    reserved_bytes: int,
    limits: SubmitLimits,
    now: dt.datetime,
) -> PosegenError | None:
    """Why the admission upsert refused, from the row as it is now; None if nothing refuses
    any more (the state moved on between the statement and this read: submit again)."""
    owned = conn.execute(
        select(Project.id).where(Project.id == project_id, Project.user_id == user_id)
    ).first()
    if owned is None:
        return NotFound(f"project {project_id} not found for user {user_id}")
    if reserved_bytes > limits.max_result_bytes:
        return QuotaExceeded(
            f"this generation would store about {reserved_bytes} bytes; "
            f"the limit per user is {limits.max_result_bytes}",
            kind="generation-too-large",
            http_status=413,
        )
    s = UserGenerationStats
    row = conn.execute(
        select(
            s.generations - s.completed - s.partial - s.failed - s.cancelled,
            s.window_started_at,
            s.window_submissions,
            s.result_bytes,
            s.reserved_bytes,
        ).where(s.user_id == user_id)
    ).first()
    if row is None:
        return None
    active, started, submitted, stored, reserved = row
    if started is not None and started > now - WINDOW and submitted >= limits.per_minute:
        wait = (started + WINDOW - now).total_seconds()
        return RateLimited(
            f"at most {limits.per_minute} generations per minute",
            retry_after=max(1, math.ceil(wait)),
            kind="too-many-submissions",
        )
    if active >= limits.max_active:
        return RateLimited(
            f"at most {limits.max_active} active generations at once",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
            kind="too-many-active",
        )
    if stored + reserved + reserved_bytes > limits.max_result_bytes:
        return QuotaExceeded(
            f"stored results ({stored} bytes) and running generations ({reserved} bytes) leave "
            f"no room for about {reserved_bytes} more (limit {limits.max_result_bytes}); "
            "delete old projects to free space",
            kind="result-quota-exceeded",
            http_status=413,
        )
    return None


def lock_user(conn: Connection, user_id: int) -> None:
    """Take the user's quota row lock for this transaction (PostgreSQL; SQLite's write
    transaction already excludes every other writer)."""
    s = UserGenerationStats
    conn.execute(select(s.user_id).where(s.user_id == user_id).with_for_update())


def forget_results(conn: Connection, user_id: int, generation_ids: list[int]) -> int:
    """Before deleting these generations: take their stored bytes off the user's count, in the
    caller's transaction. Returns the bytes freed."""
    if not generation_ids:
        return 0
    total = conn.execute(
        select(func.sum(GeneratedPose.bytes)).where(GeneratedPose.generation_id.in_(generation_ids))
    ).scalar_one()
    exported = conn.execute(
        select(func.sum(ResultExport.bytes)).where(ResultExport.generation_id.in_(generation_ids))
    ).scalar_one()
    # Changed backgrounds (``posegen.backgrounds``): counted when their task completed.
    changed = conn.execute(
        select(func.sum(ResultVariant.bytes)).where(ResultVariant.generation_id.in_(generation_ids))
    ).scalar_one()
    freed = int(total or 0) + int(exported or 0) + int(changed or 0)
    if freed:
        s = UserGenerationStats
        conn.execute(
            update(s).where(s.user_id == user_id).values(result_bytes=s.result_bytes - freed)
        )
    return freed
