"""Usage metrics for admins, the Prometheus exposition, and request latency by route.

``install(app)`` is the one hook ``create_app`` calls: it mounts both routers, builds this app's
TTL cache and Prometheus registry, and adds the latency middleware.

Every metrics answer goes through the app's :class:`TTLCache`
(``POSEGEN_METRICS_CACHE_TTL_SECONDS``, default 60 s), serialised JSON and all: a hit is answered
on the event loop without a thread hop or a second serialisation; a miss is computed once in a
worker thread while concurrent requests for the same key wait for it.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import time
from collections.abc import Callable, Hashable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen.api.deps import AdminUser, EngineDep, SettingsDep, _authenticated, is_admin
from posegen.api.schemas import ApiModel
from posegen.exceptions import Forbidden
from posegen.metrics import rollup, summary
from posegen.metrics.exposition import CONTENT_TYPE, build_registry, render
from posegen.metrics.prom import HTTP_REQUEST_SECONDS
from posegen.metrics.ttlcache import TTLCache

router = APIRouter(prefix="/api/pose-generator/metrics", tags=["metrics"])
exposition_router = APIRouter(tags=["metrics"])


Limit = Annotated[int, Query(ge=rollup.MIN_LIMIT, le=rollup.MAX_LIMIT)]
Period = Annotated[str | None, Query(description="1h | 24h | 7d | 30d | all (default 24h)")]
From = Annotated[dt.datetime | None, Query(alias="from", description="Window start (ISO 8601)")]
To = Annotated[dt.datetime | None, Query(alias="to", description="Window end (default now)")]


class TopUserOut(ApiModel):
    """One user of the top-users answer: exactly the seed's fields (camelCase in JSON)."""

    user_id: int
    user_name: str
    user_email: str
    generation_count: int
    total_poses: int
    success_rate: float = Field(ge=0, le=1)


class TopUsersOut(ApiModel):
    users: list[TopUserOut]


async def _cached(request: Request, key: Hashable, compute: Callable[[], Any]) -> Response:
    """The JSON answer for ``key``, serialised once per computation and then served as bytes."""
    cache: TTLCache = request.app.state.metrics_cache
    found, body = cache.peek(key)
    if not found:
        body = await run_in_threadpool(
            cache.get_or_compute, key, lambda: json.dumps(compute()).encode()
        )
    return Response(body, media_type="application/json")


@router.get("/top-users", response_model=TopUsersOut)
async def top_users(
    request: Request, _admin: AdminUser, limit: Limit = rollup.DEFAULT_LIMIT
) -> Response:
    """The users with the most generations (ties: lower id first), from the rollup."""
    # The engine from app.state, not EngineDep: the one read with a throughput target skips a
    # dependency level (~20 us of FastAPI's resolver per request, bench/profile_api.py).
    engine = request.app.state.engine

    def compute() -> dict[str, Any]:
        return {"users": [u.as_json() for u in rollup.top_users(engine, limit)]}

    return await _cached(request, ("top-users", limit), compute)


async def _windowed(
    request: Request,
    key: tuple[Hashable, ...],
    window: tuple[str | None, dt.datetime | None, dt.datetime | None],
    compute: Callable[[summary.Window], Any],
) -> Response:
    """:func:`_cached` for an answer over a time window (``period``, ``from``, ``to``).

    Bad window input is rejected before anything is cached; the window itself is resolved when
    the answer is computed, so a relative period ("24h") ends at that moment.
    """
    summary.resolve_window(*window)
    return await _cached(request, (*key, *window), lambda: compute(summary.resolve_window(*window)))


@router.get("/summary", response_model=dict[str, Any])
async def usage_summary(
    request: Request,
    _admin: AdminUser,
    engine: EngineDep,
    settings: SettingsDep,
    period: Period = None,
    start: From = None,
    end: To = None,
) -> Response:
    """Generations by status, success rate over finished ones, poses, queue and workers."""
    stale = settings.worker_stale_seconds
    return await _windowed(
        request,
        ("summary",),
        (period, start, end),
        lambda window: summary.summary(engine, window, worker_stale_seconds=stale),
    )


@router.get("/errors", response_model=dict[str, Any])
async def error_kinds(
    request: Request,
    _admin: AdminUser,
    engine: EngineDep,
    period: Period = None,
    start: From = None,
    end: To = None,
) -> Response:
    """Failed generations and failed poses in the window, grouped by error kind."""
    return await _windowed(
        request, ("errors",), (period, start, end), lambda window: summary.errors(engine, window)
    )


@router.get("/popular-poses", response_model=dict[str, Any])
async def popular_poses(
    request: Request,
    _admin: AdminUser,
    engine: EngineDep,
    period: Period = None,
    start: From = None,
    end: To = None,
    limit: Limit = rollup.DEFAULT_LIMIT,
) -> Response:
    """Library poses with the most completed images in the window."""
    return await _windowed(
        request,
        ("popular-poses", limit),
        (period, start, end),
        lambda window: summary.popular_poses(engine, window, limit),
    )


_scrape_bearer = HTTPBearer(auto_error=False)


async def _may_scrape(
    request: Request,
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_scrape_bearer)],
) -> None:
    """``POSEGEN_METRICS_TOKEN`` (what Prometheus sends) or an admin API key."""
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else ""
    if token and credentials is not None:
        if hmac.compare_digest(credentials.credentials.encode(), token.encode()):
            return
    account = await _authenticated(request, credentials)
    if not is_admin(account):
        raise Forbidden("scraping /metrics needs the metrics token or an admin key")


@exposition_router.get("/metrics", dependencies=[Depends(_may_scrape)], include_in_schema=False)
async def prometheus(request: Request) -> Response:
    """Prometheus text exposition of this API process."""
    body = await run_in_threadpool(render, request.app.state.metrics_registry)
    return Response(body, media_type=CONTENT_TYPE)


class RequestTimer:
    """ASGI middleware: observe each request's latency under its route template.

    Labels use the template (``/generations/{generation_id}``), never the raw path, so the number
    of series stays fixed; requests that match no route share ``route="unmatched"``.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        observed = False

        def observe(status: int) -> None:
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            HTTP_REQUEST_SECONDS.labels(scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )

        async def timed_send(message: Message) -> None:
            nonlocal observed
            if message["type"] == "http.response.start" and not observed:
                observed = True
                observe(int(message["status"]))
            await send(message)

        try:
            await self.app(scope, receive, timed_send)
        except BaseException:
            if not observed:
                observe(500)
            raise


def install(app: FastAPI) -> None:
    """Mount the metrics routes and ``/metrics``, and time every request by route."""
    settings = app.state.settings
    cache = TTLCache(settings.metrics_cache_ttl_seconds)
    app.state.metrics_cache = cache
    map_cache = getattr(app.state, "map_cache", None)
    app.state.metrics_registry = build_registry(
        app.state.engine,
        queue=True,
        metrics_cache=cache,
        map_cache_stats=None if map_cache is None else map_cache.stats,
    )
    app.include_router(router)
    app.include_router(exposition_router)
    app.add_middleware(RequestTimer)
