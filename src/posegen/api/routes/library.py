"""The pose library: categories, poses (filters + cursor pages), pose maps; admin edits."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, cast

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool

from posegen import catalog, projects, uploads
from posegen.api import forms
from posegen.api.deps import AdminUser, CurrentUser, EngineDep, PathId, SettingsDep, is_admin
from posegen.api.openapi import problems
from posegen.api.schemas import (
    CategoryOut,
    Difficulty,
    Framing,
    Page,
    PoseCreate,
    PoseOut,
    PoseWrite,
    Suitability,
)
from posegen.controlnet import MapResult
from posegen.exceptions import FetchError, InvalidInput, NotFound, PosegenError
from posegen.library import load_pose_map, query
from posegen.pose import pose_json

router = APIRouter(prefix="/library", tags=["library"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=200, description="From `nextCursor`.")]


def pose_out(request: Request, pose: catalog.PoseView) -> PoseOut:
    return PoseOut(
        id=pose.id,
        slug=pose.slug,
        name=pose.name,
        description=pose.description,
        category_id=pose.category_id,
        category_slug=pose.category_slug,
        tags=pose.tags,
        keypoints=pose.keypoints,
        controlnet_map_url=pose.controlnet_map_url,
        map_upload_id=pose.map_upload_id,
        preview_image_url=pose.preview_image_url,
        is_public=pose.is_public,
        map_url=request.url_for("pose_map", pose_id=pose.id).path,
        created_at=pose.created_at,
        difficulty=cast(Difficulty, pose.difficulty),
        suitability=cast(Suitability, pose.suitability),
        framing=cast(Framing, pose.framing),
        featured=pose.featured,
        premium=pose.premium,
        source=pose.source,
        licence=pose.licence,
        author=pose.author,
        popularity=pose.popularity,
        use_count=pose.use_count,
        favorite_count=pose.favorite_count,
        rating_average=pose.rating_average,
        rating_count=pose.rating_count,
        is_favorite=pose.is_favorite,
        my_rating=pose.my_rating,
    )


@router.get("/categories", response_model=list[CategoryOut])
def list_categories(user: CurrentUser, engine: EngineDep) -> list[CategoryOut]:
    """The category tree, depth first (each after its parent, siblings in order), with the
    number of poses visible to the caller in each (live: counted by the query)."""
    rows = query.category_tree(engine, include_private=is_admin(user))
    return [CategoryOut.model_validate(r, from_attributes=True) for r in rows]


@router.get("/poses", response_model=Page[PoseOut], responses=problems(422))
def list_poses(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    category: Annotated[
        str | None, Query(max_length=64, description="Category slug (its children included).")
    ] = None,
    tag: Annotated[
        list[str] | None, Query(max_length=10, description="A tag; repeat: every one of them.")
    ] = None,
    difficulty: Annotated[Difficulty | None, Query()] = None,
    framing: Annotated[Framing | None, Query()] = None,
    suitability: Annotated[Suitability | None, Query()] = None,
    featured: Annotated[bool | None, Query(description="Featured poses only (or not).")] = None,
    favorites: Annotated[bool, Query(description="Only your favourites.")] = False,
    q: Annotated[str | None, Query(max_length=100, description="Text search.")] = None,
    sort: Annotated[
        Literal["popular", "newest", "name", "relevance"] | None,
        Query(description="Default: relevance with `q`, else popular."),
    ] = None,
    cursor: Cursor = None,
    limit: Limit = 50,
) -> Page[PoseOut]:
    """Poses you can see, filtered and sorted, in keyset pages."""
    tags = tuple(t[:50] for t in tag or ())
    filters = query.PoseFilters(
        category=category,
        tags=tags,
        difficulty=difficulty,
        framing=framing,
        suitability=suitability,
        featured=featured,
        favorites=favorites,
        q=q,
    )
    page = query.list_poses(
        engine,
        filters,
        viewer_id=user.id,
        include_private=is_admin(user),
        sort=sort,
        cursor=cursor,
        limit=limit,
    )
    return Page[PoseOut](
        items=[pose_out(request, p) for p in page.items], next_cursor=page.next_cursor
    )


@router.get("/poses/{pose_id}", response_model=PoseOut, responses=problems(404))
def get_pose(request: Request, pose_id: PathId, user: CurrentUser, engine: EngineDep) -> PoseOut:
    pose = query.get_pose(engine, pose_id, viewer_id=user.id, include_private=is_admin(user))
    return pose_out(request, pose)


@router.get(
    "/poses/{pose_id}/map",
    name="pose_map",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "The pose map."},
        **problems(404, 502),
    },
)
def pose_map(request: Request, pose_id: PathId, user: CurrentUser, engine: EngineDep) -> Response:
    """The ControlNet pose map as PNG (fetched safely and cached, or rendered from keypoints)."""
    pose = catalog.get_pose(engine, pose_id, include_private=is_admin(user), viewer_id=user.id)
    try:
        result = load_pose_map(request.app.state.map_cache, pose)
    except FetchError as exc:
        # The request was fine; the map it names could not be loaded (a stored row, not input).
        raise MapUnavailable(f"the map of pose {pose_id} could not be loaded: {exc.kind}") from exc
    return map_png(pose_id, result)


def map_png(pose_id: int, result: MapResult | None) -> Response:
    """A loaded pose map as the PNG answer (the API's and the dashboard's); None is 404 no-map."""
    if result is None:
        raise NotFound(f"pose {pose_id} has no map", kind="no-map")
    return Response(
        result.png,
        media_type="image/png",
        headers={"ETag": f'"{result.sha256}"', "Cache-Control": "private, max-age=300"},
    )


class MapUnavailable(PosegenError):
    kind = "map-unavailable"
    http_status = 502


def _slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:100] or "pose"


def _columns(body: PoseWrite, has_upload: bool) -> dict[str, Any]:
    """Columns to write. A pose has one map source: stored keypoints, a map URL or a map upload;
    a new one clears the others."""
    values = body.model_dump(exclude_unset=True, exclude={"category"})
    given = [
        name
        for name, present in (
            ("keypoints", values.get("keypoints") is not None),
            ("controlnetMapUrl", values.get("controlnet_map_url") is not None),
            ("mapUploadId", values.get("map_upload_id") is not None),
            ("map file", has_upload),
        )
        if present
    ]
    if len(given) > 1:
        raise InvalidInput(f"give one map source, not {' and '.join(given)}", kind="two-maps")
    if values.get("keypoints") is not None:
        values["keypoints"] = pose_json(values["keypoints"])  # 422 invalid-pose, said where
    if values.get("controlnet_map_url") is not None:
        values["controlnet_map_url"] = projects.check_image_url(values["controlnet_map_url"])
    if given:
        for column in ("keypoints", "controlnet_map_url", "map_upload_id"):
            values.setdefault(column, None)
    return values


async def _map_upload(
    engine: EngineDep,
    settings: SettingsDep,
    admin_id: int,
    values: dict[str, Any],
    upload: bytes | None,
) -> None:
    """A multipart ``map`` file becomes the admin's upload; its id goes into ``values``."""
    if upload is not None:
        stored = await run_in_threadpool(uploads.store, engine, settings, admin_id, upload)
        values["map_upload_id"] = stored.id


