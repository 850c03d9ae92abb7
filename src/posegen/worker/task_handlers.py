"""Follow-up task handlers by kind (``generation_tasks.kind``): the worker claims only kinds it
has a handler for, and runs them in its job threads beside generations."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine, select

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import PoseGeneration
from posegen.exceptions import StorageUnavailable
from posegen.queue.tasks import ClaimedTask
from posegen.storage import ResultStore

log = logging.getLogger(__name__)

#: (engine, settings, store, task, stopping) -> outcome name for the worker's stats.
TaskHandler = Callable[[Engine, Settings, ResultStore, ClaimedTask, threading.Event], str]


def _export(
    engine: Engine,
    settings: Settings,
    store: ResultStore,
    task: ClaimedTask,
    stopping: threading.Event,
) -> str:
    from posegen.exporting import flow

    return flow.run_task(engine, settings, store, task, stopping)


def _background(
    engine: Engine,
    settings: Settings,
    store: ResultStore,
    task: ClaimedTask,
    stopping: threading.Event,
) -> str:
    from posegen.backgrounds import flow

    return flow.run_task(engine, settings, store, task, stopping)


HANDLERS: dict[str, TaskHandler] = {"export": _export, "background": _background}


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
    outcome = HANDLERS[task.kind](engine, settings, store, task, stopping)
    if outcome == "lease-lost":
        _drop_if_deleted(engine, store, task.generation_id)
    return outcome


def _drop_if_deleted(engine: Engine, store: ResultStore, generation_id: int) -> None:
    with read_connection(engine) as conn:
        exists = conn.execute(
            select(PoseGeneration.id).where(PoseGeneration.id == generation_id)
        ).first()
    if exists is None:
        try:
            store.delete_generation(generation_id)
        except (OSError, StorageUnavailable) as exc:
            log.warning(
                "files of a deleted generation left behind",
                extra={"generation_id": generation_id, "error": str(exc)},
            )
