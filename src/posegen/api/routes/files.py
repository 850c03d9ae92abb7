"""Results of a generation: the list, image and thumbnail downloads, and a streamed ZIP.

Files are served from the result store after the same visibility check as the generation
itself (owner or admin); there is no public static folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import FileResponse, StreamingResponse

from posegen import exporting, generations_read
from posegen.api import downloads
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep, is_admin
from posegen.api.openapi import problems
from posegen.api.routes.generations import GenerationDep
from posegen.api.schemas import ExportOut, ResultOut, VariantOut
from posegen.api.zipstream import stream_zip
from posegen.backgrounds import records as background_records
from posegen.backgrounds.records import Variant
from posegen.exceptions import NotFound
from posegen.exporting import records
from posegen.exporting.records import ExportFile
from posegen.storage import delete_results, make_storage

router = APIRouter(prefix="/generations", tags=["results"])


def _url(request: Request, generation_id: int, result_id: int, what: str) -> str:
    return request.url_for(
        "result_file", generation_id=generation_id, result_id=result_id, what=what
    ).path


def result_out(
    request: Request, generation_id: int, r: generations_read.ResultRow, *, admin: bool = False
) -> ResultOut:
    """The API view; ``error_detail`` (raw failure text) only for an admin caller."""
    return ResultOut(
        id=r.id,
        variation_key=r.variation_key,
        pose_id=r.pose_id,
        variation_index=r.variation_index,
        status=r.status,
        seed=r.seed,
        prompt_used=r.prompt_used,
        duration_ms=r.duration_ms,
        error_kind=r.error_kind,
        error_message=r.error_message,
        error_detail=r.error_detail if admin else None,
        image_url=_url(request, generation_id, r.id, "image") if r.image_path else None,
        thumbnail_url=_url(request, generation_id, r.id, "thumbnail") if r.thumbnail_path else None,
        created_at=r.created_at,
        backend=r.backend,
        model=r.model,
        preview=r.preview,
    )


@router.get(
    "/{generation_id}/results",
    name="generation_results",
    response_model=list[ResultOut],
    responses=problems(404),
)
def list_results(
    request: Request, generation: GenerationDep, user: CurrentUser, engine: EngineDep
) -> list[ResultOut]:
    """Every finished or failed pose variation so far, in the order they were written."""
    exports = records.formats_by_result(engine, generation.id)
    variants = background_records.by_result(engine, generation.id)
    variant_exports = records.by_variant(engine, generation.id) if variants else {}
    out = []
    for r in generations_read.results(engine, generation.id):
        item = result_out(request, generation.id, r, admin=is_admin(user))
        item.exports = [
            ExportOut(
                format=f.format,
                url=request.url_for(
                    "result_export", generation_id=generation.id, result_id=r.id, fmt=f.format
                ).path,
                width=f.width,
                height=f.height,
                bytes=f.bytes,
                content_type=f.content_type,
            )
            for f in exports.get(r.id, ())
        ]
        item.variants = [
            _variant_out(request, generation.id, v, variant_exports.get(v.id, ()))
            for v in variants.get(r.id, ())
        ]
        out.append(item)
    return out


def _variant_out(
    request: Request, generation_id: int, v: Variant, exports: Sequence[ExportFile] = ()
) -> VariantOut:
    def url(what: str) -> str:
        return request.url_for(
            "result_variant_file",
            generation_id=generation_id,
            result_id=v.result_id,
            variant_id=v.id,
            what=what,
        ).path

    return VariantOut(
        id=v.id,
        kind=v.kind,
        background=v.params,
        image_url=url("image"),
        thumbnail_url=url("thumbnail"),
        width=v.width,
        height=v.height,
        bytes=v.bytes,
        created_at=v.created_at,
        exports=[
            ExportOut(
                format=f.format,
                url=request.url_for(
                    "variant_export",
                    generation_id=generation_id,
                    result_id=v.result_id,
                    variant_id=v.id,
                    fmt=f.format,
                ).path,
                width=f.width,
                height=f.height,
                bytes=f.bytes,
                content_type=f.content_type,
            )
            for f in exports
        ],
    )


@router.get(
    "/{generation_id}/results/{result_id}/{what}",
    name="result_file",
    response_class=FileResponse,
    responses={
        200: {
            "description": "The image (PNG) or its thumbnail (JPEG).",
            "content": {"image/png": {}, "image/jpeg": {}},
        },
        304: {"description": "Not modified: `If-None-Match` named the current `ETag`."},
        307: {"description": "Redirect to a presigned URL (``POSEGEN_S3_DOWNLOAD=redirect``)."},
        **problems(404, 503),
    },
)
def result_file(
    request: Request,
    generation: GenerationDep,
    result_id: PathId,
    what: Literal["image", "thumbnail"],
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """Download one result image or its thumbnail (``ETag`` and 304 on a matching
    ``If-None-Match`` from the local store; with ``POSEGEN_S3_DOWNLOAD=redirect``, a 307 to a
    short-lived presigned URL of the object store)."""
    row = generations_read.result(engine, generation.id, result_id)
    rel = row.image_path if what == "image" else row.thumbnail_path
    if rel is None:
        raise NotFound(f"result {result_id} has no {what}")
    suffix = "png" if what == "image" else "jpg"
    return downloads.stored_file(
        request,
        settings,
        rel,
        max_age=3600,
        filename=f"generation-{generation.id}-{row.variation_key}.{suffix}",
    )


@router.get(
    "/{generation_id}/archive",
    response_class=StreamingResponse,
    responses={
        200: {"description": "A ZIP of every completed image.", "content": {"application/zip": {}}},
        **problems(404),
    },
)
def archive(
    generation: GenerationDep,
    engine: EngineDep,
    settings: SettingsDep,
    formats: Annotated[
        str | None,
        Query(
            max_length=2000,
            pattern=r"^[a-z0-9][a-z0-9_-]{0,63}(,[a-z0-9][a-z0-9_-]{0,63})*$",
            description="Export formats, comma-separated: the ZIP holds `format/pose-v1.ext` "
            "folders of those exports instead of the images (404 when none was made).",
        ),
    ] = None,
) -> StreamingResponse:
    """All completed images as one ZIP, streamed (never built in memory); with ``formats``,
    the exports in those formats, one folder per format."""
    if formats is not None:
        wanted = list(dict.fromkeys(formats.split(",")))
        entries = exporting.archive_members(engine, make_storage(settings), generation.id, wanted)
        if not entries:
            raise NotFound(f"generation {generation.id} has no exports in {', '.join(wanted)}")
        return StreamingResponse(
            stream_zip(entries),
            media_type="application/zip",
            headers={
                "Content-Disposition": f'attachment; filename="generation-{generation.id}'
                f'-exports.zip"'
            },
        )
    entries = generations_read.archive_files(engine, settings, generation.id)
    return StreamingResponse(
        stream_zip(entries),
        media_type="application/zip",
        headers={"Content-Disposition": f'attachment; filename="generation-{generation.id}.zip"'},
    )


#: Kept under its old name for the project route.
remove_results = delete_results
