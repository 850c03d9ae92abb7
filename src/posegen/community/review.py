"""Admin review of requests: approve, reject (with a note), start, complete (with a pose).

A transition is one guarded UPDATE (``WHERE status IN (allowed)``) plus its event row, in one
transaction: two admins acting at once cannot both move a request, and a wrong-state action is a
409 ``invalid-transition`` that names the request's current status.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, select, update

from posegen.community.requests import RequestView, add_event, read_request
from posegen.db.engine import write_transaction
from posegen.db.models import PoseLibrary, PoseRequest, RequestStatus
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound

R = PoseRequest
S = RequestStatus
NOTE_MAX = 2000

PAST = {"approve": "approved", "start": "started", "complete": "completed", "reject": "rejected"}
#: action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[tuple[RequestStatus, ...], RequestStatus]] = {
    "approve": ((S.OPEN,), S.APPROVED),
    "start": ((S.OPEN, S.APPROVED), S.IN_PROGRESS),
    "complete": ((S.OPEN, S.APPROVED, S.IN_PROGRESS), S.COMPLETED),
    "reject": ((S.OPEN, S.APPROVED, S.IN_PROGRESS), S.REJECTED),
}


def _library_pose(conn: Any, pose: int | str) -> int:
    """A public library pose by id or slug (a private or unpublished one cannot fulfil)."""
    stmt = select(PoseLibrary.id).where(
        PoseLibrary.is_public.is_(True), PoseLibrary.owner_user_id.is_(None)
    )
    if isinstance(pose, int) or pose.isdecimal():
        stmt = stmt.where(PoseLibrary.id == int(pose))
    else:
        stmt = stmt.where(PoseLibrary.slug == pose)
    found = conn.execute(stmt).scalar_one_or_none()
    if found is None:
        raise InvalidInput(f"no public library pose {pose!r}", kind="unknown-pose")
    return int(found)


def review(
    engine: Engine,
    request_id: int,
    action: str,
    *,
    actor_id: int | None,
    note: str | None = None,
    pose: int | str | None = None,
) -> RequestView:
    """Apply ``action`` (see :data:`ACTIONS`) as ``actor_id`` (None: an operator at the CLI).
    ``reject`` needs a note; ``complete`` the public library pose (id or slug) that fulfils it."""
    if action not in ACTIONS:
        raise InvalidInput(f"unknown action {action!r}")
    allowed, target = ACTIONS[action]
    note = note.strip() if note else None
    if note and len(note) > NOTE_MAX:
        raise InvalidInput(f"a note has at most {NOTE_MAX} characters")
    if target is S.REJECTED and not note:
        raise InvalidInput("say why in a note when rejecting", kind="note-required")
    if target is S.COMPLETED and pose is None:
        raise InvalidInput("name the library pose that fulfils the request", kind="pose-required")
    with write_transaction(engine) as conn:
        values: dict[str, Any] = {"status": target, "updated_at": utcnow()}
        if note:
            values["admin_note"] = note
        pose_id = None
        if target is S.COMPLETED:
            assert pose is not None
            pose_id = values["fulfilled_pose_id"] = _library_pose(conn, pose)
        moved = conn.execute(
            update(R)
            .where(R.id == request_id, R.status.in_(allowed))
            .values(**values)
            .returning(R.id)
        ).first()
        if moved is None:
            current = conn.execute(select(R.status).where(R.id == request_id)).scalar_one_or_none()
            if current is None:
                raise NotFound(f"request {request_id} not found", kind="request-not-found")
            starts = " or ".join(s.value for s in allowed)
            raise Conflict(
                f"request {request_id} is {current}; only a request that is {starts} can be "
                f"{PAST[action]}",
                kind="invalid-transition",
            )
        add_event(conn, request_id, target, actor_id=actor_id, note=note, pose_id=pose_id)
        return read_request(conn, request_id, actor_id or 0)
