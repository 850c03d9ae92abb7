"""Append rows to ``generation_events`` (the log the SSE stream replays), inside the caller's
transaction so an event exists exactly when its state change does."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection

from posegen.db.types import utcnow
from posegen.queue.dialects import ops_for

#: The event kinds clients may see, in the order the README's HTTP API section lists them.
KINDS = (
    "queued",
    "started",
    "pose",
    "retrying",
    "completed",
    "partial",
    "failed",
    "cancelled",
    # Follow-up tasks after the poses (``posegen.queue.tasks``): a ``task_queued`` reopens a
    # stream that ended with the generation, ``tasks_settled`` (no task left open) ends it.
    "task_queued",
    "task_started",
    "task_retrying",
    "task_completed",
    "task_failed",
    "tasks_settled",
)


@dataclass(frozen=True)
class Event:
    generation_id: int
    kind: str
    #: camelCase keys; always ``status``, ``completed``, ``failed`` and ``total``.
    data: dict[str, Any] = field(default_factory=dict)


def progress(status: str, completed: int, failed: int, total: int, **extra: Any) -> dict[str, Any]:
    """The common body of every event, plus any extra camelCase keys."""
    body: dict[str, Any] = {
        "status": status,
        "completed": completed,
        "failed": failed,
        "total": total,
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return body


def check(ev: Event) -> None:
    if ev.kind not in KINDS:
        raise ValueError(f"unknown event kind {ev.kind!r}")


def append(conn: Connection, events: Sequence[Event]) -> None:
    """Insert the events in one batch statement, in the caller's transaction."""
    if not events:
        return
    for ev in events:
        check(ev)
    ops_for(conn).insert_events(
        conn, [(ev.generation_id, ev.kind, ev.data) for ev in events], utcnow()
    )
