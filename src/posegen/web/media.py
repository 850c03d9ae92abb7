"""What pages load besides HTML: the progress stream, result images, pose maps, the ZIP.

All of it is authorised by the session cookie with the same visibility rules as the pages, and
built from the same code as the API's routes (``api.sse.stream_response``, ``api.zipstream``).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.responses import Response, StreamingResponse

from posegen import catalog, exporting, generations_read
from posegen.api import downloads, sse
from posegen.api.routes.library import map_png
from posegen.api.zipstream import stream_zip
from posegen.controlnet import MapCache
from posegen.db.models import PoseStatus
from posegen.exceptions import InvalidInput, NotFound
from posegen.exporting import records
from posegen.library import load_pose_map
from posegen.storage import make_storage
from posegen.web.context import Ctx, PageRoute, SignedIn, WebContext
from posegen.web.generation_pages import owner_filter

router = APIRouter(route_class=PageRoute, include_in_schema=False)

#: Event ids are BIGINT: anything larger is not an id (and would overflow the bind).
MAX_EVENT_ID = 2**63 - 1
MAP_SIZES = (128, 256, 512)


def _last_event_id(request: Request) -> int:
    raw = request.headers.get("last-event-id") or request.query_params.get("after") or "0"
    try:
        value = int(raw)
    except ValueError as exc:
        raise InvalidInput("Last-Event-ID must be an event id") from exc
    if not 0 <= value <= MAX_EVENT_ID:
        raise InvalidInput("Last-Event-ID must be an event id")
    return value


@router.get("/generations/{generation_id:int}/events", name="web-events")
async def events(request: Request, ctx: Ctx, session: SignedIn, generation_id: int) -> Response:
    """Server-Sent Events of one generation (resumes after ``Last-Event-ID``)."""
    after = _last_event_id(request)
    # The visibility and replay check on the threads reserved for opening streams.
    owner = owner_filter(session)
    if await sse.check_open(request.app.state, ctx.engine, generation_id, owner, after):
        # 204 tells EventSource not to reconnect: the client already has every event.
        return Response(status_code=204)
    assert session.account is not None
    # The API's per-user cap: dashboard and API streams count together.
    slots: sse.StreamSlots = request.app.state.stream_slots
    # The API's stream, with the API's timings: the same events, ids and reconnects.
    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return slots.guard(
        session.account.id,
        sse.stream_response(request.app.state, ctx.engine, generation_id, after, headers),
    )


def _result_file(
    ctx: WebContext, session: Any, generation_id: int, result_id: int, kind: str
) -> str:
    generations_read.get_visible(ctx.engine, generation_id, owner_filter(session))
    row = generations_read.result(ctx.engine, generation_id, result_id)
    rel = row.image_path if kind == "image" else row.thumbnail_path
    if row.status != PoseStatus.COMPLETED or not rel:
        raise NotFound(f"result {result_id} has no {kind}")
    return rel


@router.get("/generations/{generation_id:int}/results/{result_id:int}/{kind}", name="web-result")
def result_file(
    request: Request, ctx: Ctx, session: SignedIn, generation_id: int, result_id: int, kind: str
) -> Response:
    """A finished image (``image``, PNG) or its thumbnail (``thumbnail``, JPEG)."""
    if kind not in ("image", "thumbnail"):
        raise NotFound(f"no {kind!r} for results")
    rel = _result_file(ctx, session, generation_id, result_id, kind)
    # Results never change once written: the browser may keep them (privately) for a day, and
    # revalidates with the ETag after that.
    return downloads.stored_file(request, ctx.settings, rel, max_age=86400)


def map_cache(request: Request, ctx: WebContext) -> MapCache:
    """The API's map cache when it has one (one per process), else the dashboard's own."""
    shared = getattr(request.app.state, "map_cache", None)
    if isinstance(shared, MapCache):
        return shared
    own = ctx.extras.get("map_cache")
    if own is None:
        own = ctx.extras["map_cache"] = MapCache(ctx.settings)
    assert isinstance(own, MapCache)
    return own


@router.get("/library/poses/{pose_id:int}/map.png", name="web-pose-map")
def pose_map(
    request: Request, ctx: Ctx, session: SignedIn, pose_id: int, size: int | None = None
) -> Response:
    """A pose's ControlNet map as PNG, at its own size or one of 128/256/512 px square."""
    if size is not None and size not in MAP_SIZES:
        raise InvalidInput(f"size must be one of {MAP_SIZES}")
    assert session.account is not None
    pose = catalog.get_pose(
        ctx.engine, pose_id, include_private=session.is_admin, viewer_id=session.account.id
    )
    result = load_pose_map(map_cache(request, ctx), pose, (size, size) if size else None)
    return map_png(pose_id, result)


@router.get(
    "/generations/{generation_id:int}/results/{result_id:int}/exports/{fmt}",
    name="web-result-export",
)
def result_export(
    request: Request, ctx: Ctx, session: SignedIn, generation_id: int, result_id: int, fmt: str
) -> Response:
    """One result's export in one format (the same file as the API's)."""
    generations_read.get_visible(ctx.engine, generation_id, owner_filter(session))
    row = records.one(ctx.engine, generation_id, result_id, fmt)
    return downloads.stored_file(request, ctx.settings, row.file.path, max_age=86400)


@router.get("/generations/{generation_id:int}/archive", name="web-archive")
def archive(
    ctx: Ctx, session: SignedIn, generation_id: int, formats: str | None = None
) -> Response:
    """Every finished image as one ZIP, streamed (never held in memory whole); with
    ``formats``, those exports in one folder per format."""
    generations_read.get_visible(ctx.engine, generation_id, owner_filter(session))
    if formats:
        wanted = list(dict.fromkeys(f for f in formats.split(",") if f))
        members = exporting.archive_members(
            ctx.engine, make_storage(ctx.settings), generation_id, wanted
        )
        if not members:
            raise NotFound(f"generation {generation_id} has no exports in {formats}")
        return StreamingResponse(
            stream_zip(members),
            media_type="application/zip",
            headers={
                "Content-Disposition": (
                    f'attachment; filename="generation-{generation_id}-{"-".join(wanted)}.zip"'
                ),
                "Cache-Control": "no-store",
            },
        )
    members = generations_read.archive_files(ctx.engine, ctx.settings, generation_id)
    if not members:
        raise NotFound(f"generation {generation_id} has no finished images yet")
    return StreamingResponse(
        stream_zip(members),
        media_type="application/zip",
        headers={
            "Content-Disposition": f'attachment; filename="generation-{generation_id}.zip"',
            "Cache-Control": "no-store",
        },
    )
