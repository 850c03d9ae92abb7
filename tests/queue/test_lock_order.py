"""One lock order for a generation and its owner's quota row: the generation first.

A generation's own writes (checkpoints, finish, recovery) lock its row and then update the
owner's quota row (rollups, give-backs, refunds). Its follow-up tasks run while it is still
processing, and deletions run beside them; when those took the quota row first, a task ending
or a generation being deleted while a checkpoint of the same generation committed could
deadlock (PostgreSQL aborts one of the two after ``deadlock_timeout``).

Each test plays the generation's writer by hand: it locks the generation's row, waits until the
call under test is blocked on that lock, then updates the quota row, as a checkpoint does. In
the generation-first order the call holds nothing the writer needs; in the old order it holds
the quota row already, and PostgreSQL reports a deadlock.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from queue_helpers import Owner, waiting_on_lock
from sqlalchemy import Engine, event, select, update
from test_queue_tasks import _finished

from posegen import projects
from posegen.config import Settings
from posegen.credits import accounts as credit_accounts
from posegen.db.models import PoseGeneration, UserGenerationStats
from posegen.db.types import utcnow
from posegen.queue import tasks
from posegen.retention.report import PruneReport
from posegen.retention.rows import prune_generations


def _against_a_generation_writer(
    engine: Engine, gid: int, user_id: int, call: Callable[[], Any]
) -> Any:
    """Run ``call`` in a thread while this test holds the generation's row, then update the
    owner's quota row in the same transaction (as a checkpoint does) and commit."""
    if engine.dialect.name != "postgresql":
        pytest.skip("row locks are PostgreSQL's; SQLite's write transactions run one at a time")
    result: dict[str, Any] = {}
    pids: list[int] = []

    def remember(dbapi_conn: Any, _record: Any, _proxy: Any) -> None:
        if threading.current_thread() is thread:  # the call's connection, not the checks'
            pids.append(dbapi_conn.info.backend_pid)

    def run() -> None:
        try:
            result["value"] = call()
        except Exception as exc:  # surfaced below
            result["error"] = exc

    with engine.connect() as writer:
        writer.execute(select(PoseGeneration.id).where(PoseGeneration.id == gid).with_for_update())
        thread = threading.Thread(target=run)
        event.listen(engine, "checkout", remember)
        thread.start()
        deadline = time.monotonic() + 20
        while not (pids and waiting_on_lock(engine, pids[-1])):
            assert thread.is_alive(), result
            assert time.monotonic() < deadline, "the call never waited for the generation"
            time.sleep(0.02)
        s = UserGenerationStats
        writer.execute(update(s).where(s.user_id == user_id).values(updated_at=s.updated_at))
        writer.commit()
    thread.join(30)
    event.remove(engine, "checkout", remember)
    assert "error" not in result, result.get("error")
    return result.get("value")


def _task(engine: Engine, settings: Settings, owner: Owner) -> tuple[int, tasks.ClaimedTask]:
    gid = _finished(engine, settings, owner)
    tasks.enqueue(engine, settings, gid, [tasks.TaskSpec("export", "export:a", {"format": "a"})])
    (task,) = tasks.claim(engine, settings, "w1", 5, ["export"])
    return gid, task


def test_a_task_completing_beside_a_generation_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid, task = _task(engine, settings, owner)
    assert _against_a_generation_writer(
        engine, gid, owner.user_id, lambda: tasks.complete(engine, task)
    )


def test_a_task_failing_beside_a_generation_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid, task = _task(engine, settings, owner)
    fail = lambda: tasks.fail(engine, settings, task, "storage", "disk full", transient=False)  # noqa: E731
    assert _against_a_generation_writer(engine, gid, owner.user_id, fail)


def test_a_generation_deleted_beside_its_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid = _finished(engine, settings, owner)
    delete = lambda: projects.remove_generation(engine, gid, owner.user_id)  # noqa: E731
    _against_a_generation_writer(engine, gid, owner.user_id, delete)
    with engine.connect() as conn:
        assert (
            conn.execute(select(PoseGeneration.id).where(PoseGeneration.id == gid)).first() is None
        )


def test_a_project_deleted_beside_a_generation_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid = _finished(engine, settings, owner)
    remove = lambda: projects.remove(engine, owner.project_id, owner.user_id)  # noqa: E731
    _view, removed = _against_a_generation_writer(engine, gid, owner.user_id, remove)
    assert removed == [gid]


def test_a_priced_task_queued_beside_a_generation_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid = _finished(engine, settings, owner)
    credit_accounts.grant(engine, owner.user_id, 10)
    spec = tasks.TaskSpec("export", "export:paid", {"format": "a"}, price=3)
    enqueue = lambda: tasks.enqueue(engine, settings, gid, [spec])  # noqa: E731
    (state,) = _against_a_generation_writer(engine, gid, owner.user_id, enqueue)
    assert state.queued
    assert credit_accounts.balance(engine, owner.user_id) == 7


def test_retention_deleting_beside_a_generation_writer(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned()
    gid = _finished(engine, settings, owner)
    report = PruneReport()
    cutoff = utcnow() + dt.timedelta(days=1)
    prune = lambda: prune_generations(engine, settings, cutoff, 100, report)  # noqa: E731
    _against_a_generation_writer(engine, gid, owner.user_id, prune)
    with engine.connect() as conn:
        gone = conn.execute(select(PoseGeneration.id).where(PoseGeneration.id == gid)).first()
    assert gone is None
