"""Background changes of one result: queue one (202; a worker makes it as a follow-up task,
with progress on the generation's event stream), and download a changed image (a variant
beside the original). At submit, ``background`` on ``POST /generations`` asks for the same
change of every result."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Request, Response
from fastapi.concurrency import run_in_threadpool

from posegen import backgrounds, vision
from posegen.api import downloads
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep
from posegen.api.openapi import problems
from posegen.api.routes.generations import GenerationDep, IdempotencyKey
from posegen.api.schemas import BackgroundTaskOut
from posegen.backgrounds import records
from posegen.exceptions import NotFound

router = APIRouter(prefix="/generations", tags=["backgrounds"])

_EXAMPLE = {"mode": "solid", "color": "#1e90ff"}


@router.post(
    "/{generation_id}/results/{result_id}/background",
    status_code=202,
    response_model=BackgroundTaskOut,
    responses={
        200: {"model": BackgroundTaskOut, "description": "The same change was asked before."},
        **problems(402, 404, 409, 422, 503),
    },
)
async def change_background(
    request: Request,
    response: Response,
    generation: GenerationDep,
    result_id: PathId,
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
    body: Annotated[dict[str, Any], Body(examples=[_EXAMPLE])],
    idempotency_key: IdempotencyKey = None,
) -> BackgroundTaskOut:
    """Queue a new background for one completed result (owner only): ``solid`` (#RRGGBB),
    ``image`` (``uploadId`` of one of your uploads), ``blur`` (``radius`` optional) or
    ``prompt`` (backends that can inpaint). Charged ``POSEGEN_CREDITS_BACKGROUND_SURCHARGE``
    when queued, refunded if it fails. The same change (or the same Idempotency-Key) answers
    the same task, 200 and not charged again; the changed image is a variant of the result."""
    if generation.user_id != user.id:
        # Another's generation reads like none (an admin sees it, but does not spend for it).
        raise NotFound(f"generation {generation.id} not found", kind="not-found")
    bg = backgrounds.parse(body)
    backgrounds.check(engine, bg, user.id, generation.backend)
    vision.require(settings)
    done = await run_in_threadpool(
        backgrounds.request, engine, settings, generation.id, result_id, bg, idempotency_key
    )
    if not done.queued:
        response.status_code = 200
    return BackgroundTaskOut(
        generation_id=generation.id,
        result_id=done.result_id,
        task_id=done.task_id,
        task_key=done.task_key,
        status=done.status,
        queued=done.queued,
        background=done.background,
        price=done.price,
        events_url=request.url_for("generation_events", generation_id=generation.id).path,
    )


@router.get(
    "/{generation_id}/results/{result_id}/variants/{variant_id}/{what}",
    name="result_variant_file",
    responses={
        200: {
            "description": "The changed image (PNG) or its thumbnail (JPEG).",
            "content": {"image/png": {}, "image/jpeg": {}},
        },
        304: {"description": "Not modified: `If-None-Match` named the current `ETag`."},
        **problems(404, 503),
    },
)
def variant_file(
    request: Request,
    generation: GenerationDep,
    result_id: PathId,
    variant_id: PathId,
    what: Literal["image", "thumbnail"],
    engine: EngineDep,
    settings: SettingsDep,
) -> Response:
    """Download a changed image of one result, or its thumbnail (owner or admin)."""
    v = records.one(engine, generation.id, result_id, variant_id)
    rel = v.image_path if what == "image" else v.thumbnail_path
    suffix = "png" if what == "image" else "jpg"
    return downloads.stored_file(
        request,
        settings,
        rel,
        max_age=3600,
        filename=f"generation-{generation.id}-{v.variation_key}-{v.variant_key}.{suffix}",
    )
