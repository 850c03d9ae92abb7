"""Follow-up task handlers by kind (``generation_tasks.kind``): the worker claims only kinds it
has a handler for, and runs them in its job threads beside generations."""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from sqlalchemy import Engine, select

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import PoseGeneration
from posegen.queue.tasks import ClaimedTask
from posegen.storage import ResultStore, delete_generation_files

#: (engine, settings, store, task, stopping) -> outcome name for the worker's stats.
TaskHandler = Callable[[Engine, Settings, ResultStore, ClaimedTask, threading.Event], str]


#: Task kind -> the module whose ``run_task(engine, settings, store, task, stopping)`` runs it
#: (imported when a task of that kind first runs).
HANDLERS: dict[str, str] = {
    "export": "posegen.exporting.flow",
    "background": "posegen.backgrounds.flow",
}


def kinds() -> list[str]:
    return sorted(HANDLERS)


def run(
    engine: Engine,
    settings: Settings,
    store: ResultStore,
    task: ClaimedTask,
    stopping: threading.Event,
) -> str:
    """Run ``task``'s handler. A task that lost its lease may have lost it because its
    generation was deleted while it ran: the files it wrote after the folder was removed name
    no row, so they go too (the reference rule for bytes), whatever the kind."""
    handler: TaskHandler = importlib.import_module(HANDLERS[task.kind]).run_task
    outcome = handler(engine, settings, store, task, stopping)
    if outcome == "lease-lost":
        _drop_if_deleted(engine, store, task.generation_id)
    return outcome


def _drop_if_deleted(engine: Engine, store: ResultStore, generation_id: int) -> None:
    with read_connection(engine) as conn:
        exists = conn.execute(
            select(PoseGeneration.id).where(PoseGeneration.id == generation_id)
        ).first()
    if exists is None:
        delete_generation_files(store, generation_id)
