"""Operator pages (admin role): the overview with its live figures and chart, and top users."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.concurrency import run_in_threadpool
from starlette.responses import JSONResponse, Response

from posegen import operations
from posegen.controlnet import MapCache
from posegen.exceptions import InvalidInput
from posegen.metrics import rollup, summary
from posegen.web import cachestats, media
from posegen.web.context import Admin, Ctx, PageRoute, WebContext, render
from posegen.web.series import SERIES, per_minute

router = APIRouter(route_class=PageRoute, include_in_schema=False)

PERIOD_CHOICES = ("1h", "24h", "7d", "30d", "all")
WORKER_ROWS = 10


def overview_data(ctx: WebContext, period: str, map_cache: MapCache) -> dict[str, Any]:
    """Every figure the overview shows, as JSON-ready values (also served to its script);
    computed at most once per period every few seconds, however many tabs ask."""
    if period not in PERIOD_CHOICES:
        raise InvalidInput(f"period must be one of {', '.join(PERIOD_CHOICES)}")
    data: dict[str, Any] = ctx.overview_cache.get_or_compute(
        ("overview", period), lambda: _compute(ctx, period, map_cache)
    )
    return data


def _compute(ctx: WebContext, period: str, map_cache: MapCache) -> dict[str, Any]:
    settings, engine = ctx.settings, ctx.engine
    window = summary.resolve_window(period)
    figures = summary.summary(engine, window, worker_stale_seconds=settings.worker_stale_seconds)
    recovery = operations.recovery_status(engine)
    # Stopped ones too (the latest few): a worker that just went away is worth seeing.
    workers = operations.workers(engine, settings.worker_stale_seconds, include_stopped=True)
    workers = workers[:WORKER_ROWS]
    last = recovery.last_run
    return {
        "period": period,
        "queue": figures["queue"],
        "workers": figures["workers"],
        "successRate": figures["successRate"] if figures["finished"] else None,
        "finished": figures["finished"],
        "generations": figures["generations"],
        "avgSecondsPerPose": figures["avgSecondsPerPose"],
        "stuck": recovery.stuck,
        "lastRecovery": None
        if last is None
        else {
            "at": (last.finished_at or last.started_at).isoformat(),
            "requeued": last.requeued,
            "failed": last.failed,
            "error": last.error,
        },
        "mapCache": cachestats.map_cache_figures(map_cache.host_stats()),
        "perMinute": per_minute(engine).as_json(),
        "workerList": [
            {
                "id": w.id,
                "host": w.host,
                "pid": w.pid,
                "inFlight": w.in_flight,
                "concurrency": w.concurrency,
                "lastSeen": w.last_seen_at.isoformat(),
                "state": (
                    ("paused" if w.paused else "alive")
                    if w.alive
                    else ("stopped" if w.stopped_at else "stale")
                ),
                # A worker whose backend is unavailable claims nothing until its probe passes.
                "pausedReason": w.paused_reason if w.paused else None,
                "pausedSince": w.paused_at.isoformat() if w.paused and w.paused_at else None,
            }
            for w in workers
        ],
        "errors": summary.errors(engine, window)["errors"][:8],
    }


@router.get("/overview", name="web-overview")
async def overview(request: Request, ctx: Ctx, session: Admin, period: str = "24h") -> Response:
    """Queue depth, throughput chart, success rate, map cache, workers, stuck generations."""
    data = await run_in_threadpool(overview_data, ctx, period, media.map_cache(request, ctx))
    return render(
        request,
        "overview.html",
        {"data": data, "periods": PERIOD_CHOICES, "series": SERIES},
        session=session,
    )


@router.get("/overview.json", name="web-overview-json")
async def overview_json(
    request: Request, ctx: Ctx, session: Admin, period: str = "24h"
) -> Response:
    """The overview's figures for its script to refresh in place."""
    data = await run_in_threadpool(overview_data, ctx, period, media.map_cache(request, ctx))
    return JSONResponse(data)


@router.get("/top-users", name="web-top-users")
async def top_users(
    request: Request,
    ctx: Ctx,
    session: Admin,
    limit: str = str(rollup.DEFAULT_LIMIT),
) -> Response:
    """Users with the most generations, from the rollup (same answer as the API)."""
    try:
        count = rollup.check_limit(int(limit))
    except ValueError as exc:
        raise InvalidInput("limit must be a whole number") from exc
    rows = await run_in_threadpool(rollup.top_users, ctx.engine, count)
    return render(
        request,
        "top_users.html",
        {"rows": rows, "limit": count, "max_limit": rollup.MAX_LIMIT},
        session=session,
    )
