"""``posegen serve`` (the HTTP API) and ``posegen up`` (everything in one process).

``up`` is the zero-setup path behind ``make run``: migrate, seed the library, make sure an admin
exists (its key is printed once), then run the API, a worker and the recovery loop together.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Annotated

import typer
import uvicorn
from fastapi import FastAPI
from sqlalchemy import Engine

from posegen import accounts, backends
from posegen.cli.app import keep_generation_logs, log_secrets, state
from posegen.config import Settings
from posegen.db import migrate
from posegen.db.models import Role
from posegen.exceptions import ConfigError
from posegen.storage import make_storage

log = logging.getLogger(__name__)

FIRST_ADMIN_NAME = "admin"
FIRST_ADMIN_EMAIL = "admin@posegen.local"

Host = Annotated[str | None, typer.Option(help="Bind address (default POSEGEN_API_HOST).")]
Port = Annotated[
    int | None, typer.Option(min=1, max=65535, help="Port (default POSEGEN_API_PORT).")
]


def _require_schema(engine: Engine) -> None:
    if not migrate.is_at_head(engine):
        raise ConfigError("the database schema is not up to date: run `posegen db upgrade`")


def serve(
    ctx: typer.Context,
    host: Host = None,
    port: Port = None,
    workers: Annotated[
        int, typer.Option(min=1, max=64, help="API processes (each with its own pool).")
    ] = 1,
) -> None:
    """Run the HTTP API (uvicorn). Run workers separately with `posegen worker`."""
    st = state(ctx)
    settings = st.settings
    _require_schema(st.engine)
    # A wrong key or a missing bucket is one line now, not a failure per generation later.
    make_storage(settings).check()
    keep_generation_logs(ctx, st.engine)
    bind_host = host or settings.api_host
    bind_port = settings.api_port if port is None else port
    from posegen.api import server
    from posegen.worker import signals

    # uvicorn shuts down gracefully on SIGTERM/SIGINT and then re-raises the signal to the
    # handler it found; this one makes that a normal exit (status 0) instead of a kill.
    restore = signals.install(lambda: None)
    try:
        if workers == 1:
            from posegen.api.app import create_app

            app = create_app(settings, st.engine)
            server.run(server.make_config(app, settings, bind_host, bind_port))
            return
        # Several processes need an import string; each builds its settings from the environment.
        server.run(
            server.make_config(
                "posegen.cli.serve:app_in_child_process",
                settings,
                bind_host,
                bind_port,
                factory=True,
                workers=workers,
            )
        )
    finally:
        restore()


def app_in_child_process() -> FastAPI:
    """``serve --workers N``: each API process is a fresh interpreter, so it sets up its own
    logs and traces (as the CLI did in the parent) before building the app."""
    from posegen import observe
    from posegen.api.app import create_app
    from posegen.config import load_settings
    from posegen.db.engine import make_engine
    from posegen.observe import dblog

    settings = load_settings()
    observe.configure_logging(settings.log_format, secrets=log_secrets(settings))
    observe.setup_tracing("posegen-serve", settings.trace_file)
    from posegen.api.server import tune_collector

    engine = make_engine(settings)
    dblog.attach(engine)
    app = create_app(settings, engine)
    tune_collector()
    return app


def ensure_admin(engine: Engine) -> accounts.NewKey | None:
    """Create the first admin (and return its key) if the database has no admin yet."""
    if accounts.count_admins(engine) > 0:
        return None
    return accounts.create_user(engine, FIRST_ADMIN_NAME, FIRST_ADMIN_EMAIL, Role.ADMIN)


def up(
    ctx: typer.Context,
    host: Host = None,
    port: Port = None,
    concurrency: Annotated[
        int | None, typer.Option(min=1, max=256, help="Worker concurrency.")
    ] = None,
) -> None:
    """Migrate, seed the pose library, create a first admin key, and run API + worker."""
    from posegen.api import server as server_config
    from posegen.api.app import create_app
    from posegen.library import seed_library
    from posegen.worker import Worker, signals
    from posegen.worker.handlers import select_handler

    st = state(ctx)
    settings, engine = st.settings, st.engine
    migrate.upgrade(engine, uploads_dir=settings.effective_uploads_dir)
    seeded = seed_library(engine)
    handler = select_handler(settings)  # fails fast on a misconfigured backend
    new_admin = ensure_admin(engine)
    keep_generation_logs(ctx, engine)
    bind_host = host or settings.api_host
    bind_port = settings.api_port if port is None else port

    worker = Worker(settings, engine, handler, concurrency)
    config = server_config.make_config(create_app(settings, engine), settings, bind_host, bind_port)
    server = uvicorn.Server(config)
    worker_failed = threading.Event()

    def run_worker() -> None:
        try:
            worker.run()
        except BaseException:
            log.exception("the worker stopped unexpectedly; shutting down")
            worker_failed.set()
            server.should_exit = True
            raise

    # uvicorn takes SIGINT/SIGTERM while it runs, then restores these handlers and re-raises the
    # signal, so the worker's graceful stop runs after the API has shut down.
    restore = signals.install(worker.stop)
    thread = threading.Thread(target=run_worker, name="posegen-worker", daemon=True)
    thread.start()
    _announce(settings, bind_host, bind_port, seeded.poses, new_admin)
    server_config.tune_collector()
    try:
        server.run()
    finally:
        worker.stop()
        thread.join(settings.shutdown_grace_seconds + 10)
        restore()
    if worker_failed.is_set():
        raise typer.Exit(1)


def _announce(
    settings: Settings, host: str, port: int, poses: int, new_admin: accounts.NewKey | None
) -> None:
    info: dict[str, object] = {
        "api": f"http://{host}:{port}/api/pose-generator",
        "openapi": f"http://{host}:{port}/openapi.json",
        "database": "sqlite" if settings.is_sqlite else "postgresql",
        "poses": poses,
        "backend": settings.serving_backend,
    }
    if settings.api_docs:
        info["docs"] = f"http://{host}:{port}/docs"
    if new_admin is not None:
        # Shown once: only its hash is stored.
        info["adminEmail"] = new_admin.account.email
        info["adminApiKey"] = new_admin.api_key
    typer.echo(json.dumps(info))
    if settings.serving_backend in backends.PREVIEW_BACKENDS:
        # stderr: stdout stays one JSON line for scripts.
        typer.echo(
            f"posegen: the {settings.serving_backend} backend draws skeleton previews, not images; "
            f"for real images {backends.REAL_MODEL_HINT}",
            err=True,
        )
