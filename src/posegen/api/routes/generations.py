"""Generations: submit (idempotent, limited), list, status, live events (SSE), cancel."""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from sqlalchemy import Engine

from posegen import (
    backends,
    backgrounds,
    catalog,
    exporting,
    generations_read,
    projects,
    queue,
    retention,
    vision,
)
from posegen.accounts import Account
from posegen.api import sse
from posegen.api.deps import CurrentUser, EngineDep, PathId, SettingsDep, is_admin
from posegen.api.openapi import problems
from posegen.api.schemas import MAX_ID, GenerationCreate, GenerationOut, Page
from posegen.config import Settings
from posegen.db.models import GenerationStatus, GenerationType, ProjectStatus
from posegen.exceptions import Conflict, Forbidden, InvalidInput
from posegen.library import premium
from posegen.storage import delete_results

log = logging.getLogger(__name__)

router = APIRouter(prefix="/generations", tags=["generations"])


def visible_generation(
    generation_id: PathId, user: CurrentUser, engine: EngineDep
) -> generations_read.GenerationView:
    """The generation if the caller owns it or is an admin; otherwise 404 (never 403)."""
    return generations_read.get_visible(engine, generation_id, None if is_admin(user) else user.id)


GenerationDep = Annotated[generations_read.GenerationView, Depends(visible_generation)]


def generation_out(
    request: Request,
    g: generations_read.GenerationView,
    *,
    admin: bool = False,
    warning: str | None = None,
) -> GenerationOut:
    """The API view; ``error_detail`` (raw failure text) only for an admin caller."""
    return GenerationOut(
        id=g.id,
        project_id=g.project_id,
        user_id=g.user_id,
        type=g.type,
        status=g.status,
        prompt=g.prompt,
        negative_prompt=g.negative_prompt,
        pose_ids=g.pose_ids,
        variations=g.variations,
        total=g.total,
        completed=g.completed,
        failed=g.failed,
        percent=g.percent,
        eta_seconds=g.eta_seconds(),
        width=g.width,
        height=g.height,
        seed=g.seed,
        priority=g.priority,
        attempts=g.attempts,
        max_attempts=g.max_attempts,
        cancel_requested=g.cancel_requested,
        error_kind=g.error_kind,
        error_message=g.error_message,
        error_detail=g.error_detail if admin else None,
        created_at=g.created_at,
        started_at=g.started_at,
        completed_at=g.completed_at,
        events_url=request.url_for("generation_events", generation_id=g.id).path,
        results_url=request.url_for("generation_results", generation_id=g.id).path,
        backend=g.backend,
        model=g.model,
        preview=g.preview,
        warning=warning,
        credit_charged=g.credit_charged,
        credit_refunded=g.credit_refunded,
        kept=g.kept,
        export_formats=list(g.export_formats),
        background=backgrounds.public(g.background),
    )


def _check_request(body: GenerationCreate, user: Account, settings: Settings) -> None:
    """Settings-dependent limits (422) and the admin-only priority (403)."""
    if body.priority not in (None, 0) and not is_admin(user):
        raise Forbidden("only admins may set a priority", kind="priority-admin-only")
    if body.variations > settings.max_variations:
        raise InvalidInput(
            f"variations must be 1-{settings.max_variations}", kind="too-many-variations"
        )
    poses = len(body.pose_ids or [])
    if poses > settings.max_poses_per_request:
        raise InvalidInput(
            f"at most {settings.max_poses_per_request} poses per request", kind="too-many-poses"
        )
    total = body.variations * max(poses, 1)
    if total > settings.max_total_poses:
        raise InvalidInput(
            f"{total} images requested; at most {settings.max_total_poses} per generation",
            kind="too-many-total-poses",
        )
    width = body.width or settings.default_width
    height = body.height or settings.default_height
    if width * height > settings.image_max_pixels:
        raise InvalidInput(f"{width}x{height} is over the pixel cap", kind="too-many-pixels")


