"""Follow-up tasks in the queue: fenced writes (a recovered lease writes nothing), retries and
exhaustion, and 40 tasks of one generation finishing at once that settle it exactly once."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable

from queue_helpers import Owner, completed_result, events_of
from sqlalchemy import Engine, select, update

from posegen import queue
from posegen.config import Settings
from posegen.db.models import GenerationTask
from posegen.db.types import utcnow
from posegen.queue import tasks


def _finished(engine: Engine, settings: Settings, owner: Owner) -> int:
    gid = queue.submit(engine, settings, owner.request()).generation_id
    (job,) = queue.claim(engine, settings, "w", 1)
    queue.record_pose(engine, job.id, job.lease_token, completed_result(owner.pose_ids[0], 0))
    queue.finish(engine, job.id, job.lease_token)
    return gid


def _expire(engine: Engine, task_id: int) -> None:
    with engine.begin() as conn:
        conn.execute(
            update(GenerationTask)
            .where(GenerationTask.id == task_id)
            .values(lease_expires_at=utcnow() - dt.timedelta(seconds=1))
        )


def test_a_recovered_lease_writes_nothing_and_attempts_run_out(
    engine: Engine, tuned: Callable[..., Settings], owner: Owner
) -> None:
    settings = tuned(max_attempts=2, retry_backoff_base_seconds=0)
    gid = _finished(engine, settings, owner)
    spec = tasks.TaskSpec("export", "export:a", {"format": "a"})
    (state,) = tasks.enqueue(engine, settings, gid, [spec])
    (old,) = tasks.claim(engine, settings, "w1", 5, ["export"])
    assert tasks.claim(engine, settings, "w2", 5, ["export"]) == []  # leased: nobody else
    assert tasks.claim(engine, settings, "w2", 5, ["other"]) == []
    _expire(engine, old.id)
    assert tasks.recover_expired(engine, settings) == (1, 0)
    (new,) = tasks.claim(engine, settings, "w2", 5, ["export"])
    assert new.lease_token == old.lease_token + 1 and new.attempts == 2
    # The first worker wakes up: every write of its is refused, nothing lands.
    wrote: list[int] = []
    assert not tasks.complete(engine, old, lambda conn: wrote.append(1) or {})
    assert not tasks.extend(engine, settings, old)
    assert not tasks.fail(engine, settings, old, "storage", "late", transient=True)
    assert wrote == []
    # The second attempt fails transiently, but attempts are spent: failed, settled.
    assert tasks.fail(engine, settings, new, "storage", "disk full", transient=True)
    kinds = [k for k, _ in events_of(engine, gid)]
    assert kinds[kinds.index("completed") + 1 :] == [
        "task_queued",
        "task_started",
        "task_retrying",
        "task_started",
        "task_failed",
        "tasks_settled",
    ]
    failed = events_of(engine, gid)[-2][1]
    assert failed["errorKind"] == "storage" and "disk full" not in str(failed)
    # Asked again: the same row, queued afresh with its attempts reset.
    (again,) = tasks.enqueue(engine, settings, gid, [spec])
    assert (again.id, again.queued, again.status.value) == (state.id, True, "pending")
    (third,) = tasks.claim(engine, settings, "w3", 5, ["export"])
    assert third.attempts == 1 and tasks.complete(engine, third)


def test_forty_tasks_finishing_at_once_settle_the_generation_exactly_once(
    engine: Engine, settings: Settings, owner: Owner
) -> None:
    gid = _finished(engine, settings, owner)
    specs = [tasks.TaskSpec("export", f"export:f{i}", {"format": f"f{i}"}) for i in range(40)]
    assert all(s.queued for s in tasks.enqueue(engine, settings, gid, specs))
    claimed = tasks.claim(engine, settings, "w", 40, ["export"])
    assert len(claimed) == 40
    barrier = threading.Barrier(40)
    outcomes: list[bool] = []

    def finish(task: tasks.ClaimedTask) -> None:
        barrier.wait()
        outcomes.append(tasks.complete(engine, task))

    threads = [threading.Thread(target=finish, args=(t,)) for t in claimed]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert outcomes == [True] * 40
    events = events_of(engine, gid)
    kinds = [k for k, _ in events]
    assert kinds.count("task_completed") == 40 and kinds.count("tasks_settled") == 1
    assert kinds[-1] == "tasks_settled"
    # Each completion says how many were still open after it: 39 down to 0, once each.
    assert sorted(d["open"] for k, d in events if k == "task_completed") == list(range(40))
    with engine.connect() as conn:
        statuses = set(conn.execute(select(GenerationTask.status)).scalars())
    assert {str(s) for s in statuses} == {"completed"}
