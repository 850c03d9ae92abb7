"""The application factory. Settings and engine come in (or the engine is built here); nothing
is created at import time, so tests build one app per database."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import Engine
from starlette.types import Receive, Scope, Send

from posegen.api import errors, openapi, sse
from posegen.api.deps import KeyCache
from posegen.api.event_feed import EventFeed
from posegen.api.input_guard import InputGuard, NoSniff
from posegen.api.limits import BodySizeLimit, RequestLimits
from posegen.api.request_context import RequestContext
from posegen.api.routes import admin, files, generations, health, library, metrics, projects
from posegen.api.routes import backgrounds as background_routes
from posegen.api.routes import credits as credit_routes
from posegen.api.routes import exports as export_routes
from posegen.api.routes import library_marks as mark_routes
from posegen.api.routes import my_poses as my_pose_routes
from posegen.api.routes import pose_requests as request_routes
from posegen.api.routes import uploads as upload_routes
from posegen.api.routes import vision as vision_routes
from posegen.config import Settings
from posegen.web import include_web

PREFIX = "/api/pose-generator"


class PosegenAPI(FastAPI):
    """FastAPI, plus the server's own ``send`` in each request's scope (``sse.SERVER_SEND``):
    event streams send their frames straight to it, past the middleware's ``send`` wrappers,
    which only act on a response's start (see :class:`posegen.api.sse.FeedResponse`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope[sse.SERVER_SEND] = send
        await super().__call__(scope, receive, send)


def create_app(settings: Settings, engine: Engine | None = None) -> FastAPI:
    """Build the API for ``settings``; an ``engine`` passed in is used (and not disposed)."""
    from posegen.controlnet import MapCache
    from posegen.db.engine import make_engine

    owns_engine = engine is None
    the_engine = make_engine(settings) if engine is None else engine

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # The threads synchronous routes run on (anyio's default limiter, per event loop).
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.http_threads
        yield
        app.state.event_feed.close()
        if owns_engine:
            the_engine.dispose()

    app = PosegenAPI(
        title="posegen",
        version="0.1.0",
        description=(
            "Pose generation: projects with a subject image, a pose library, queued generations "
            "with live progress. Authenticate with `Authorization: Bearer <API key>`."
        ),
        lifespan=lifespan,
        # Swagger UI loads its script and styles from a CDN: off unless POSEGEN_API_DOCS asks.
        docs_url="/docs" if settings.api_docs else None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.settings = settings
    app.state.engine = the_engine
    app.state.key_cache = KeyCache(settings.auth_cache_seconds)
    app.state.map_cache = MapCache(settings)
    app.state.stream_slots = sse.StreamSlots(settings.sse_max_streams_per_user)
    app.state.event_feed = EventFeed(the_engine, settings.sse_poll_seconds, settings.listen_notify)

    errors.install(app)
    openapi.install(app)

    # Usage metrics, /metrics for Prometheus, and per-route latency of every request. First, as
    # its paths are unique: top-users is the one read with a throughput target, and each route
    # checked before the match costs ~2 us (125 vs 185 us of CPU per cached request here).
    metrics.install(app)
    for router in (
        library.router,
        projects.router,
        upload_routes.router,
        generations.router,
        files.router,
        admin.router,
        credit_routes.router,
        vision_routes.router,
        vision_routes.uploads_router,
        mark_routes.router,
        my_pose_routes.router,
        request_routes.router,
        export_routes.router,
        background_routes.router,
    ):
        app.include_router(router, prefix=PREFIX)
    # Probes at the root (for load balancers) and under the prefix (next to the API).
    app.include_router(health.router)
    app.include_router(health.router, prefix=PREFIX, include_in_schema=False)
    # The dashboard and gallery under /ui (session cookie sign-in; same core reads as the API).
    include_web(app, settings, the_engine)

    # Inside the body limit, so the bodies it reads to check are already capped.
    app.add_middleware(InputGuard)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    app.add_middleware(
        RequestLimits,
        max_requests=settings.http_max_requests,
        body_timeout=settings.http_body_timeout_seconds,
    )
    # Outside the body limit, so even a 413 carries X-Request-ID and is traced.
    app.add_middleware(RequestContext)
    if settings.cors_origin_list:
        # Added last, so it is outermost: even a 413 carries the CORS headers a browser needs.
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origin_list,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "Last-Event-ID",
                "X-Request-ID",
            ],
            expose_headers=["Retry-After", "Location", "X-Request-ID"],
        )
    # Outermost, so CORS preflights and 413s carry it too.
    app.add_middleware(NoSniff)
    return app


def app_from_environment() -> FastAPI:
    """Factory for ``uvicorn --factory`` (several API processes): settings from the environment."""
    from posegen.config import load_settings

    return create_app(load_settings())