@router.post(
    "/poses",
    status_code=201,
    response_model=PoseOut,
    responses=problems(409),
    openapi_extra=forms.request_body(PoseCreate, "map", "Pose map image (PNG, JPEG or WebP)."),
)
async def create_pose(
    request: Request, admin: AdminUser, engine: EngineDep, settings: SettingsDep
) -> PoseOut:
    """Add a pose (admin): keypoints, a map URL, one of your uploads (`mapUploadId`) or a map
    image file (multipart; stored as your upload)."""
    body, upload = await forms.read_body(request, PoseCreate, settings, "map")
    values = _columns(body, upload is not None)
    if values.get("slug") is None:  # absent or null: made from the name
        values["slug"] = _slugify(body.name)
    await _map_upload(engine, settings, admin.id, values, upload)
    pose = await run_in_threadpool(
        lambda: catalog.create_pose(engine, body.category, owner_id=admin.id, **values)
    )
    return pose_out(request, pose)


@router.patch(
    "/poses/{pose_id}",
    response_model=PoseOut,
    responses=problems(404, 409),
    openapi_extra=forms.request_body(PoseWrite, "map", "New pose map image."),
)
async def update_pose(
    request: Request, pose_id: PathId, admin: AdminUser, engine: EngineDep, settings: SettingsDep
) -> PoseOut:
    """Change a pose (admin); only the fields given change. A replaced map upload is removed
    when nothing else uses it."""
    body, upload = await forms.read_body(request, PoseWrite, settings, "map")
    values = _columns(body, upload is not None)
    before = await run_in_threadpool(catalog.get_pose, engine, pose_id, include_private=True)
    await _map_upload(engine, settings, admin.id, values, upload)
    pose = await run_in_threadpool(
        lambda: catalog.update_pose(engine, pose_id, body.category, owner_id=admin.id, **values)
    )
    if before.map_upload_id not in (None, pose.map_upload_id):
        await run_in_threadpool(uploads.release, engine, settings, before.map_upload_id)
    return pose_out(request, pose)


@router.delete("/poses/{pose_id}", status_code=204, responses=problems(404))
def delete_pose(
    pose_id: PathId, admin: AdminUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete a pose (admin). Results made from it keep their images; its map upload goes when
    nothing else uses it."""
    upload_id = catalog.delete_pose(engine, pose_id)
    uploads.release(engine, settings, upload_id)
    return Response(status_code=204)
