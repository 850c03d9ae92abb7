"""``posegen generate``: one person at a terminal submits a generation, watches a progress bar
while an in-process worker runs it, and learns where the images are."""

from __future__ import annotations

import json
import logging
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select

from posegen import accounts, backends, generations_read, projects, queue, uploads
from posegen.cli.app import keep_generation_logs, state
from posegen.cli.worker import default_project, listed_pose_ids
from posegen.config import Settings
from posegen.db import migrate
from posegen.db.engine import read_connection
from posegen.db.models import (
    TERMINAL_STATUSES,
    GeneratedPose,
    GenerationStatus,
    GenerationType,
    PoseLibrary,
    PoseStatus,
    Role,
    User,
)
from posegen.exceptions import ConfigError, InvalidInput, NotFound, PosegenError
from posegen.library import premium
from posegen.queue import GenerationRequest
from posegen.storage.base import generation_folder
from posegen.worker import JobHandler, Worker

_POLL_SECONDS = 0.2


def generate(
    ctx: typer.Context,
    user: Annotated[
        str | None, typer.Option(help="E-mail of the user (default: the first admin).")
    ] = None,
    poses: Annotated[str | None, typer.Option(help="Comma-separated pose ids.")] = None,
    all_poses: Annotated[
        bool, typer.Option("--all-poses", help="Every public pose of the library.")
    ] = False,
    variations: Annotated[int, typer.Option(min=1, help="Images per pose.")] = 1,
    prompt: Annotated[
        str | None, typer.Option(help="What to draw (text-only without poses).")
    ] = None,
    negative_prompt: Annotated[str | None, typer.Option(help="What to avoid.")] = None,
    subject: Annotated[
        str | None, typer.Option(help="Subject image: a local file or an http(s) URL.")
    ] = None,
    width: Annotated[int | None, typer.Option(min=64, max=4096)] = None,
    height: Annotated[int | None, typer.Option(min=64, max=4096)] = None,
    seed: Annotated[int | None, typer.Option(min=0, help="Seed of the first variation.")] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run a worker in this process.")
    ] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Generate images now: submit, show progress, print where the images are."""
    st = state(ctx)
    settings, engine = st.settings, st.engine
    logger = logging.getLogger("posegen")
    level = logger.level
    if not ctx.find_root().params.get("verbose"):
        # The progress bar says what the worker's INFO lines would; keep the terminal readable.
        logger.setLevel(logging.WARNING)
    ctx.call_on_close(lambda: logger.setLevel(level))
    if poses and all_poses:
        raise InvalidInput("give --poses or --all-poses, not both")
    if not poses and not all_poses and not prompt:
        raise InvalidInput("give --poses, --all-poses or a --prompt for a text generation")
    _ensure_schema(settings, engine)
    keep_generation_logs(ctx, engine)
    handler: JobHandler | None = None
    if worker:
        from posegen.worker.pipeline import make_handler

        handler = make_handler(settings)  # a misconfigured backend fails before anything is queued
    account = accounts.get_by_email(engine, user) if user else _first_admin(engine)
    pose_ids = _pose_ids(engine, poses, all_poses)
    premium.check(
        engine,
        settings,
        premium.premium_among(engine, pose_ids),
        account.id,
        admin=account.role is Role.ADMIN,
    )
    if subject:
        url, upload_id = _subject_reference(settings, engine, account.id, subject)
        project_id = projects.create(engine, account.id, "posegen generate", url, upload_id).id
    else:
        project_id = default_project(engine, account.id)
    gid = queue.submit(
        engine,
        settings,
        GenerationRequest(
            user_id=account.id,
            project_id=project_id,
            type=GenerationType.LIBRARY if pose_ids else GenerationType.TEXT,
            pose_ids=pose_ids,
            variations=variations,
            prompt=prompt,
            negative_prompt=negative_prompt,
            width=width or settings.default_width,
            height=height or settings.default_height,
            seed=seed,
        ),
    ).generation_id
    view = _follow(settings, engine, gid, handler)
    _report(settings, engine, view, as_json)


def _follow(
    settings: Settings, engine: Engine, gid: int, handler: JobHandler | None
) -> generations_read.GenerationView:
    runner = None
    thread = None
    failed: list[PosegenError] = []
    if handler is not None:
        runner = Worker(settings, engine, handler)
        worker = runner

        def run() -> None:
            try:
                worker.run()
            except PosegenError as exc:  # the start-up check: shown as the command's one line
                failed.append(exc)

        thread = threading.Thread(target=run, name="posegen-worker", daemon=True)
        thread.start()
    console = Console(stderr=True)
    view = generations_read.get_visible(engine, gid, None)
    try:
        with Progress(
            TextColumn("generation {task.fields[gid]} {task.fields[status]}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task("", total=view.total, gid=gid, status=view.status.value)
            while view.status not in TERMINAL_STATUSES:
                if thread is not None and not thread.is_alive():
                    if failed:
                        raise failed[0]
                    raise PosegenError("the in-process worker stopped unexpectedly")
                time.sleep(_POLL_SECONDS)
                view = generations_read.get_visible(engine, gid, None)
                paused = runner.breaker.reason if runner is not None else None
                status = f"waiting, backend unavailable: {paused}" if paused else view.status.value
                bar.update(task, completed=view.completed + view.failed, status=status)
    except KeyboardInterrupt:
        queue.cancel(engine, gid, None)
        console.print(f"generation {gid} cancelled")
        raise
    finally:
        if runner is not None and thread is not None:
            runner.stop()
            thread.join(settings.shutdown_grace_seconds + 10)
        close = getattr(handler, "close", None)
        if callable(close):
            close()
    return view


def _report(
    settings: Settings, engine: Engine, view: generations_read.GenerationView, as_json: bool
) -> None:
    root = settings.effective_results_dir.resolve()
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(GeneratedPose.status, GeneratedPose.image_path, GeneratedPose.error_kind)
            .where(GeneratedPose.generation_id == view.id)
            .order_by(GeneratedPose.pose_id, GeneratedPose.variation_index)
        ).all()
    images = [str(root / r.image_path) for r in rows if r.status == PoseStatus.COMPLETED]
    failures: dict[str, int] = {}
    for r in rows:
        if r.status == PoseStatus.FAILED:
            failures[r.error_kind or "error"] = failures.get(r.error_kind or "error", 0) + 1
    folder = root / generation_folder(view.id)
    if as_json:
        out = {
            "generationId": view.id,
            "status": view.status.value,
            "completed": view.completed,
            "failed": view.failed,
            "total": view.total,
            "folder": str(folder),
            "images": images,
            "failures": failures,
            "backend": view.backend,
            "model": view.model,
            "preview": view.preview,
        }
        typer.echo(json.dumps(out))
    else:
        typer.echo(
            f"generation {view.id} {view.status.value}: {view.completed} of {view.total} images"
        )
        if images:
            typer.echo(f"images: {folder}")
        if view.preview:
            typer.echo(
                f"these are {view.backend} previews (a skeleton drawing), not a model's images"
            )
            typer.echo(f"for real images: {backends.REAL_MODEL_HINT}")
    if view.status == GenerationStatus.COMPLETED:
        return
    why = ", ".join(f"{k}: {n}" for k, n in sorted(failures.items())) or (
        # The operator's own command: the raw detail, not the sentence shown to users.
        f"{view.error_kind}: {view.error_detail or view.error_message}"
        if view.error_kind
        else view.status.value
    )
    raise PosegenError(f"generation {view.id} {view.status.value} ({why})", kind="generation")


def _ensure_schema(settings: Settings, engine: Engine) -> None:
    if migrate.is_at_head(engine):
        return
    if not settings.is_sqlite:
        raise ConfigError("the database schema is not up to date: run `posegen db upgrade`")
    # The embedded default is this user's own file: creating it is what they expect.
    migrate.upgrade(engine, uploads_dir=settings.effective_uploads_dir)


def _first_admin(engine: Engine) -> accounts.Account:
    with read_connection(engine) as conn:
        user_id = conn.execute(
            select(User.id).where(User.role == Role.ADMIN).order_by(User.id).limit(1)
        ).scalar()
    if user_id is None:
        raise NotFound(
            "no admin user yet: create one with `posegen users create NAME EMAIL --admin` "
            "or pass --user"
        )
    return accounts.get_by_id(engine, int(user_id))


def _pose_ids(engine: Engine, poses: str | None, all_poses: bool) -> list[int]:
    if not all_poses:
        return listed_pose_ids(engine, poses, all_poses)
    from posegen.library import seed_library

    with read_connection(engine) as conn:
        empty = conn.execute(select(PoseLibrary.id).limit(1)).first() is None
    if empty:
        seed_library(engine)  # the built-in library, rendered locally: works offline
    with read_connection(engine) as conn:
        return [
            int(i)
            for i in conn.execute(
                select(PoseLibrary.id).where(PoseLibrary.is_public).order_by(PoseLibrary.id)
            ).scalars()
        ]


def _subject_reference(
    settings: Settings, engine: Engine, user_id: int, subject: str
) -> tuple[str | None, int | None]:
    """An http(s) URL as it is (the worker fetches it safely), or a local file validated and
    stored as the user's own upload (its id): the CLI names files the way the API does."""
    if subject.startswith(("http://", "https://")):
        return projects.check_image_url(subject), None
    path = Path(subject).expanduser()
    try:
        size = path.stat().st_size
        if size > settings.upload_max_bytes:
            raise InvalidInput(f"{subject} is over the {settings.upload_max_bytes}-byte limit")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {subject}: {exc.strerror}") from exc
    return None, uploads.store(engine, settings, user_id, data).id
