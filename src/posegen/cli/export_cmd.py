"""``posegen export``: queue exports of a finished generation, wait for them with a progress
bar (running the export tasks in this process unless ``--no-worker``), then copy the files to a
folder as ``<format>/<pose name>-v<n>.<ext>``."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from sqlalchemy import Engine, select

from posegen import exporting, generations_read
from posegen.cli.app import state
from posegen.db.engine import read_connection
from posegen.db.models import TERMINAL_STATUSES, GenerationTask, TaskStatus
from posegen.exceptions import Conflict, InvalidInput, PosegenError
from posegen.queue import tasks
from posegen.storage import make_storage

_POLL_SECONDS = 0.2


def export(
    ctx: typer.Context,
    generation_id: Annotated[int, typer.Argument(min=1, help="The finished generation.")],
    formats: Annotated[str, typer.Option(help="Comma-separated export format names.")],
    out: Annotated[
        Path | None,
        typer.Option(
            "-o", "--out", help="Folder to copy the exports to (default: ./generation-ID-exports)."
        ),
    ] = None,
    worker: Annotated[
        bool, typer.Option("--worker/--no-worker", help="Run the export tasks in this process.")
    ] = True,
    timeout: Annotated[float, typer.Option(min=1, help="Seconds to wait for the workers.")] = 600,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as JSON.")] = False,
) -> None:
    """Export a finished generation's results: queue, wait with progress, download."""
    st = state(ctx)
    settings, engine = st.settings, st.engine
    names = [f.strip() for f in formats.split(",") if f.strip()]
    if not names:
        raise InvalidInput("give at least one format in --formats")
    view = generations_read.get_visible(engine, generation_id, None)
    if view.status not in TERMINAL_STATUSES:
        raise Conflict(f"generation {generation_id} is {view.status.value}: wait for it to end")
    asked = exporting.request(engine, settings, generation_id, names)
    task_ids = [i for r in asked for i in (r.task_ids or (r.task_id,)) if i is not None]
    total = len(task_ids) + sum(1 for r in asked if r.task_id is None)
    store = make_storage(settings)
    stop = threading.Event()
    console = Console(stderr=True)
    deadline = time.monotonic() + timeout
    with Progress(
        TextColumn("exports of generation {task.fields[gid]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=as_json,
    ) as bar:
        shown = bar.add_task("", total=total, gid=generation_id)
        while True:
            open_n, failed = _open(engine, task_ids)
            bar.update(shown, completed=total - open_n)
            if not open_n:
                break
            if time.monotonic() > deadline:
                raise PosegenError(f"{open_n} export tasks still open after {timeout:g} s")
            if worker:
                claimed = tasks.claim(engine, settings, "posegen-export-cli", 1, [exporting.KIND])
                for t in claimed:
                    exporting.run_task(engine, settings, store, t, stop)
                if claimed:
                    continue
            time.sleep(_POLL_SECONDS)
    if failed:
        raise PosegenError(f"exports failed for: {', '.join(failed)}")
    folder = out if out is not None else Path(f"generation-{generation_id}-exports")
    written = []
    for name, opener in exporting.archive_members(engine, store, generation_id, names):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        stored = opener()
        with target.open("wb") as fh:
            for chunk in stored.chunks:
                fh.write(chunk)
        written.append(str(target))
    if as_json:
        typer.echo(
            json.dumps({"generationId": generation_id, "folder": str(folder), "files": written})
        )
    else:
        typer.echo(f"{len(written)} files in {folder}")


def _open(engine: Engine, task_ids: list[int]) -> tuple[int, list[str]]:
    """Open tasks among ``task_ids`` and the formats of those that failed."""
    if not task_ids:
        return 0, []
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(GenerationTask.status, GenerationTask.params).where(
                GenerationTask.id.in_(task_ids)
            )
        ).all()
    open_n = sum(1 for r in rows if r.status in (TaskStatus.PENDING, TaskStatus.PROCESSING))
    failed = [str((r.params or {}).get("format")) for r in rows if r.status == TaskStatus.FAILED]
    return open_n, failed
