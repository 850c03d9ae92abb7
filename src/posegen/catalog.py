"""The pose library as the API reads and edits it: categories, poses, filters, keyset pages.

Unpublished library poses (``is_public = false``, no owner) are visible to admins only; a user's
private pose (``owner_user_id``, :mod:`posegen.library.private`) to its owner only, and only where
the caller names the viewer. To everyone else they do not exist. Seeding the built-in library
lives in :mod:`posegen.library`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, String, cast, delete, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from posegen import pagination, uploads
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import PoseCategory, PoseLibrary, Role, Upload, User
from posegen.exceptions import Conflict, InvalidInput, NotFound
from posegen.library import attributes
from posegen.pose import pose_json

L = PoseLibrary
C = PoseCategory
U = Upload
MapOwner = User.__table__.alias("map_owner")
SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,99}$")


@dataclass(frozen=True)
class CategoryView:
    id: int
    slug: str
    name: str
    description: str
    sort_order: int
    pose_count: int


@dataclass(frozen=True)
class PoseView:
    id: int
    slug: str
    name: str
    description: str
    category_id: int
    category_slug: str
    tags: list[str]
    #: The canonical pose JSON (:mod:`posegen.pose`), None for a map-only pose.
    keypoints: dict[str, Any] | None
    controlnet_map_url: str | None
    preview_image_url: str | None
    is_public: bool
    created_at: dt.datetime
    map_upload_id: int | None = None
    #: The map upload's file below the uploads root; None unless the pose may use that upload
    #: (:func:`map_upload_allowed`: an admin's for a library pose, the owner's for a private
    #: one); any other upload is never read, whatever put its id in the row.
    map_upload_path: str | None = None
    # Discovery (posegen.library): attributes, counts, and the caller's own marks.
    difficulty: str = "beginner"
    suitability: str = "any"
    framing: str = "full_body"
    featured: bool = False
    premium: bool = False
    source: str | None = None
    licence: str | None = None
    author: str | None = None
    use_count: int = 0
    favorite_count: int = 0
    rating_count: int = 0
    rating_sum: int = 0
    popularity: int = 0
    is_favorite: bool = False
    my_rating: int | None = None

    @property
    def rating_average(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 2) if self.rating_count else None

    #: The user whose private pose this is; None for a library pose.
    owner_user_id: int | None = None


_POSE_COLUMNS = (
    L.id,
    L.slug,
    L.name,
    L.description,
    L.category_id,
    C.slug.label("category_slug"),
    L.tags,
    L.keypoints,
    L.controlnet_map_url,
    L.preview_image_url,
    L.is_public,
    L.created_at,
    L.map_upload_id,
    U.user_id.label("map_user_id"),
    U.sha256.label("map_sha256"),
    U.content_type.label("map_content_type"),
    MapOwner.c.role.label("map_owner_role"),
    L.difficulty,
    L.suitability,
    L.framing,
    L.featured,
    L.premium,
    L.source,
    L.licence,
    L.author,
    L.use_count,
    L.favorite_count,
    L.rating_count,
    L.rating_sum,
    L.popularity,
    L.owner_user_id,
)


def _joined(stmt: Any) -> Any:
    return (
        stmt.join(C, C.id == L.category_id)
        .outerjoin(U, U.id == L.map_upload_id)
        .outerjoin(MapOwner, MapOwner.c.id == U.user_id)
    )


def _map_path(r: Any) -> str | None:
    if r.map_upload_id is None or r.map_sha256 is None:
        return None
    if not map_upload_allowed(r.owner_user_id, r.map_user_id, r.map_owner_role):
        return None
    return uploads.relpath(r.map_user_id, r.map_sha256, r.map_content_type)


def map_upload_allowed(pose_owner: int | None, upload_owner: int | None, role: Any) -> bool:
    """Whose upload a pose's map may be: a library pose's an admin's; a private pose's its
    owner's own. Anything else is never read, whatever put its id in the row."""
    if pose_owner is not None:
        return upload_owner == pose_owner
    return bool(role == Role.ADMIN.value)


