"""A user's private poses: rows of ``pose_library`` with ``owner_user_id`` set (never public).

Made from keypoints (the canonical pose JSON of :mod:`posegen.pose`, or today's ``[x, y]``
lists) or from one of the owner's map uploads; later from a photo, through
:func:`create_private_pose`, which takes an open connection so a caller can create the pose in
its own transaction. Only the owner lists, reads, renames, deletes and generates with them; to
everyone else, admins included, they do not exist (:func:`posegen.catalog.visible`). An admin
may promote one to the public library (:func:`promote_private_pose`): it loses its owner, and
a map upload is copied to the admin (a library map is always an admin's upload).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from posegen import catalog, pagination, uploads
from posegen.catalog import PoseView
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import PoseCategory, PoseLibrary
from posegen.exceptions import Conflict, InvalidInput, NotFound
from posegen.pose import pose_json as canonical_pose

L = PoseLibrary
NAME_MAX = 200
DESCRIPTION_MAX = 2000
TAGS_MAX = 30


@contextmanager
def _transaction(conn_or_engine: Connection | Engine) -> Iterator[Connection]:
    if isinstance(conn_or_engine, Connection):
        yield conn_or_engine  # the caller's transaction: it commits or rolls back
    else:
        with write_transaction(conn_or_engine) as conn:
            yield conn


def _name(name: Any) -> str:
    text = name.strip() if isinstance(name, str) else ""
    if not 1 <= len(text) <= NAME_MAX:
        raise InvalidInput(f"a pose name needs 1-{NAME_MAX} characters", kind="invalid-name")
    return text


def _description(description: Any) -> str:
    text = description.strip() if isinstance(description, str) else ""
    if len(text) > DESCRIPTION_MAX:
        raise InvalidInput(f"description: at most {DESCRIPTION_MAX} characters")
    return text


def _tags(tags: Iterable[str]) -> list[str]:
    clean = sorted({t.strip().lower()[:50] for t in tags if t.strip()})
    if len(clean) > TAGS_MAX:
        raise InvalidInput(f"at most {TAGS_MAX} tags")
    return clean


def _default_category(conn: Connection) -> int:
    found = conn.execute(
        select(PoseCategory.id).order_by(PoseCategory.sort_order, PoseCategory.id).limit(1)
    ).scalar_one_or_none()
    if found is None:
        raise InvalidInput("the library has no categories yet", kind="unknown-category")
    return int(found)


def create_private_pose(
    conn_or_engine: Connection | Engine,
    user_id: int,
    pose_json: Any,
    name: str,
    *,
    description: str = "",
    category: str | int | None = None,
    tags: Iterable[str] = (),
    map_upload_id: int | None = None,
) -> PoseView:
    """Save a private pose of ``user_id``: ``pose_json`` (any shape :mod:`posegen.pose`
    accepts; stored canonical) or ``map_upload_id``, one of the user's own uploads, as its map.

    ``category`` (slug or id) defaults to the library's first category. Given a connection,
    runs in the caller's transaction; given an engine, in its own. 422 ``invalid-pose`` /
    ``missing-map`` / ``two-maps`` / ``unknown-upload`` / ``unknown-category``.
    """
    if (pose_json is None) == (map_upload_id is None):
        if pose_json is None:
            raise InvalidInput("a pose needs keypoints or a map upload", kind="missing-map")
        raise InvalidInput("give keypoints or a map upload, not both", kind="two-maps")
    values: dict[str, Any] = {
        "name": _name(name),
        "description": _description(description),
        "tags": _tags(tags),
        "keypoints": canonical_pose(pose_json) if pose_json is not None else None,
        "map_upload_id": map_upload_id,
        "is_public": False,
        "owner_user_id": user_id,
        # Never shown to anyone but the owner; random, so it says nothing and never collides
        # with a library slug (those are chosen by people and by ``library import``).
        "slug": f"private-{secrets.token_hex(8)}",
    }
    with _transaction(conn_or_engine) as conn:
        if map_upload_id is not None:
            uploads.attach(conn, map_upload_id, user_id)  # the user's own, locked until commit
        values["category_id"] = (
            _default_category(conn) if category is None else catalog.category_id(conn, category)
        )
        pose_id = conn.execute(insert(L).values(**values).returning(L.id)).scalar_one()
        return _get(conn, user_id, pose_id)


def _get(conn: Connection, user_id: int, pose_id: int) -> PoseView:
    row = conn.execute(
        catalog.pose_query().where(L.id == pose_id, L.owner_user_id == user_id)
    ).first()
    if row is None:
        # Someone else's pose and no pose read the same: ids cannot be probed.
        raise NotFound(f"pose {pose_id} not found", kind="pose-not-found")
    return catalog.to_view(row)


def get_private_pose(engine: Engine, user_id: int, pose_id: int) -> PoseView:
    with read_connection(engine) as conn:
        return _get(conn, user_id, pose_id)


def list_private_poses(
    engine: Engine,
    user_id: int,
    *,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[PoseView]:
    """The user's private poses, newest first."""
    stmt = catalog.pose_query().where(L.owner_user_id == user_id)
    stmt = pagination.newest_first(stmt, L.created_at, L.id, cursor, limit)
    with read_connection(engine) as conn:
        rows = [catalog.to_view(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.created_at, v.id))