def request_hash(body: GenerationCreate) -> str:
    """SHA-256 of the canonical request (what an Idempotency-Key is bound to)."""
    data = body.model_dump(mode="json")
    # Fields added later are left out while unset, so a body sent before they existed hashes
    # as it did then (an Idempotency-Key replayed across an upgrade is not a conflict).
    for late in ("backend", "model", "export_formats", "background"):
        if data.get(late) is None:
            data.pop(late, None)
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        pattern=r"^[\x21-\x7e]+$",
        description="Same key + same body = the same generation; another body = 409.",
    ),
]


@router.post(
    "",
    status_code=202,
    response_model=GenerationOut,
    responses={
        200: {"model": GenerationOut, "description": "Replay of an earlier Idempotency-Key"},
        **problems(402, 403, 404, 409, 413, 429),
    },
)
def create_generation(
    body: GenerationCreate,
    request: Request,
    response: Response,
    user: CurrentUser,
    engine: EngineDep,
    settings: SettingsDep,
    idempotency_key: IdempotencyKey = None,
) -> GenerationOut:
    """Queue a generation: library poses (`poseIds`) or a text-described pose (`textPrompt`)."""
    _check_request(body, user, settings)
    digest = request_hash(body)
    if idempotency_key is not None:
        earlier = generations_read.find_by_idempotency_key(engine, user.id, idempotency_key)
        if earlier is not None:
            if earlier[1] != digest:
                raise Conflict(
                    "this Idempotency-Key was used for a different request",
                    kind="idempotency-conflict",
                )
            response.status_code = 200
            return generation_out(request, generations_read.get_visible(engine, earlier[0], None))
    project = projects.get(engine, body.project_id, user.id)
    if project.status != ProjectStatus.ACTIVE:
        raise Conflict(f"project {project.id} is archived", kind="project-archived")
    if body.pose_ids:
        named = catalog.check_poses(
            engine, body.pose_ids, include_private=is_admin(user), viewer_id=user.id
        )
        if named.missing:
            raise InvalidInput(f"unknown pose ids: {named.missing[:10]}", kind="unknown-pose")
        premium.check(engine, settings, named.premium, user.id, admin=is_admin(user))
    export_formats = exporting.check(settings, body.export_formats) if body.export_formats else None
    backend = body.backend or settings.serving_backend
    background = None
    if body.background is not None:
        background = backgrounds.parse(body.background)
        backgrounds.check(engine, background, user.id, backend)
        vision.require(settings)
    warning = backends.check_served(engine, settings, backend, body.model)
    text = body.text_prompt is not None
    result = queue.submit(
        engine,
        settings,
        queue.GenerationRequest(
            user_id=user.id,
            project_id=project.id,
            type=GenerationType.TEXT if text else GenerationType.LIBRARY,
            pose_ids=list(body.pose_ids or []),
            variations=body.variations,
            prompt=body.text_prompt if text else body.prompt,
            negative_prompt=body.negative_prompt,
            width=body.width or settings.default_width,
            height=body.height or settings.default_height,
            seed=body.seed,
            priority=body.priority or 0,
            idempotency_key=idempotency_key,
            request_hash=digest,
            backend=backend,
            model=body.model,
            export_formats=tuple(export_formats) if export_formats else None,
            background=background,
        ),
        queue.SubmitLimits.from_settings(settings),
    )
    log.info(
        "generation submitted",
        extra={"generation_id": result.generation_id, "new": result.created},
    )
    view = generations_read.get_visible(engine, result.generation_id, None)
    response.status_code = 202 if result.created else 200
    response.headers["Location"] = request.url_for("get_generation", generation_id=view.id).path
    return generation_out(request, view, admin=is_admin(user), warning=warning)


