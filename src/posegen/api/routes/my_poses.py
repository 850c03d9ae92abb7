"""A user's private poses (``/me/poses``): theirs alone, usable in their own generations.
Made from keypoints, from a map image, or from a photo (the vision helper extracts the pose).

Another user (admins included) naming one gets 404, exactly as for an id that does not exist.
Admins can promote one to the public library (``POST /admin/poses/{id}/promote``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from posegen import catalog, library, uploads, vision
from posegen.api import forms
from posegen.api.deps import AdminUser, CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.library import pose_out
from posegen.api.routes.vision import PhotoWarningOut
from posegen.api.schemas import Page, PoseOut
from posegen.api.schemas_community import PrivatePoseCreate, PrivatePoseUpdate, PromoteBody
from posegen.exceptions import InvalidInput

router = APIRouter(tags=["my poses"])

Limit = Annotated[int, Query(ge=1, le=200, description="Page size.")]
Cursor = Annotated[str | None, Query(max_length=200, description="From `nextCursor`.")]


@router.get("/me/poses", response_model=Page[PoseOut])
def list_my_poses(
    request: Request, user: CurrentUser, engine: EngineDep, cursor: Cursor = None, limit: Limit = 50
) -> Page[PoseOut]:
    """Your private poses, newest first."""
    page = library.list_private_poses(engine, user.id, cursor=cursor, limit=limit)
    return Page[PoseOut](
        items=[pose_out(request, p) for p in page.items], next_cursor=page.next_cursor
    )


class CreatedPoseOut(PoseOut):
    warnings: list[PhotoWarningOut] = Field(
        default_factory=list,
        description="From a photo: what the extraction noticed (several-people, partial-body).",
    )


def _create_body() -> dict[str, Any]:
    doc = forms.request_body(
        PrivatePoseCreate, "map", "An OpenPose map image (stored as your upload)."
    )
    form = doc["requestBody"]["content"]["multipart/form-data"]["schema"]
    form["properties"]["photo"] = {
        "type": "string",
        "format": "binary",
        "description": "Or a photo of a person (PNG, JPEG or WebP; not kept): its pose is saved.",
    }
    return doc


@router.post(
    "/me/poses",
    status_code=201,
    response_model=CreatedPoseOut,
    responses=problems(413, 503),
    openapi_extra=_create_body(),
)
async def create_my_pose(
    request: Request, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> CreatedPoseOut:
    """Save a private pose from keypoints (canonical pose JSON or 18 `[x, y]` points), from one
    of your uploads (`mapUploadId`), from a map image file (multipart field `map`), or from a
    photo (multipart field `photo`, checked like an upload and not kept: the person's pose is
    extracted and saved, with the extraction's `warnings`). A photo without a person is 422
    `no-person-found`; 503 `vision-not-installed` without the vision environment."""
    body, field, upload = await forms.read_body_file(
        request, PrivatePoseCreate, settings, ("map", "photo")
    )
    if field == "photo" and upload is not None:
        if body.map_upload_id is not None or body.keypoints is not None:
            raise InvalidInput("give one pose source", kind="two-maps")
        photo = upload
        made, warnings = await run_in_threadpool(
            lambda: vision.create_private_pose_from_photo(
                engine,
                settings,
                user.id,
                photo,
                body.name,
                description=body.description or "",
                category=body.category,
                tags=body.tags or (),
            )
        )
        return _created(request, made, [PhotoWarningOut(**w.to_json()) for w in warnings])
    map_upload_id = body.map_upload_id
    if upload is not None:
        if map_upload_id is not None or body.keypoints is not None:
            raise InvalidInput("give one map source", kind="two-maps")
        stored = await run_in_threadpool(uploads.store, engine, settings, user.id, upload)
        map_upload_id = stored.id
    pose = await run_in_threadpool(
        lambda: library.create_private_pose(
            engine,
            user.id,
            body.keypoints,
            body.name,
            description=body.description or "",
            category=body.category,
            tags=body.tags or (),
            map_upload_id=map_upload_id,
        )
    )
    return _created(request, pose, [])


def _created(
    request: Request, pose: catalog.PoseView, warnings: list[PhotoWarningOut]
) -> CreatedPoseOut:
    return CreatedPoseOut(**dict(pose_out(request, pose)), warnings=warnings)


@router.get("/me/poses/{pose_id}", response_model=PoseOut, responses=problems(404))
def get_my_pose(request: Request, pose_id: PathId, user: CurrentUser, engine: EngineDep) -> PoseOut:
    return pose_out(request, library.get_private_pose(engine, user.id, pose_id))


@router.patch("/me/poses/{pose_id}", response_model=PoseOut, responses=problems(404))
def update_my_pose(
    request: Request, pose_id: PathId, body: PrivatePoseUpdate, user: CurrentUser, engine: EngineDep
) -> PoseOut:
    """Rename (or re-describe, re-tag, re-file) one of your poses."""
    pose = library.update_private_pose(
        engine,
        user.id,
        pose_id,
        name=body.name,
        description=body.description,
        tags=body.tags,
        category=body.category,
    )
    return pose_out(request, pose)


@router.delete("/me/poses/{pose_id}", status_code=204, responses=problems(404))
def delete_my_pose(
    pose_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete one of your poses; results made from it keep their images. Its map upload goes
    when nothing else uses it."""
    upload_id = library.delete_private_pose(engine, user.id, pose_id)
    uploads.release(engine, settings, upload_id)
    return Response(status_code=204)


@router.post("/admin/poses/{pose_id}/promote", response_model=PoseOut, responses=problems(404, 409))
def promote_pose(
    request: Request,
    pose_id: PathId,
    body: PromoteBody,
    admin: AdminUser,
    engine: EngineDep,
    settings: SettingsDep,
) -> PoseOut:
    """Make a user's private pose a public library pose (admin), in `category`."""
    pose = library.promote_private_pose(
        engine, settings, pose_id, admin.id, body.category, slug=body.slug, name=body.name
    )
    return pose_out(request, pose)
