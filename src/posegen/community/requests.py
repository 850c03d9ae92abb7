"""Pose requests: create, list (filters, keyset pages by votes or newest), read, history.

Every signed-in user sees every request (that is how others find one to vote on) and its
history; a request's reference image is the requester's upload, shown with the request.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any, Literal

from sqlalchemy import Connection, Engine, and_, exists, insert, literal, or_, select
from sqlalchemy.exc import IntegrityError

from posegen import catalog, pagination, uploads
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import (
    PoseCategory,
    PoseLibrary,
    PoseRequest,
    PoseRequestEvent,
    PoseRequestVote,
    RequestStatus,
    User,
)
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound

R = PoseRequest
E = PoseRequestEvent
V = PoseRequestVote
C = PoseCategory
NAME_MAX = 200
TEXT_MAX = 2000
Sort = Literal["votes", "newest"]


@dataclass(frozen=True)
class RequestView:
    id: int
    requester_id: int
    requester_name: str
    name: str
    description: str
    category_id: int | None
    category_slug: str | None
    use_case: str
    reference_upload_id: int | None
    status: RequestStatus
    admin_note: str | None
    fulfilled_pose_id: int | None
    fulfilled_pose_slug: str | None
    vote_count: int
    #: Whether the user who asked has voted for it.
    voted: bool
    created_at: dt.datetime
    updated_at: dt.datetime


@dataclass(frozen=True)
class EventView:
    id: int
    request_id: int
    request_name: str
    #: The status the request entered (``open``: it was made).
    status: RequestStatus
    note: str | None
    pose_id: int | None
    created_at: dt.datetime


def name_key(name: str) -> str:
    """What "the same name" means: case and spacing do not count."""
    return " ".join(name.lower().split())


def _text(value: Any, what: str, low: int, high: int) -> str:
    text = value.strip() if isinstance(value, str) else ""
    if not low <= len(text) <= high:
        raise InvalidInput(f"{what} needs {low}-{high} characters")
    return text


def create_request(
    engine: Engine,
    user_id: int,
    name: str,
    *,
    description: str = "",
    category: str | int | None = None,
    use_case: str = "",
    reference_upload_id: int | None = None,
) -> RequestView:
    """A new open request of ``user_id``; 409 ``duplicate-request`` while the same user has an
    unfinished request of the same name (the unique index decides, even when two race)."""
    clean = _text(name, "a request's name", 1, NAME_MAX)
    values = {
        "requester_id": user_id,
        "name": clean,
        "name_key": name_key(clean),
        "description": _text(description, "description", 0, TEXT_MAX),
        "use_case": _text(use_case, "use case", 0, TEXT_MAX),
        "reference_upload_id": reference_upload_id,
        "status": RequestStatus.OPEN,
        "vote_count": 0,
    }
    try:
        with write_transaction(engine) as conn:
            if reference_upload_id is not None:
                uploads.attach(conn, reference_upload_id, user_id)  # the requester's own
            if category is not None:
                values["category_id"] = catalog.category_id(conn, category)
            now = utcnow()
            request_id = conn.execute(
                insert(R).values(created_at=now, updated_at=now, **values).returning(R.id)
            ).scalar_one()
            add_event(conn, request_id, RequestStatus.OPEN, actor_id=user_id)
            return read_request(conn, request_id, user_id)
    except IntegrityError as exc:
        raise Conflict(
            f"you already have an open request named {clean!r}", kind="duplicate-request"
        ) from exc


def add_event(
    conn: Connection,
    request_id: int,
    status: RequestStatus,
    *,
    actor_id: int | None,
    note: str | None = None,
    pose_id: int | None = None,
) -> None:
    """Record that the request entered ``status`` (in the caller's transaction)."""
    conn.execute(
        insert(E).values(
            request_id=request_id,
            status=status,
            note=note,
            actor_id=actor_id,
            pose_id=pose_id,
            created_at=utcnow(),
        )
    )


def _query(viewer_id: int) -> Any:
    voted = exists().where(V.request_id == R.id, V.user_id == viewer_id)
    return (
        select(
            R.id,
            R.requester_id,
            User.name.label("requester_name"),
            R.name,
            R.description,
            R.category_id,
            C.slug.label("category_slug"),
            R.use_case,
            R.reference_upload_id,
            R.status,
            R.admin_note,
            R.fulfilled_pose_id,
            PoseLibrary.slug.label("pose_slug"),
            R.vote_count,
            voted.label("voted"),
            R.created_at,
            R.updated_at,
        )
        .join(User, User.id == R.requester_id)
        .outerjoin(C, C.id == R.category_id)
        .outerjoin(PoseLibrary, PoseLibrary.id == R.fulfilled_pose_id)
    )


def _view(r: Any) -> RequestView:
    return RequestView(
        r.id,
        r.requester_id,
        r.requester_name,
        r.name,
        r.description or "",
        r.category_id,
        r.category_slug,
        r.use_case or "",
        r.reference_upload_id,
        RequestStatus(r.status),
        r.admin_note,
        r.fulfilled_pose_id,
        r.pose_slug,
        int(r.vote_count),
        bool(r.voted),
        r.created_at,
        r.updated_at,
    )


def read_request(conn: Connection, request_id: int, viewer_id: int) -> RequestView:
    row = conn.execute(_query(viewer_id).where(R.id == request_id)).first()
    if row is None:
        raise NotFound(f"request {request_id} not found", kind="request-not-found")
    return _view(row)


def get_request(engine: Engine, request_id: int, viewer_id: int) -> RequestView:
    with read_connection(engine) as conn:
        return read_request(conn, request_id, viewer_id)


def list_requests(
    engine: Engine,
    viewer_id: int,
    *,
    status: RequestStatus | None = None,
    category: str | None = None,
    requester_id: int | None = None,
    sort: Sort = "votes",
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[RequestView]:
    """Requests by most votes (ties: newest first) or newest first, in keyset pages."""
    stmt = _query(viewer_id)
    if status is not None:
        stmt = stmt.where(R.status == status)
    if category:
        stmt = stmt.where(C.slug == category)
    if requester_id is not None:
        stmt = stmt.where(R.requester_id == requester_id)
    if sort == "votes":
        if cursor:
            votes, after = pagination.decode(cursor, int, int)
            stmt = stmt.where(or_(R.vote_count < votes, and_(R.vote_count == votes, R.id < after)))
        stmt = stmt.order_by(R.vote_count.desc(), R.id.desc())
        key: Any = lambda v: (v.vote_count, v.id)  # noqa: E731
    else:
        if cursor:
            (after,) = pagination.decode(cursor, int)
            stmt = stmt.where(R.id < after)
        stmt = stmt.order_by(R.id.desc())
        key = lambda v: (v.id,)  # noqa: E731
    with read_connection(engine) as conn:
        rows = [_view(r) for r in conn.execute(stmt.limit(limit + 1))]
    return pagination.page(rows, limit, key)


def _event(r: Any) -> EventView:
    return EventView(
        r.id, r.request_id, r.name, RequestStatus(r.status), r.note, r.pose_id, r.created_at
    )


_EVENT_COLUMNS = (E.id, E.request_id, R.name, E.status, E.note, E.pose_id, E.created_at)


def list_events(engine: Engine, request_id: int) -> list[EventView]:
    """A request's history, oldest first."""
    stmt = (
        select(*_EVENT_COLUMNS)
        .join(R, R.id == E.request_id)
        .where(E.request_id == request_id)
        .order_by(E.id)
    )
    with read_connection(engine) as conn:
        return [_event(r) for r in conn.execute(stmt)]


def list_events_for_requester(
    engine: Engine,
    user_id: int,
    *,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[EventView]:
    """What happened to the user's requests (status changes, not their own creating them),
    newest first."""
    stmt = (
        select(*_EVENT_COLUMNS)
        .join(R, R.id == E.request_id)
        .where(R.requester_id == user_id, E.status != literal(RequestStatus.OPEN.value))
    )
    if cursor:
        (after,) = pagination.decode(cursor, int)
        stmt = stmt.where(E.id < after)
    stmt = stmt.order_by(E.id.desc()).limit(limit + 1)
    with read_connection(engine) as conn:
        rows = [_event(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.id,))


def reference_image(
    engine: Engine, settings: Settings, request_id: int
) -> tuple[uploads.UploadView, bytes]:
    """The request's reference image (the requester's upload) and its bytes."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(R.requester_id, R.reference_upload_id).where(R.id == request_id)
        ).first()
    if row is None:
        raise NotFound(f"request {request_id} not found", kind="request-not-found")
    if row.reference_upload_id is None:
        raise NotFound(f"request {request_id} has no reference image", kind="no-reference")
    return uploads.content(engine, settings, row.reference_upload_id, row.requester_id)


_SENTENCES = {
    RequestStatus.OPEN: "your request was made",
    RequestStatus.APPROVED: "your request was approved",
    RequestStatus.IN_PROGRESS: "work on your request has started",
    RequestStatus.COMPLETED: "your request was completed",
    RequestStatus.REJECTED: "your request was rejected",
}


def event_sentence(event: EventView) -> str:
    """The event as the requester reads it: "your request was approved: <note>"."""
    text = _SENTENCES[event.status]
    return f"{text}: {event.note}" if event.note else text
