"""Uploads (owner only): send an image once, then name it by id in projects and poses."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from posegen import uploads
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.forms import MAX_FIELD_BYTES
from posegen.api.openapi import problems
from posegen.api.schemas import Page, UploadOut
from posegen.exceptions import InvalidInput

router = APIRouter(prefix="/uploads", tags=["uploads"])

FILE_FIELD = "file"
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": [FILE_FIELD],
                    "properties": {
                        FILE_FIELD: {
                            "type": "string",
                            "format": "binary",
                            "description": "PNG, JPEG or WebP; kept as sent once fully decoded.",
                        }
                    },
                }
            }
        },
    }
}


def upload_out(request: Request, u: uploads.UploadView) -> UploadOut:
    return UploadOut(
        id=u.id,
        sha256=u.sha256,
        width=u.width,
        height=u.height,
        bytes=u.bytes,
        content_type=u.content_type,
        created_at=u.created_at,
        content_url=request.url_for("upload_content", upload_id=u.id).path,
    )


async def read_upload_file(
    request: Request, settings: SettingsDep, field: str = FILE_FIELD
) -> bytes:
    """The one file of a multipart body (field ``file`` unless named), capped at
    ``upload_max_bytes``."""
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media != "multipart/form-data":
        raise InvalidInput(
            f"send multipart/form-data with a {field!r} file", kind="unsupported-media-type"
        )
    form = await request.form(max_files=1, max_fields=5, max_part_size=MAX_FIELD_BYTES)
    try:
        value = form.get(field)
        if not isinstance(value, UploadFile):
            raise InvalidInput(f"no {field!r} file in the form", kind="missing-file")
        data = await value.read(settings.upload_max_bytes + 1)
    finally:
        await form.close()
    if len(data) > settings.upload_max_bytes:
        raise InvalidInput(
            f"upload is over the {settings.upload_max_bytes}-byte limit", kind="upload-too-large"
        )
    return data


@router.post(
    "",
    status_code=201,
    response_model=UploadOut,
    responses=problems(413, 422, 503),
    openapi_extra=_BODY,
)
async def create_upload(
    request: Request, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> UploadOut:
    """Store an image as one of your uploads (the same bytes again give the same upload).

    413 `upload-quota-exceeded` past `POSEGEN_USER_UPLOAD_QUOTA_BYTES`."""
    data = await read_upload_file(request, settings)
    stored = await run_in_threadpool(uploads.store, engine, settings, user.id, data)
    return upload_out(request, stored)


@router.get("", response_model=Page[UploadOut])
def list_uploads(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[UploadOut]:
    """Your uploads, newest first."""
    page = uploads.list_for(engine, user.id, cursor=cursor, limit=limit)
    return Page[UploadOut](
        items=[upload_out(request, u) for u in page.items], next_cursor=page.next_cursor
    )


@router.get("/{upload_id}", response_model=UploadOut, responses=problems(404))
def get_upload(
    request: Request, upload_id: PathId, user: CurrentUser, engine: EngineDep
) -> UploadOut:
    return upload_out(request, uploads.get(engine, upload_id, user.id))


@router.get(
    "/{upload_id}/content",
    name="upload_content",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/jpeg": {}, "image/webp": {}}},
        **problems(404),
    },
)
def upload_content(
    request: Request, upload_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """The stored bytes (owner only)."""
    view = uploads.get(engine, upload_id, user.id)
    etag = f'"{view.sha256}"'
    headers = {
        "ETag": etag,
        "Cache-Control": "private, max-age=3600",
        # User-supplied bytes on the API's origin: never sniffed as anything but the checked
        # image type, and inert even if opened as a document.
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "default-src 'none'; sandbox",
    }
    if request.headers.get("if-none-match") == etag:
        return Response(status_code=304, headers=headers)
    _view, data = uploads.content(engine, settings, upload_id, user.id)
    return Response(data, media_type=view.content_type, headers=headers)


@router.delete("/{upload_id}", status_code=204, responses=problems(404, 409))
def delete_upload(
    upload_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete an upload and its file (409 `upload-in-use` while a project or pose uses it)."""
    uploads.delete_upload(engine, settings, upload_id, user.id)
    return Response(status_code=204)