def update_private_pose(
    engine: Engine,
    user_id: int,
    pose_id: int,
    *,
    name: str | None = None,
    description: str | None = None,
    tags: Iterable[str] | None = None,
    category: str | int | None = None,
) -> PoseView:
    """Rename (or re-describe, re-tag, re-file) the user's private pose."""
    values: dict[str, Any] = {}
    if name is not None:
        values["name"] = _name(name)
    if description is not None:
        values["description"] = _description(description)
    if tags is not None:
        values["tags"] = _tags(tags)
    with write_transaction(engine) as conn:
        if category is not None:
            values["category_id"] = catalog.category_id(conn, category)
        if values:
            conn.execute(
                update(L).where(L.id == pose_id, L.owner_user_id == user_id).values(**values)
            )
        return _get(conn, user_id, pose_id)


def delete_private_pose(engine: Engine, user_id: int, pose_id: int) -> int | None:
    """Delete the user's private pose; results made from it keep their images. Returns its map
    upload's id, for the caller to :func:`posegen.uploads.release`."""
    with write_transaction(engine) as conn:
        row = conn.execute(
            select(L.map_upload_id)
            .where(L.id == pose_id, L.owner_user_id == user_id)
            .with_for_update()
        ).first()
        if row is None:
            raise NotFound(f"pose {pose_id} not found", kind="pose-not-found")
        conn.execute(delete(L).where(L.id == pose_id))
        return row[0]


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "pose"


def promote_private_pose(
    engine: Engine,
    settings: Settings,
    pose_id: int,
    admin_id: int,
    category: str | int,
    *,
    slug: str | None = None,
    name: str | None = None,
) -> PoseView:
    """Make a user's private pose a public library pose (admin): no owner, public, in
    ``category``, under ``slug`` (default: from its name). A map upload is copied to the admin
    and the owner's copy released. 404 if no private pose has this id, 409 ``slug-taken``."""
    with read_connection(engine) as conn:
        row = conn.execute(
            select(L.owner_user_id, L.map_upload_id, L.name).where(
                L.id == pose_id, L.owner_user_id.is_not(None)
            )
        ).first()
    if row is None:
        raise NotFound(f"private pose {pose_id} not found", kind="pose-not-found")
    owner, old_upload, old_name = row
    assert owner is not None  # the query asked for an owner
    values: dict[str, Any] = {"owner_user_id": None, "is_public": True}
    if name is not None:
        values["name"] = _name(name)
    values["slug"] = slug if slug is not None else _slugify(values.get("name", old_name))
    if not catalog.SLUG.match(values["slug"]):
        raise InvalidInput("slug: lowercase letters, digits and '-', 1-100", kind="invalid-slug")
    if old_upload is not None:
        # Before the transaction: storing takes its own (SQLite has one writer at a time).
        _view, data = uploads.content(engine, settings, old_upload, owner)
        values["map_upload_id"] = uploads.store(engine, settings, admin_id, data).id
    try:
        with write_transaction(engine) as conn:
            values["category_id"] = catalog.category_id(conn, category)
            if old_upload is not None:
                uploads.attach(conn, values["map_upload_id"], admin_id)
            done = conn.execute(
                update(L)
                .where(
                    L.id == pose_id,
                    L.owner_user_id == owner,
                    L.map_upload_id.is_(None)
                    if old_upload is None
                    else L.map_upload_id == old_upload,
                )
                .values(**values)
            ).rowcount
            if done != 1:
                raise Conflict(f"pose {pose_id} changed meanwhile; try again", kind="pose-changed")
            view = catalog.get_pose_in(conn, pose_id)
    except IntegrityError as exc:
        raise Conflict(f"a pose with slug {values['slug']!r} exists", kind="slug-taken") from exc
    uploads.release(engine, settings, old_upload)
    return view
