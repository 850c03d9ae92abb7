"""Projects: a user's subject image and the generations made from it. Owner-only access.

Every lookup filters on the owner, so another user's project is simply "not found" (ids cannot be
probed). Archive and delete are refused while a generation of the project is pending or running.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, exists, func, insert, select, update

from posegen import pagination, uploads
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import GenerationStatus, PoseGeneration, Project, ProjectStatus, User
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound, QuotaExceeded
from posegen.queue import quota

P = Project
_ACTIVE = (GenerationStatus.PENDING, GenerationStatus.PROCESSING)


@dataclass(frozen=True)
class ProjectView:
    id: int
    user_id: int
    name: str
    subject_image_url: str | None
    subject_upload_id: int | None
    status: ProjectStatus
    created_at: dt.datetime
    updated_at: dt.datetime


_COLUMNS = (
    P.id,
    P.user_id,
    P.name,
    P.subject_image_url,
    P.subject_upload_id,
    P.status,
    P.created_at,
    P.updated_at,
)


def _view(r: Any) -> ProjectView:
    return ProjectView(
        r.id,
        r.user_id,
        r.name,
        r.subject_image_url,
        r.subject_upload_id,
        ProjectStatus(r.status),
        r.created_at,
        r.updated_at,
    )


def clean_name(name: str) -> str:
    name = name.strip()
    if not 1 <= len(name) <= 200:
        raise InvalidInput("a project name needs 1-200 characters", kind="invalid-name")
    if "\x00" in name:  # PostgreSQL text cannot hold NUL (a multipart form is not JSON-checked)
        raise InvalidInput("a project name must not contain NUL characters", kind="nul-byte")
    return name


def check_image_url(url: str) -> str:
    """Accept an http(s) URL (the worker fetches it safely later). Stored files are named by
    upload id, never by a path: a path a client could write is how one user read another's."""
    url = url.strip()
    if len(url) > 2048:
        raise InvalidInput("image URL longer than 2048 characters", kind="invalid-url")
    if not _scheme(url) and ("uploads" in url or url.startswith(("/", "."))):
        raise InvalidInput(
            "paths to stored files are not accepted: upload the image (POST /uploads) and "
            "give its id (subjectUploadId / mapUploadId)",
            kind="upload-path-not-accepted",
        )
    try:
        parsed = urlsplit(url)
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInput("image URL must be http(s)", kind="invalid-url")
    return url


def _scheme(url: str) -> str:
    try:
        return urlsplit(url).scheme
    except ValueError:
        return ""


def create(
    engine: Engine,
    user_id: int,
    name: str,
    subject_image_url: str | None,
    subject_upload_id: int | None = None,
    *,
    max_projects: int | None = None,
) -> ProjectView:
    """A project with at most one subject: a URL or one of the user's own uploads;
    :class:`QuotaExceeded` (``too-many-projects``) when the user already has ``max_projects``
    (archived ones count: they keep their results)."""
    if subject_image_url is not None and subject_upload_id is not None:
        raise InvalidInput(
            "give a subject upload or subjectImageUrl, not both", kind="two-subjects"
        )
    now = utcnow()
    with write_transaction(engine) as conn:
        if max_projects is not None:
            _check_project_cap(conn, user_id, max_projects)
        if subject_upload_id is not None:
            uploads.attach(conn, subject_upload_id, user_id)
        project_id = conn.execute(
            insert(P)
            .values(
                user_id=user_id,
                name=clean_name(name),
                subject_image_url=subject_image_url,
                subject_upload_id=subject_upload_id,
                created_at=now,
                updated_at=now,
            )
            .returning(P.id)
        ).scalar_one()
        return _get(conn, project_id, user_id)


def _check_project_cap(conn: Connection, user_id: int, max_projects: int) -> None:
    # The user's row lock serialises one user's creates on PostgreSQL (SQLite: BEGIN
    # IMMEDIATE already does), so concurrent creates cannot all see room for one more.
    conn.execute(select(User.id).where(User.id == user_id).with_for_update())
    count = conn.execute(select(func.count(P.id)).where(P.user_id == user_id)).scalar_one()
    if count >= max_projects:
        raise QuotaExceeded(
            f"at most {max_projects} projects per user; delete one first",
            kind="too-many-projects",
        )


def _get(conn: Connection, project_id: int, user_id: int) -> ProjectView:
    row = conn.execute(select(*_COLUMNS).where(P.id == project_id, P.user_id == user_id)).first()
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return _view(row)


def get(engine: Engine, project_id: int, user_id: int) -> ProjectView:
    with read_connection(engine) as conn:
        return _get(conn, project_id, user_id)


