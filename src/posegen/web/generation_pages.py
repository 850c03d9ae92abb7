"""A user's generations: the list with live progress bars, the gallery of one, and cancel.

Users see their own generations; an admin sees everyone's. Another user's generation is "not
found" (as in the API), so ids cannot be probed. Cancelling goes through :mod:`posegen.queue`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import func, select
from starlette.responses import RedirectResponse, Response

from posegen import backends, catalog, exporting, generations_read, pagination, projects, queue
from posegen.db.engine import read_connection
from posegen.db.models import (
    GenerationEvent,
    GenerationStatus,
    GenerationTask,
    PoseStatus,
    TaskStatus,
)
from posegen.exceptions import Conflict, InvalidInput
from posegen.exporting import records
from posegen.observe import dblog, timeline
from posegen.web.background_pages import background_values
from posegen.web.context import (
    PREFIX,
    Admin,
    Ctx,
    PageRoute,
    SignedIn,
    WebContext,
    check_csrf,
    render,
)
from posegen.web.session import WebSession

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PAGE_SIZE = 25
#: Log lines shown on a generation's log page (a process keeps up to 1000 per generation).
LOG_LINES = 2000


def owner_filter(session: WebSession) -> int | None:
    """The user id reads are restricted to; None (everyone's) for admins."""
    assert session.account is not None
    return None if session.is_admin else session.account.id


def parse_status(value: str | None) -> GenerationStatus | None:
    if not value:
        return None
    try:
        return GenerationStatus(value)
    except ValueError as exc:
        raise InvalidInput(f"unknown status {value!r}") from exc


def pose_names(ctx: WebContext, pose_ids: set[int], include_private: bool) -> dict[int, str]:
    """Names of library poses by id (one query per page of the library, usually one)."""
    names: dict[int, str] = {}
    cursor: str | None = None
    while pose_ids - names.keys():
        page = catalog.list_poses(
            ctx.engine, include_private=include_private, cursor=cursor, limit=pagination.MAX_LIMIT
        )
        names.update({p.id: p.name for p in page.items})
        cursor = page.next_cursor
        if cursor is None:
            break
    return names


def project_names(ctx: WebContext, session: WebSession) -> dict[int, str]:
    """Names of the signed-in user's own projects (others' show as ids, for admins)."""
    assert session.account is not None
    page = projects.list_for(ctx.engine, session.account.id, limit=pagination.MAX_LIMIT)
    return {p.id: p.name for p in page.items}


@router.get("/generations", name="web-generations")
async def generations(
    request: Request,
    ctx: Ctx,
    session: SignedIn,
    status: str | None = None,
    cursor: str | None = None,
) -> Response:
    """Newest first; running ones get a progress bar fed by their event stream."""
    wanted = parse_status(status)
    page = await run_in_threadpool(
        lambda: generations_read.list_generations(
            ctx.engine,
            user_id=owner_filter(session),
            status=wanted,
            cursor=cursor,
            limit=PAGE_SIZE,
        )
    )
    names = await run_in_threadpool(project_names, ctx, session)
    values = {
        "items": page.items,
        "project_names": names,
        "next_cursor": page.next_cursor,
        "status": wanted.value if wanted else "",
        "statuses": [s.value for s in GenerationStatus],
        "terminal": _terminal_names(),
    }
    return render(request, "generations.html", values, session=session)


def _terminal_names() -> list[str]:
    return [s.value for s in GenerationStatus if s not in generations_read.ACTIVE_STATUSES]


def gallery(ctx: WebContext, session: WebSession, generation_id: int) -> dict[str, Any]:
    """The generation, its results in order, and the names of the poses they came from."""
    view = generations_read.get_visible(ctx.engine, generation_id, owner_filter(session))
    results = generations_read.results(ctx.engine, generation_id)
    ids = {r.pose_id for r in results if r.pose_id is not None} | set(view.pose_ids)
    names = pose_names(ctx, ids, include_private=session.is_admin)
    return {
        "project_names": project_names(ctx, session),
        "g": view,
        "results": results,
        "names": names,
        "done": sum(1 for r in results if r.status == PoseStatus.COMPLETED),
        "active": view.status in generations_read.ACTIVE_STATUSES,
        "terminal": _terminal_names(),
        # How the run went: per-pose timings for everyone, the trace id for operators.
        "timings": timeline.pose_timings(ctx.engine, generation_id),
        "trace_id": timeline.trace_id(ctx.engine, generation_id) if session.is_admin else None,
        "real_model_hint": backends.REAL_MODEL_HINT,
        **export_values(ctx, view),
        **background_values(ctx, session, view),
    }


def export_format_names(ctx: WebContext) -> list[str]:
    """The export formats to offer, by name."""
    return sorted(exporting.formats(ctx.settings))


def export_values(ctx: WebContext, view: generations_read.GenerationView) -> dict[str, Any]:
    """What the page shows of exports: each result's files, a ZIP per format, the formats to
    ask for, and (while export tasks run) where the live stream resumes."""
    by_result = records.formats_by_result(ctx.engine, view.id)
    per_format: dict[str, int] = {}
    for files in by_result.values():
        for f in files:
            per_format[f.format] = per_format.get(f.format, 0) + 1
    with read_connection(ctx.engine) as conn:
        open_tasks = conn.execute(
            select(func.count())
            .select_from(GenerationTask)
            .where(
                GenerationTask.generation_id == view.id,
                GenerationTask.status.in_((TaskStatus.PENDING, TaskStatus.PROCESSING)),
            )
        ).scalar_one()
        last_event = conn.execute(
            select(func.max(GenerationEvent.id)).where(GenerationEvent.generation_id == view.id)
        ).scalar_one()
    return {
        "exports": by_result,
        "export_zips": sorted(per_format.items()),
        "export_formats": export_format_names(ctx),
        "open_tasks": int(open_tasks),
        "last_event_id": int(last_event or 0),
    }


@router.get("/generations/{generation_id:int}/gallery", name="web-generation-gallery")
async def gallery_fragment(
    request: Request, ctx: Ctx, session: SignedIn, generation_id: int
) -> Response:
    """The gallery alone (HTML fragment): the page fetches it as pose events arrive."""
    values = await run_in_threadpool(gallery, ctx, session, generation_id)
    return render(request, "_gallery.html", values, session=session)


@router.get("/generations/{generation_id:int}/log", name="web-generation-log")
async def generation_log(
    request: Request, ctx: Ctx, session: Admin, generation_id: int
) -> Response:
    """Operators: the log lines every process wrote about this generation, oldest first."""

    def load() -> dict[str, Any]:
        view = generations_read.get_visible(ctx.engine, generation_id, None)
        return {
            "g": view,
            "lines": dblog.lines(ctx.engine, generation_id, limit=LOG_LINES),
            "limit": LOG_LINES,
            "trace_id": timeline.trace_id(ctx.engine, generation_id),
        }

    return render(request, "generation_log.html", await run_in_threadpool(load), session=session)


@router.get("/generations/{generation_id:int}", name="web-generation")
async def generation(request: Request, ctx: Ctx, session: SignedIn, generation_id: int) -> Response:
    """The gallery: each output beside its pose map, a ZIP download and a cancel button."""
    values = await run_in_threadpool(gallery, ctx, session, generation_id)
    notice = request.query_params.get("notice")
    values["notice"] = {
        "exports": "Exports queued: workers make them; this page updates as they finish.",
        "exports-none": "Every result already has those exports.",
        "background": "Background change queued: a worker makes it; it appears beside the result.",
        "background-again": "That background change was already asked for.",
        "submitted": "Generation queued. Progress updates live below.",
        "cancelled": "Cancelled.",
        "cancelling": "Cancel requested: the worker stops before its next pose.",
    }.get(notice or "")
    return render(request, "generation.html", values, session=session)


@router.post("/generations/{generation_id:int}/exports", name="web-exports")
async def request_exports(
    request: Request, ctx: Ctx, session: SignedIn, generation_id: int
) -> Response:
    """Queue exports of a finished generation (a CSRF-protected form POST of ``format``)."""
    form = await request.form()
    check_csrf(ctx, session, dict(form))
    formats = [str(v) for v in form.getlist("format") if isinstance(v, str)]
    if not formats:
        raise InvalidInput("pick at least one export format")

    def queue_them() -> bool:
        view = generations_read.get_visible(ctx.engine, generation_id, owner_filter(session))
        if view.status in generations_read.ACTIVE_STATUSES:
            raise Conflict("exports are made once the generation has ended")
        return any(r.queued for r in exporting.request(ctx.engine, ctx.settings, view.id, formats))

    queued = await run_in_threadpool(queue_them)
    notice = "exports" if queued else "exports-none"
    return RedirectResponse(f"{PREFIX}/generations/{generation_id}?notice={notice}", 303)


@router.post("/generations/{generation_id:int}/cancel", name="web-cancel")
async def cancel(request: Request, ctx: Ctx, session: SignedIn, generation_id: int) -> Response:
    """Cancel (a CSRF-protected form POST); the queue decides what cancelling means now."""
    form = dict(await request.form())
    check_csrf(ctx, session, form)
    status = await run_in_threadpool(queue.cancel, ctx.engine, generation_id, owner_filter(session))
    notice = "cancelled" if status == GenerationStatus.CANCELLED else "cancelling"
    return RedirectResponse(f"{PREFIX}/generations/{generation_id}?notice={notice}", 303)