def visible(include_private: bool, viewer_id: int | None = None) -> Any:
    """Which poses a caller sees: the public ones; with ``include_private`` (admins) the
    library's unpublished poses too; with ``viewer_id`` that user's own private poses. Nobody,
    admins included, sees another user's private pose."""
    seen: Any = L.is_public.is_(True)
    if include_private:
        seen = or_(seen, L.owner_user_id.is_(None))
    if viewer_id is not None:
        seen = or_(seen, L.owner_user_id == viewer_id)
    return seen


def _pose(r: Any) -> PoseView:
    return PoseView(
        r.id,
        r.slug,
        r.name,
        r.description or "",
        r.category_id,
        r.category_slug,
        list(r.tags or []),
        r.keypoints,
        r.controlnet_map_url,
        r.preview_image_url,
        bool(r.is_public),
        r.created_at,
        r.map_upload_id,
        _map_path(r),
        r.difficulty,
        r.suitability,
        r.framing,
        bool(r.featured),
        bool(r.premium),
        r.source,
        r.licence,
        r.author,
        int(r.use_count),
        int(r.favorite_count),
        int(r.rating_count),
        int(r.rating_sum),
        int(r.popularity),
        bool(r._mapping.get("is_favorite") or False),
        r._mapping.get("my_rating"),
        r.owner_user_id,
    )


def list_categories(engine: Engine, *, include_private: bool) -> list[CategoryView]:
    """Every category with the number of poses the caller can see in it."""
    counted = (
        select(L.category_id, func.count(L.id).label("n"))
        .where(visible(include_private))
        .group_by(L.category_id)
    )
    sub = counted.subquery()
    stmt = (
        select(C.id, C.slug, C.name, C.description, C.sort_order, func.coalesce(sub.c.n, 0))
        .outerjoin(sub, sub.c.category_id == C.id)
        .order_by(C.sort_order, C.id)
    )
    with read_connection(engine) as conn:
        return [
            CategoryView(r[0], r[1], r[2], r[3] or "", r[4], int(r[5])) for r in conn.execute(stmt)
        ]


def _like_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def list_poses(
    engine: Engine,
    *,
    include_private: bool,
    category: str | None = None,
    tag: str | None = None,
    q: str | None = None,
    cursor: str | None = None,
    limit: int = pagination.DEFAULT_LIMIT,
) -> pagination.Page[PoseView]:
    """Poses by id, filtered by category slug, exact tag and a case-insensitive text search."""
    stmt = _joined(select(*_POSE_COLUMNS)).where(visible(include_private))
    if category:
        stmt = stmt.where(C.slug == category)
    if tag:
        # Tags are a small JSON list; matching its serialised form works the same on both
        # engines and the library is small enough that no index is needed.
        needle = _like_escape(json.dumps(tag.strip().lower()))
        stmt = stmt.where(cast(L.tags, String).like(f"%{needle}%", escape="\\"))
    if q:
        pattern = f"%{_like_escape(q.strip().lower())}%"
        stmt = stmt.where(
            or_(
                func.lower(L.name).like(pattern, escape="\\"),
                func.lower(L.description).like(pattern, escape="\\"),
                func.lower(L.slug).like(pattern, escape="\\"),
            )
        )
    if cursor:
        (after,) = pagination.decode(cursor, int)
        stmt = stmt.where(L.id > after)
    stmt = stmt.order_by(L.id).limit(limit + 1)
    with read_connection(engine) as conn:
        rows = [_pose(r) for r in conn.execute(stmt)]
    return pagination.page(rows, limit, lambda v: (v.id,))