@router.get("", response_model=Page[GenerationOut], responses=problems(403))
def list_generations(
    request: Request,
    user: CurrentUser,
    engine: EngineDep,
    status: GenerationStatus | None = None,
    user_id: Annotated[int | None, Query(alias="userId", ge=1, le=MAX_ID)] = None,
    project_id: Annotated[int | None, Query(alias="projectId", ge=1, le=MAX_ID)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Page[GenerationOut]:
    """The caller's generations, newest first; admins see everyone's (filter with `userId`)."""
    if not is_admin(user):
        if user_id is not None and user_id != user.id:
            raise Forbidden("only admins may list other users' generations")
        user_id = user.id
    page = generations_read.list_generations(
        engine, user_id=user_id, status=status, project_id=project_id, cursor=cursor, limit=limit
    )
    return Page[GenerationOut](
        items=[generation_out(request, g, admin=is_admin(user)) for g in page.items],
        next_cursor=page.next_cursor,
    )


@router.get(
    "/{generation_id}", name="get_generation", response_model=GenerationOut, responses=problems(404)
)
async def get_generation(
    request: Request, generation_id: PathId, user: CurrentUser, engine: EngineDep
) -> GenerationOut:
    """Status, counts, percent done, ETA and error of one generation."""
    # Async with the one read on a thread: a sync route with GenerationDep took three thread
    # hops (dependency, endpoint, response validation), each a wait for a thread and then for
    # the event loop, which is what a busy loop (thousands of event streams) stretched.
    generation = await run_in_threadpool(
        generations_read.get_visible, engine, generation_id, None if is_admin(user) else user.id
    )
    return generation_out(request, generation, admin=is_admin(user))


@router.get(
    "/{generation_id}/events",
    name="generation_events",
    # Not EventSourceResponse: FastAPI would then expect a generator endpoint, and this one first
    # decides between 204 and a stream.
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Event stream: `id` is the event id, `event` its kind, `data` JSON.",
            "content": {"text/event-stream": {"schema": sse.EVENT_SCHEMA}},
        },
        204: {"description": "The generation ended and the client has seen every event."},
        **problems(404, 429),
    },
)
async def generation_events(
    request: Request,
    generation_id: PathId,
    user: CurrentUser,
    engine: EngineDep,
    last_event_id: Annotated[
        int | None,
        Header(alias="Last-Event-ID", ge=0, le=MAX_ID, description="Resume after this event."),
    ] = None,
) -> Response:
    """Server-Sent Events: replay from `Last-Event-ID`, then live until the generation ends."""
    after = last_event_id or 0
    # Not GenerationDep: that check would take a thread of the routes' pool; a stream's opening
    # read runs on threads of its own (POSEGEN_SSE_OPEN_THREADS).
    owner = None if is_admin(user) else user.id
    if await sse.check_open(request.app.state, engine, generation_id, owner, after):
        return Response(status_code=204)
    slots: sse.StreamSlots = request.app.state.stream_slots
    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return slots.guard(
        user.id, sse.stream_response(request.app.state, engine, generation_id, after, headers)
    )


@router.delete("/{generation_id}", status_code=204, responses=problems(404, 409))
def delete_generation(
    generation_id: PathId, user: CurrentUser, engine: EngineDep, settings: SettingsDep
) -> Response:
    """Delete a finished generation (owner only; 409 while pending or running): its rows, then
    its images and thumbnails from the result store."""
    projects.remove_generation(engine, generation_id, user.id)
    delete_results(settings, [generation_id])
    return Response(status_code=204)


@router.put("/{generation_id}/keep", response_model=GenerationOut, responses=problems(404))
def keep_generation(
    request: Request, generation_id: PathId, user: CurrentUser, engine: EngineDep
) -> GenerationOut:
    """Keep the generation (owner only): the results retention never deletes it."""
    return _set_kept(request, engine, generation_id, user, True)


@router.delete("/{generation_id}/keep", response_model=GenerationOut, responses=problems(404))
def unkeep_generation(
    request: Request, generation_id: PathId, user: CurrentUser, engine: EngineDep
) -> GenerationOut:
    """Stop keeping it: once older than the results retention, the next prune deletes it."""
    return _set_kept(request, engine, generation_id, user, False)


def _set_kept(
    request: Request, engine: Engine, generation_id: int, user: Account, kept: bool
) -> GenerationOut:
    retention.set_kept(engine, generation_id, user.id, kept)
    view = generations_read.get_visible(engine, generation_id, user.id)
    return generation_out(request, view, admin=is_admin(user))


@router.post("/{generation_id}/cancel", response_model=GenerationOut, responses=problems(404, 409))
def cancel_generation(
    request: Request, generation: GenerationDep, user: CurrentUser, engine: EngineDep
) -> GenerationOut:
    """Cancel: a pending generation ends at once; a running one stops between poses."""
    queue.cancel(engine, generation.id, None if is_admin(user) else user.id)
    return generation_out(request, generations_read.get_visible(engine, generation.id, None))
