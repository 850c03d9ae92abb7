"""Poses from photos: ``POST /poses/extract`` (a multipart ``photo``) -> COCO-18 keypoints, the
canonical pose (what a private pose is created from), the rendered OpenPose map and warnings
(``?people=all``: every person, largest first, in ``people``);
``GET /uploads/{id}/detection`` (and ``/mask``): the person found in one of your uploads.

503 ``vision-not-installed`` where the vision environment is missing (``make install-vision``).
"""

from __future__ import annotations

import base64
import io
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from pydantic import Field

from posegen import vision
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.uploads import read_upload_file
from posegen.api.schemas import ApiModel
from posegen.config import Settings
from posegen.controlnet.render import render_pose
from posegen.exceptions import NotFound
from posegen.vision import subjects

router = APIRouter(prefix="/poses", tags=["vision"])
uploads_router = APIRouter(prefix="/uploads", tags=["vision"])

PHOTO_FIELD = "photo"
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [PHOTO_FIELD],
                    "properties": {
                        PHOTO_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "A photo of a person (PNG, JPEG or WebP); not kept.",
                        }
                    },
                }
            }
        },
    }
}


class PhotoWarningOut(ApiModel):
    kind: str = Field(description="no-person, several-people or partial-body")
    message: str


class PoseMapOut(ApiModel):
    width: int
    height: int
    png_base64: str = Field(description="The OpenPose map (openpose_full) as base64 PNG.")


class PersonOut(ApiModel):
    keypoints: list[list[float] | None] = Field(
        description="18 COCO points [x, y, confidence] normalised to the photo, or null."
    )
    box: list[float] = Field(description="[x0, y0, x1, y1] around the person's points.")
    hands: list[list[list[float] | None] | None] | None = Field(
        default=None, description="[left, right], 21 OpenPose hand points each, or null."
    )
    face: list[list[float] | None] | None = Field(
        default=None, description="The 70 OpenPose face points (68 iBUG + 2 pupils), or null."
    )


class ExtractOut(ApiModel):
    width: int = Field(description="The (upright) photo's width: the pose's canvas.")
    height: int
    keypoints: list[list[float] | None] = Field(
        description="18 COCO points [x, y, confidence] normalised to the photo, or null (with "
        "people=all: the largest person's)."
    )
    pose: dict[str, Any] | None = Field(
        description="The canonical pose JSON (canvas = the photo's size, body, hands, face); "
        "what a library or private pose is created from (with people=all: every person, largest "
        "first). Null when no person was found."
    )
    people_seen: int
    warnings: list[PhotoWarningOut]
    map: PoseMapOut | None
    people: list[PersonOut] | None = Field(
        default=None,
        description="With people=all: every person found, largest first (empty: none); "
        "otherwise null.",
    )


def extract_out(settings: Settings, data: bytes, every: bool = False) -> ExtractOut:
    """Run the extraction and render the map (blocking: call from a thread)."""
    found = vision.extract_all(settings, data) if every else vision.extract(settings, data)
    pose_map = None
    if found.pose is not None:
        image = render_pose(found.pose, found.width, found.height)
        buf = io.BytesIO()
        image.save(buf, "PNG")
        pose_map = PoseMapOut(
            width=image.width,
            height=image.height,
            png_base64=base64.b64encode(buf.getvalue()).decode(),
        )
    return ExtractOut(
        width=found.width,
        height=found.height,
        keypoints=found.keypoints(),
        pose=None if found.pose is None else found.pose.to_json(),
        people_seen=found.people_seen,
        warnings=[PhotoWarningOut(**w.to_json()) for w in found.warnings],
        map=pose_map,
        people=[PersonOut(**p) for p in found.people()] if every else None,
    )


@router.post(
    "/extract",
    response_model=ExtractOut,
    responses=problems(413, 422, 503),
    openapi_extra=_BODY,
)
async def extract_pose(
    request: Request,
    user: CurrentUser,
    settings: SettingsDep,
    people: Annotated[
        Literal["largest", "all"],
        Query(description="largest (default): one person; all: every person, largest first."),
    ] = "largest",
) -> ExtractOut:
    """The pose of the person in a photo (the largest one when there are several; every one,
    largest first, with `people=all`), with its OpenPose map. Checked like an upload (size,
    format, pixel cap); the photo is not stored.

    503 `vision-not-installed` without the vision environment (`make install-vision`),
    `vision-failed` / `vision-timeout` when the helper failed (retry)."""
    data = await read_upload_file(request, settings, PHOTO_FIELD)
    return await run_in_threadpool(extract_out, settings, data, people == "all")


class DetectionOut(ApiModel):
    upload_id: int
    status: str = Field(description="found or no-person")
    pose: dict[str, Any] | None = Field(description="Canonical pose JSON (canvas = the upload).")
    box: list[float] | None = Field(description="[x0, y0, x1, y1] normalised to the upload.")
    warnings: list[PhotoWarningOut]
    mask_url: str | None = Field(description="API path of the person mask (grayscale PNG).")


@uploads_router.get(
    "/{upload_id}/detection", response_model=DetectionOut, responses=problems(404, 503)
)
async def upload_detection(
    request: Request, upload_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> DetectionOut:
    """The person in one of your uploads (kept once found: a project's subject is detected right
    after it is uploaded; any other upload on this first request). 503 `vision-not-installed`
    without the vision environment."""
    found = await run_in_threadpool(subjects.detection, engine, settings, upload_id, user.id)
    mask_url = None
    if found.mask_png is not None:
        mask_url = request.url_for("upload_detection_mask", upload_id=upload_id).path
    return DetectionOut(
        upload_id=found.upload_id,
        status=found.status,
        pose=found.pose,
        box=found.box,
        warnings=[PhotoWarningOut(**w) for w in found.warnings],
        mask_url=mask_url,
    )


@uploads_router.get(
    "/{upload_id}/detection/mask",
    name="upload_detection_mask",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **problems(404)},
)
def upload_detection_mask(upload_id: PathId, user: CurrentUser, engine: EngineDep) -> Response:
    """The kept person mask of your upload (grayscale PNG, 255 = person); 404 until detected."""
    found = subjects.stored(engine, upload_id, user.id)
    if found is None or found.mask_png is None:
        raise NotFound(f"upload {upload_id} has no person mask", kind="detection-not-found")
    return Response(
        found.mask_png,
        media_type="image/png",
        headers={"Cache-Control": "private, max-age=3600", "X-Content-Type-Options": "nosniff"},
    )