def _get(
    conn: Connection, pose_id: int, include_private: bool, viewer_id: int | None = None
) -> PoseView:
    stmt = _joined(select(*_POSE_COLUMNS)).where(
        L.id == pose_id, visible(include_private, viewer_id)
    )
    row = conn.execute(stmt).first()
    if row is None:
        raise NotFound(f"pose {pose_id} not found")
    return _pose(row)


def get_pose(
    engine: Engine, pose_id: int, *, include_private: bool, viewer_id: int | None = None
) -> PoseView:
    """One pose the caller sees (see :func:`visible`), else 404 ``not-found``."""
    with read_connection(engine) as conn:
        return _get(conn, pose_id, include_private, viewer_id)


@dataclass(frozen=True)
class PoseCheck:
    """What one read says of the pose ids a submit names."""

    #: The ids the caller cannot use (unknown, unpublished to a non-admin, someone else's).
    missing: list[int]
    #: (id, name) of the usable ones that are premium (:mod:`posegen.library.premium`).
    premium: list[tuple[int, str]]


def check_poses(
    engine: Engine,
    pose_ids: list[int],
    *,
    include_private: bool,
    viewer_id: int | None = None,
) -> PoseCheck:
    """One read of ``pose_ids``: which the caller cannot use, and which are premium."""
    if not pose_ids:
        return PoseCheck([], [])
    stmt = (
        select(L.id, L.name, L.premium)
        .where(L.id.in_(pose_ids), visible(include_private, viewer_id))
        .order_by(L.id)
    )
    with read_connection(engine) as conn:
        rows = conn.execute(stmt).all()
    found = {r.id for r in rows}
    return PoseCheck(
        [p for p in pose_ids if p not in found],
        [(int(r.id), str(r.name)) for r in rows if r.premium],
    )


def missing_poses(
    engine: Engine,
    pose_ids: list[int],
    *,
    include_private: bool,
    viewer_id: int | None = None,
) -> list[int]:
    """The ids in ``pose_ids`` the caller cannot use (unknown, unpublished to a non-admin, or
    someone else's private pose)."""
    return check_poses(
        engine, pose_ids, include_private=include_private, viewer_id=viewer_id
    ).missing


def _category_id(conn: Connection, category: str | int) -> int:
    found = None
    if isinstance(category, str):
        found = conn.execute(select(C.id).where(C.slug == category)).scalar_one_or_none()
    if found is None and (isinstance(category, int) or category.isdecimal()):
        # Form fields are text: "3" may be an id (a slug of digits was tried first).
        category_id = int(category)
        if category_id < 2**63:
            found = conn.execute(select(C.id).where(C.id == category_id)).scalar_one_or_none()
    if found is None:
        raise InvalidInput(f"unknown category {category!r}", kind="unknown-category")
    return int(found)


def _check(values: dict[str, Any]) -> dict[str, Any]:
    for column in ("name", "description", "tags", "is_public"):
        if column in values and values[column] is None:
            # Explicit nulls would reach a NOT NULL column and read as a slug conflict.
            raise InvalidInput(f"{column} cannot be null", kind="invalid-input")
    if "slug" in values and not SLUG.match(values["slug"] or ""):  # null is not a slug either
        raise InvalidInput("slug: lowercase letters, digits and '-', 1-100", kind="invalid-slug")
    if "tags" in values:
        values["tags"] = sorted({t.strip().lower() for t in values["tags"] if t.strip()})
    if values.get("keypoints") is not None:
        # Every writer stores the one canonical pose shape, whatever shape it was given in.
        values["keypoints"] = pose_json(values["keypoints"])
    for column in ("difficulty", "suitability", "framing", "featured", "premium"):
        if column in values and values[column] is None:
            values.pop(column)  # null: leave as it is (a new pose gets the default)
    return attributes.check(values)


def _has_map(values: dict[str, Any]) -> bool:
    return (
        values.get("keypoints") is not None
        or bool(values.get("controlnet_map_url"))
        or values.get("map_upload_id") is not None
    )


