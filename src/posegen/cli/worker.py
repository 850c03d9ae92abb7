"""``posegen worker``, ``posegen submit`` and ``posegen recover``: thin adapters over
:mod:`posegen.worker` and :mod:`posegen.queue`."""

from __future__ import annotations

import json
import threading
from typing import Annotated

import typer
from sqlalchemy import Engine, insert, select

from posegen import accounts, queue
from posegen.cli.app import keep_generation_logs, state
from posegen.db import migrate
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import GenerationType, PoseLibrary, Project
from posegen.exceptions import ConfigError, InvalidInput, NotFound
from posegen.metrics.exposition import is_loopback
from posegen.queue import GenerationRequest
from posegen.storage import make_storage
from posegen.worker import Worker, signals
from posegen.worker.handlers import select_handler
from posegen.worker.registry import new_worker_id

#: Bulk submits are committed in chunks of this many generations.
SUBMIT_CHUNK = 1000


def worker(
    ctx: typer.Context,
    concurrency: Annotated[
        int | None,
        typer.Option(
            min=1, max=256, help="Generations at once (default POSEGEN_WORKER_CONCURRENCY)."
        ),
    ] = None,
    burst: Annotated[
        bool, typer.Option("--burst", help="Exit when nothing is pending or in flight.")
    ] = False,
    metrics_port: Annotated[
        int | None, typer.Option(min=1, max=65535, help="Serve Prometheus metrics on this port.")
    ] = None,
) -> None:
    """Run a worker: claim generations, run them, heartbeat, recover. SIGTERM stops gently."""
    st = state(ctx)
    settings, engine = st.settings, st.engine
    token = settings.metrics_token.get_secret_value() if settings.metrics_token else None
    if metrics_port is not None and not token and not is_loopback(settings.api_host):
        # Before anything starts: an open metrics port on the network is a configuration error.
        raise ConfigError(
            f"--metrics-port on {settings.api_host} needs POSEGEN_METRICS_TOKEN "
            "(or POSEGEN_API_HOST on a loopback address)"
        )
    _require_schema(engine)
    # A wrong key or a missing bucket is one line now, not a failure per generation later.
    make_storage(settings).check()
    handler = select_handler(settings)
    keep_generation_logs(ctx, engine)
    w = Worker(settings, engine, handler, concurrency, burst)
    # Handlers first: anything that can see this process as up (the metrics port) may signal it.
    restore = signals.install(w.stop)
    if metrics_port is not None:
        from posegen.metrics import exposition

        # The shared series plus this process's connection pool and map cache counters.
        maps = getattr(getattr(handler, "images", None), "maps", None)
        registry = exposition.build_registry(engine, map_cache_stats=maps and maps.stats)
        exposition.serve(metrics_port, registry, addr=settings.api_host, token=token)
    try:
        w.run()
    finally:
        restore()
    typer.echo(json.dumps({"worker": w.id, **dict(w.stats)}, sort_keys=True))


def submit(
    ctx: typer.Context,
    user: Annotated[str, typer.Option(help="E-mail of the user who owns the generations.")],
    poses: Annotated[str | None, typer.Option(help="Comma-separated pose ids.")] = None,
    all_poses: Annotated[bool, typer.Option("--all-poses", help="Every public pose.")] = False,
    prompt: Annotated[
        str | None, typer.Option(help="Prompt (a text generation if no poses).")
    ] = None,
    variations: Annotated[int, typer.Option(min=1)] = 1,
    count: Annotated[int, typer.Option(min=1, help="How many generations to enqueue.")] = 1,
    priority: Annotated[int, typer.Option(help="Higher runs first.")] = 0,
    project: Annotated[
        int | None, typer.Option(help="Project id (default: user's default).")
    ] = None,
) -> None:
    """Enqueue COUNT generations (for operators and load tests); prints their ids as JSON."""
    st = state(ctx)
    settings, engine = st.settings, st.engine
    if poses and all_poses:
        raise InvalidInput("give --poses or --all-poses, not both")
    account = accounts.get_by_email(engine, user)
    pose_ids = listed_pose_ids(engine, poses, all_poses)
    project_id = project if project is not None else default_project(engine, account.id)
    req = GenerationRequest(
        user_id=account.id,
        project_id=project_id,
        type=GenerationType.LIBRARY if pose_ids else GenerationType.TEXT,
        pose_ids=pose_ids,
        variations=variations,
        prompt=prompt,
        priority=priority,
    )
    ids: list[int] = []
    for start in range(0, count, SUBMIT_CHUNK):
        ids += queue.submit_many(engine, settings, [req] * min(SUBMIT_CHUNK, count - start))
    typer.echo(json.dumps({"submitted": len(ids), "first": ids[0], "last": ids[-1]}))


def recover(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="One pass, then exit.")] = False,
) -> None:
    """Requeue (or fail) generations whose lease expired or whose worker died; every recovery
    interval, or once."""
    st = state(ctx)
    settings, engine = st.settings, st.engine
    _require_schema(engine)
    runner = f"cli:{new_worker_id()}"
    stop = threading.Event()
    restore = signals.install(stop.set)
    try:
        while True:
            out = queue.recover(engine, settings, runner)
            # Dead workers' generations too (their liveness lock is free), lease or not.
            dead = queue.recover_dead_workers(engine, settings, runner)
            typer.echo(
                json.dumps(
                    {
                        "ran": out.ran,
                        "requeued": out.requeued,
                        "failed": out.failed,
                        "cancelled": out.cancelled,
                        "dead_workers_requeued": dead.requeued,
                        "dead_workers_failed": dead.failed + dead.cancelled,
                    }
                )
            )
            if once or stop.wait(settings.recovery_interval_seconds):
                return
    finally:
        restore()


def default_project(engine: Engine, user_id: int) -> int:
    """The user's oldest project, or a new one named "default"."""
    with write_transaction(engine) as conn:
        found = conn.execute(
            select(Project.id).where(Project.user_id == user_id).order_by(Project.id).limit(1)
        ).scalar()
        if found is not None:
            return int(found)
        return int(
            conn.execute(
                insert(Project).values(user_id=user_id, name="default").returning(Project.id)
            ).scalar_one()
        )


def listed_pose_ids(engine: Engine, poses: str | None, all_poses: bool) -> list[int]:
    """The ids of ``--poses`` (each must exist), or every public pose for ``--all-poses``."""
    with read_connection(engine) as conn:
        if all_poses:
            ids = [
                int(i)
                for i in conn.execute(
                    select(PoseLibrary.id).where(PoseLibrary.is_public).order_by(PoseLibrary.id)
                ).scalars()
            ]
            if not ids:
                raise NotFound("the pose library is empty (run `posegen library seed`?)")
            return ids
        if not poses:
            return []
        try:
            ids = [int(p) for p in poses.split(",") if p.strip()]
        except ValueError as exc:
            raise InvalidInput(f"--poses takes comma-separated ids, not {poses!r}") from exc
        known = set(conn.execute(select(PoseLibrary.id).where(PoseLibrary.id.in_(ids))).scalars())
    missing = [i for i in ids if i not in known]
    if missing:
        raise NotFound(f"no pose with id {', '.join(map(str, missing))}")
    return ids


def _require_schema(engine: Engine) -> None:
    if not migrate.is_at_head(engine):
        raise ConfigError("the database schema is not up to date: run `posegen db upgrade`")
