"""Projects: a user's subject image and the generations made from it. Owner-only access.

Every lookup filters on the owner, so another user's project is simply "not found" (ids cannot be
probed). Archive and delete are refused while a generation of the project is pending or running.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Connection, Engine, delete, exists, insert, select, update

from posegen import pagination
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import GenerationStatus, PoseGeneration, Project, ProjectStatus
from posegen.db.types import utcnow
from posegen.exceptions import Conflict, InvalidInput, NotFound

P = Project
_ACTIVE = (GenerationStatus.PENDING, GenerationStatus.PROCESSING)


@dataclass(frozen=True)
class ProjectView:
    id: int
    user_id: int
    name: str
    subject_image_url: str | None
    status: ProjectStatus
    created_at: dt.datetime
    updated_at: dt.datetime


_COLUMNS = (P.id, P.user_id, P.name, P.subject_image_url, P.status, P.created_at, P.updated_at)


def _view(r: Any) -> ProjectView:
    return ProjectView(
        r.id,
        r.user_id,
        r.name,
        r.subject_image_url,
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
    """Accept an http(s) URL or an ``/uploads/...`` path; the worker fetches it safely later."""
    url = url.strip()
    if len(url) > 2048:
        raise InvalidInput("image URL longer than 2048 characters", kind="invalid-url")
    if url.startswith("/uploads/"):
        parts = url.split("/")[2:]
        if any(p in ("", ".", "..") or "\\" in p for p in parts):
            raise InvalidInput("malformed uploads path", kind="invalid-url")
        return url
    try:
        parsed = urlsplit(url)
        ok = parsed.scheme in ("http", "https") and bool(parsed.hostname)
    except ValueError:
        ok = False
    if not ok:
        raise InvalidInput("image URL must be http(s) or /uploads/...", kind="invalid-url")
    return url


def create(engine: Engine, user_id: int, name: str, subject_image_url: str | None) -> ProjectView:
    now = utcnow()
    with write_transaction(engine) as conn:
        project_id = conn.execute(
            insert(P)
            .values(
                user_id=user_id,
                name=clean_name(name),
                subject_image_url=subject_image_url,
                created_at=now,
                updated_at=now,
            )
            .returning(P.id)
        ).scalar_one()
        return _get(conn, project_id, user_id)


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
    """Change name and/or subject_image_url (only the keys given)."""
    allowed = {"name", "subject_image_url"}
    if not values.keys() <= allowed:
        raise InvalidInput(f"cannot change {sorted(values.keys() - allowed)}")
    if "name" in values:
        values["name"] = clean_name(values["name"])
    with write_transaction(engine) as conn:
        _get(conn, project_id, user_id)
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
        view = _lock(conn, project_id, user_id)
        _refuse_if_active(conn, project_id, "delete")
        generation_ids = list(
            conn.execute(
                select(PoseGeneration.id).where(PoseGeneration.project_id == project_id)
            ).scalars()
        )
        conn.execute(delete(P).where(P.id == project_id))
    return view, generation_ids


def _lock(conn: Connection, project_id: int, user_id: int) -> ProjectView:
    # FOR UPDATE on PostgreSQL (SQLite already holds its write lock: BEGIN IMMEDIATE).
    row = conn.execute(
        select(*_COLUMNS).where(P.id == project_id, P.user_id == user_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"project {project_id} not found")
    return _view(row)
