"""Follow-up task handlers by kind (``generation_tasks.kind``): the worker claims only kinds it
has a handler for, and runs them in its job threads beside generations."""

from __future__ import annotations

import threading
from collections.abc import Callable

from sqlalchemy import Engine

from posegen.config import Settings
from posegen.queue.tasks import ClaimedTask
from posegen.storage import ResultStore

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