def create_pose(
    engine: Engine, category: str | int, *, owner_id: int | None = None, **values: Any
) -> PoseView:
    """Insert a pose; needs keypoints, a map URL or a map upload that ``owner_id`` (the admin
    acting) owns (the table checks the first part too)."""
    values = _check(values)
    if not _has_map(values):
        raise InvalidInput("a pose needs keypoints or a map", kind="missing-map")
    attributes.sync_framing(values)
    try:
        with write_transaction(engine) as conn:
            _attach_map(conn, values, owner_id)
            pose_id = conn.execute(
                insert(L).values(category_id=_category_id(conn, category), **values).returning(L.id)
            ).scalar_one()
            return _get(conn, pose_id, True)
    except IntegrityError as exc:
        raise Conflict(
            f"a pose with slug {values.get('slug')!r} exists", kind="slug-taken"
        ) from exc


def update_pose(
    engine: Engine,
    pose_id: int,
    category: str | int | None = None,
    *,
    owner_id: int | None = None,
    **values: Any,
) -> PoseView:
    """Change the fields given; the caller releases (``uploads.release``) a map upload this
    replaced."""
    values = _check(values)
    try:
        with write_transaction(engine) as conn:
            current = _get(conn, pose_id, True)
            attributes.sync_framing(values, current.keypoints)
            if category is not None:
                values["category_id"] = _category_id(conn, category)
            after = {
                "keypoints": values.get("keypoints", current.keypoints),
                "controlnet_map_url": values.get("controlnet_map_url", current.controlnet_map_url),
                "map_upload_id": values.get("map_upload_id", current.map_upload_id),
            }
            if not _has_map(after):
                raise InvalidInput("a pose needs keypoints or a map", kind="missing-map")
            if values.get("map_upload_id") not in (None, current.map_upload_id):
                _attach_map(conn, values, owner_id)
            if values:
                conn.execute(update(L).where(L.id == pose_id).values(**values))
            return _get(conn, pose_id, True)
    except IntegrityError as exc:
        raise Conflict(
            f"a pose with slug {values.get('slug')!r} exists", kind="slug-taken"
        ) from exc


def _attach_map(conn: Connection, values: dict[str, Any], owner_id: int | None) -> None:
    upload_id = values.get("map_upload_id")
    if upload_id is None:
        return
    if owner_id is None:
        raise InvalidInput("a map upload needs the admin who owns it", kind="unknown-upload")
    uploads.attach(conn, upload_id, owner_id)


def delete_pose(engine: Engine, pose_id: int) -> int | None:
    """Delete a pose; results made from it keep their images (their pose_id becomes null).
    Returns its map upload's id, for the caller to :func:`uploads.release`."""
    with write_transaction(engine) as conn:
        upload_id = conn.execute(
            # A user's private pose is the owner's to delete (posegen.library.private).
            select(L.map_upload_id)
            .where(L.id == pose_id, L.owner_user_id.is_(None))
            .with_for_update()
        ).first()
        if upload_id is None:
            raise NotFound(f"pose {pose_id} not found")
        conn.execute(delete(L).where(L.id == pose_id))
        return upload_id[0]


# What posegen.library.query builds its discovery reads from (the same columns and joins).
POSE_COLUMNS = _POSE_COLUMNS
joined = _joined
pose_view = _pose


def pose_query() -> Any:
    """The select every pose read starts from (category, map upload and its owner joined);
    turn its rows into :class:`PoseView` with :func:`to_view`. Add a :func:`visible` filter."""
    return _joined(select(*_POSE_COLUMNS))


def to_view(row: Any) -> PoseView:
    return _pose(row)


def category_id(conn: Connection, category: str | int) -> int:
    """The id of a category named by slug or id (422 ``unknown-category``)."""
    return _category_id(conn, category)


def get_pose_in(conn: Connection, pose_id: int) -> PoseView:
    """A library pose (public or not; never a private one) in the caller's transaction."""
    return _get(conn, pose_id, True)