def list_for(
    engine: Engine,
    user_id: int,
    *,
    status: ProjectStatus | None = None,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[ProjectView]:
    """The user's projects, newest first."""
    stmt = select(*_COLUMNS).where(P.user_id == user_id)
    if status is not None:
        stmt = stmt.where(P.status == status)
    stmt = pagination.newest_first(stmt, P.created_at, P.id, cursor, limit)
    with read_connection(engine) as conn:
        rows = [_view(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.created_at, v.id))


def update_fields(engine: Engine, project_id: int, user_id: int, **values: Any) -> ProjectView:
    """Change the name and/or the subject (only the keys given). A project has one subject:
    setting a URL detaches its upload and attaching an upload clears its URL. The caller
    releases (``uploads.release``) an upload this detached."""
    allowed = {"name", "subject_image_url", "subject_upload_id"}
    if not values.keys() <= allowed:
        raise InvalidInput(f"cannot change {sorted(values.keys() - allowed)}")
    if "name" in values:
        values["name"] = clean_name(values["name"])
    url, upload_id = values.get("subject_image_url"), values.get("subject_upload_id")
    if url is not None and upload_id is not None:
        raise InvalidInput(
            "give a subject upload or subjectImageUrl, not both", kind="two-subjects"
        )
    if url is not None:
        values["subject_upload_id"] = None
    if upload_id is not None:
        values["subject_image_url"] = None
    with write_transaction(engine) as conn:
        _get(conn, project_id, user_id)
        if upload_id is not None:
            uploads.attach(conn, upload_id, user_id)
        if values:
            conn.execute(update(P).where(P.id == project_id).values(**values, updated_at=utcnow()))
        return _get(conn, project_id, user_id)


def _refuse_if_active(conn: Connection, project_id: int, action: str) -> None:
    active = conn.execute(
        select(
            exists().where(
                PoseGeneration.project_id == project_id, PoseGeneration.status.in_(_ACTIVE)
            )
        )
    ).scalar_one()
    if active:
        raise Conflict(
            f"cannot {action} project {project_id} while a generation is active",
            kind="project-busy",
        )


def archive(engine: Engine, project_id: int, user_id: int) -> ProjectView:
    with write_transaction(engine) as conn:
        _lock(conn, project_id, user_id)
        _refuse_if_active(conn, project_id, "archive")
        conn.execute(
            update(P)
            .where(P.id == project_id)
            .values(status=ProjectStatus.ARCHIVED, updated_at=utcnow())
        )
        return _get(conn, project_id, user_id)


def remove(engine: Engine, project_id: int, user_id: int) -> tuple[ProjectView, list[int]]:
    """Delete a project and (by cascade) its generations; returns it and their ids."""
    with write_transaction(engine) as conn:
        # The project's generations first (the delete below cascades to them; a generation's
        # writes and its tasks lock it before the quota row), then the quota row before the
        # project, the order submit takes.
        conn.execute(
            select(PoseGeneration.id)
            .where(PoseGeneration.project_id == project_id, PoseGeneration.user_id == user_id)
            .order_by(PoseGeneration.id)
            .with_for_update()
        )
        quota.lock_user(conn, user_id)
        view = _lock(conn, project_id, user_id)
        _refuse_if_active(conn, project_id, "delete")
        generation_ids = list(
            conn.execute(
                select(PoseGeneration.id).where(PoseGeneration.project_id == project_id)
            ).scalars()
        )
        quota.forget_results(conn, user_id, generation_ids)
        conn.execute(delete(P).where(P.id == project_id))
    return view, generation_ids


def remove_generation(engine: Engine, generation_id: int, user_id: int) -> None:
    """Delete one of the user's generations (its poses, events and log lines by cascade);
    refused with 409 while it is pending or running. The caller removes its files afterwards:
    rows first, so no row ever names bytes that are gone."""
    g = PoseGeneration
    with write_transaction(engine) as conn:
        # The generation before the quota row: the order its own writes and its tasks take.
        status = conn.execute(
            select(g.status).where(g.id == generation_id, g.user_id == user_id).with_for_update()
        ).scalar_one_or_none()
        quota.lock_user(conn, user_id)
        if status is None:
            # Someone else's generation and no generation read the same: ids cannot be probed.
            raise NotFound(f"generation {generation_id} not found")
        if status in _ACTIVE:
            raise Conflict(
                f"generation {generation_id} is {status.value}: cancel it first",
                kind="generation-active",
            )
        quota.forget_results(conn, user_id, [generation_id])
        conn.execute(delete(g).where(g.id == generation_id))


def _lock(conn: Connection, project_id: int, user_id: int) -> ProjectView:
    # FOR UPDATE on PostgreSQL (SQLite already holds its write lock: BEGIN IMMEDIATE).
    row = conn.execute(
        select(*_COLUMNS).where(P.id == project_id, P.user_id == user_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return _view(row)
