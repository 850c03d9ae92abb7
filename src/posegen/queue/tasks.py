"""Follow-up tasks: work on a generation after its poses (exports on demand now, a background
change of one result later), leased, fenced and recovered like the generations themselves.

One table, ``generation_tasks``, owned here. A task is unique on (generation, ``task_key``), so
asking twice for the same work queues it once (a failed one is queued again). Claims take a
fresh ``lease_token`` (+1) and a lease; every later write is fenced on that token, so a worker
whose lease was recovered writes nothing. Every transition locks the generation row first, then
the owner's quota row (one lock order everywhere: the generation's own writes, deletions and
retention take it too; tests/queue/test_lock_order.py), which also makes the "last open task
closed" check exact: the ``tasks_settled`` event is written by exactly one transaction.

Events go to the generation's own stream (``task_queued``, ``task_started``, ``task_retrying``,
``task_completed``, ``task_failed``, ``tasks_settled``), in the transaction of the change. A
stream that ended with the generation is reopened by ``task_queued``; ``tasks_settled`` ends it
again. Domains that change with a task (the exports' rows) are written by a function the caller
passes, called here with the open connection before the commit.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Connection,
    Engine,
    Integer,
    String,
    bindparam,
    func,
    select,
    text,
    update,
)

from posegen import failures
from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import GenerationTask, PoseGeneration, TaskStatus
from posegen.db.types import UTCDateTime, utcnow
from posegen.queue import events, quota, transitions, tx
from posegen.queue.dialects import ops_for

T = GenerationTask
G = PoseGeneration

OPEN = (TaskStatus.PENDING, TaskStatus.PROCESSING)


@dataclass(frozen=True)
class TaskSpec:
    """Work to queue: ``kind`` names the worker handler, ``key`` makes it idempotent."""

    kind: str
    key: str
    params: dict[str, Any] = field(default_factory=dict)
    result_id: int | None = None
    #: Credits charged when it is queued (each time: a failed one queued again pays again),
    #: refunded exactly once if it then fails.
    price: int = 0
    #: Credits already paid elsewhere (the generation's price) that its failure refunds.
    covered: int = 0
    #: None: the settings' ``max_attempts``.
    max_attempts: int | None = None


@dataclass(frozen=True)
class TaskState:
    """A task as a caller of :func:`enqueue` sees it after the call."""

    id: int
    key: str
    status: TaskStatus
    #: True when this call queued it (new, or a failed one queued again).
    queued: bool


@dataclass(frozen=True)
class ClaimedTask:
    id: int
    lease_token: int
    generation_id: int
    user_id: int
    result_id: int | None
    kind: str
    key: str
    params: dict[str, Any]
    attempts: int
    max_attempts: int


def _gen_rows(conn: Connection, ids: Sequence[int]) -> dict[int, Any]:
    """Lock the generations (id order) and return their status and counts for the events."""
    stmt = (
        select(G.id, G.user_id, G.status, G.poses_completed, G.poses_failed, G.total_expected_poses)
        .where(G.id.in_(sorted(set(ids))))
        .order_by(G.id)
    )
    if ops_for(conn).lock_rows:
        stmt = stmt.with_for_update()
    return {int(r.id): r for r in conn.execute(stmt)}


def _open_count(conn: Connection, generation_id: int) -> int:
    return int(
        conn.execute(
            select(func.count())
            .select_from(T)
            .where(T.generation_id == generation_id, T.status.in_(OPEN))
        ).scalar_one()
    )


def _event(gen: Any, kind: str, **extra: Any) -> events.Event:
    return events.Event(
        int(gen.id),
        kind,
        events.progress(
            str(getattr(gen.status, "value", gen.status)),
            int(gen.poses_completed),
            int(gen.poses_failed),
            int(gen.total_expected_poses),
            **extra,
        ),
    )


def _task_fields(row: Any) -> dict[str, Any]:
    params = dict(row.params or {})
    return {
        "taskId": int(row.id),
        "taskKind": row.kind,
        "taskKey": row.task_key,
        "format": params.get("format"),
        "resultId": None if row.result_id is None else int(row.result_id),
    }


def _settle(conn: Connection, gen: Any, pending: transitions.Pending) -> int:
    """After a task closed: ``tasks_settled`` when it was the generation's last open one."""
    still_open = _open_count(conn, int(gen.id))
    if still_open == 0:
        pending.events.append(_event(gen, "tasks_settled"))
    return still_open


# --- enqueue (the API) ------------------------------------------------------------------------
def enqueue(
    engine: Engine, settings: Settings, generation_id: int, specs: Sequence[TaskSpec]
) -> list[TaskState]:
    """Queue ``specs`` for a generation, idempotently, with a ``task_queued`` event each.

    A key already open or completed is left as it is (``queued=False``); a failed one is
    queued again with fresh attempts. Safe under any number of concurrent identical calls:
    the unique (generation, key) constraint keeps one row per key.
    """
    pending = transitions.Pending()
    with tx.write_tx(engine) as conn:
        gens = _gen_rows(conn, [generation_id])
        gen = gens.get(generation_id)
        if gen is None or not specs:
            return []
        if any(s.price > 0 for s in specs):
            # A charge updates the owner's quota row: after the generation, as :func:`complete`.
            quota.lock_user(conn, int(gen.user_id))
        out = add(conn, gen, specs, settings.max_attempts, pending)
        pending.write(conn, ops_for(conn))
    return out


def add(
    conn: Connection,
    gen: Any,
    specs: Sequence[TaskSpec],
    max_attempts: int,
    pending: transitions.Pending,
) -> list[TaskState]:
    """:func:`enqueue` inside the caller's transaction, the generation row ``gen`` (id,
    user_id, status and counts) already locked by it: also how a pose's checkpoint queues the
    work its result needs. Charges each fresh task's ``price`` here (InsufficientCredits rolls
    the caller's transaction back: nothing queued, nothing charged)."""
    now = utcnow()
    generation_id = int(gen.id)
    by_key = {s.key: s for s in specs}
    keys = list(by_key)
    new_rows = [
        {
            "generation_id": generation_id,
            "result_id": s.result_id,
            "kind": s.kind,
            "task_key": s.key,
            "params": s.params,
            "status": TaskStatus.PENDING,
            "attempts": 0,
            "max_attempts": s.max_attempts or max_attempts,
            "run_after": now,
            "lease_token": 0,
            "created_at": now,
            "credit_charged": s.covered,
            "charges": 1 if s.covered else 0,
        }
        for s in by_key.values()
    ]
    # ON CONFLICT DO NOTHING (both engines): a concurrent identical request inserts nothing.
    ins = _insert_ignore(conn).values(new_rows).returning(T.id, T.task_key)
    created = {str(k): int(i) for i, k in conn.execute(ins)}
    requeued = conn.execute(
        update(T)
        .where(
            T.generation_id == generation_id,
            T.task_key.in_(keys),
            T.status == TaskStatus.FAILED,
        )
        .values(
            status=TaskStatus.PENDING,
            attempts=0,
            run_after=now,
            leased_by=None,
            lease_expires_at=None,
            error_kind=None,
            error_message=None,
            error_detail=None,
            completed_at=None,
            credit_charged=0,
        )
        .returning(T.id, T.task_key)
    ).all()
    fresh = {**created, **{str(k): int(i) for i, k in requeued}}
    _charge(conn, int(gen.user_id), generation_id, fresh, by_key, now)
    rows = conn.execute(
        select(T.id, T.kind, T.task_key, T.params, T.result_id, T.status)
        .where(T.generation_id == generation_id, T.task_key.in_(keys))
        .order_by(T.id)
    ).all()
    out: dict[str, TaskState] = {}
    for r in rows:
        key = str(r.task_key)
        out[key] = TaskState(int(r.id), key, TaskStatus(r.status), key in fresh)
        if key in fresh:
            pending.events.append(_event(gen, "task_queued", **_task_fields(r)))
    if fresh:
        pending.notify = True
    return [out[k] for k in keys if k in out]


def _charge(
    conn: Connection,
    user_id: int,
    generation_id: int,
    fresh: dict[str, int],
    specs: dict[str, TaskSpec],
    now: dt.datetime,
) -> None:
    """Charge the freshly queued tasks' prices, one ledger row per task and round."""
    paid = sorted((i, specs[k].price) for k, i in fresh.items() if specs[k].price > 0)
    if not paid:
        return
    from posegen import credits  # the ledger's domain (imported late: no cycle)

    for task_id, price in paid:
        charges = conn.execute(
            update(T)
            .where(T.id == task_id)
            .values(charges=T.charges + 1, credit_charged=price)
            .returning(T.charges)
        ).scalar_one()
        credits.charge_task(conn, user_id, generation_id, task_id, int(charges), price, now)


def _insert_ignore(conn: Connection) -> Any:
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(T).on_conflict_do_nothing(index_elements=["generation_id", "task_key"])
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(T).on_conflict_do_nothing(index_elements=["generation_id", "task_key"])


# --- claim and lease (the worker) ---------------------------------------------------------------
_CLAIM = (
    "UPDATE generation_tasks SET status = 'processing', lease_token = lease_token + 1, "
    "attempts = attempts + 1, leased_by = :worker, lease_expires_at = :lease_until, "
    "started_at = COALESCE(started_at, :now) "
    "WHERE status = 'pending' AND id IN (SELECT id FROM generation_tasks "
    "WHERE status = 'pending' AND run_after <= :now AND kind IN :kinds "
    "ORDER BY run_after, id LIMIT :limit{skip_locked}) "
    "RETURNING id, lease_token, generation_id, result_id, kind, task_key, params, attempts, "
    "max_attempts"
)


def claim(
    engine: Engine, settings: Settings, worker_id: str, limit: int, kinds: Sequence[str]
) -> list[ClaimedTask]:
    """Lease up to ``limit`` due pending tasks of ``kinds`` (oldest first) to ``worker_id``."""
    if limit < 1 or not kinds:
        return []
    now = utcnow()
    # A read first (the partial claim index): an idle worker's poll takes no write lock.
    with read_connection(engine) as conn:
        due = conn.execute(
            select(T.id)
            .where(T.status == TaskStatus.PENDING, T.run_after <= now, T.kind.in_(list(kinds)))
            .limit(1)
        ).first()
    if due is None:
        return []
    ops = ops_for(engine)
    stmt = (
        text(_CLAIM.format(skip_locked=ops.skip_locked))
        .bindparams(
            bindparam("now", type_=UTCDateTime()),
            bindparam("lease_until", type_=UTCDateTime()),
            bindparam("kinds", expanding=True),
        )
        .columns(
            id=BigInteger(),
            lease_token=BigInteger(),
            generation_id=BigInteger(),
            result_id=BigInteger(),
            kind=String(),
            task_key=String(),
            params=JSON(),
            attempts=Integer(),
            max_attempts=Integer(),
        )
    )
    pending = transitions.Pending()
    with tx.write_tx(engine) as conn:
        rows = conn.execute(
            stmt,
            {
                "now": now,
                "lease_until": now + dt.timedelta(seconds=settings.lease_seconds),
                "worker": worker_id[:100],
                "kinds": list(kinds),
                "limit": limit,
            },
        ).all()
        if not rows:
            return []
        # The generation rows are locked after the tasks here (the claim's own order): the
        # claim only writes task rows, so it waits on no generation lock a task writer holds.
        gens = {
            int(r.id): r
            for r in conn.execute(
                select(
                    G.id,
                    G.user_id,
                    G.status,
                    G.poses_completed,
                    G.poses_failed,
                    G.total_expected_poses,
                ).where(G.id.in_({int(r.generation_id) for r in rows}))
            )
        }
        for r in rows:
            gen = gens[int(r.generation_id)]
            pending.events.append(
                _event(
                    gen,
                    "task_started",
                    attempt=int(r.attempts),
                    worker=worker_id,
                    **_task_fields(r),
                )
            )
        pending.write(conn, ops_for(conn))
    return [
        ClaimedTask(
            id=int(r.id),
            lease_token=int(r.lease_token),
            generation_id=int(r.generation_id),
            user_id=int(gens[int(r.generation_id)].user_id),
            result_id=None if r.result_id is None else int(r.result_id),
            kind=str(r.kind),
            key=str(r.task_key),
            params=dict(r.params or {}),
            attempts=int(r.attempts),
            max_attempts=int(r.max_attempts),
        )
        for r in sorted(rows, key=lambda r: int(r.id))
    ]


def extend(engine: Engine, settings: Settings, task: ClaimedTask) -> bool:
    """Renew the lease; False when it is lost (the caller stops and writes nothing)."""
    with tx.write_tx(engine) as conn:
        moved = conn.execute(
            update(T)
            .where(
                T.id == task.id,
                T.lease_token == task.lease_token,
                T.status == TaskStatus.PROCESSING,
            )
            .values(lease_expires_at=utcnow() + dt.timedelta(seconds=settings.lease_seconds))
        ).rowcount
    return bool(moved)


def _fenced(conn: Connection, task: ClaimedTask, values: dict[str, Any]) -> Any:
    return conn.execute(
        update(T)
        .where(
            T.id == task.id,
            T.lease_token == task.lease_token,
            T.status == TaskStatus.PROCESSING,
        )
        .values(**values)
        .returning(
            T.id,
            T.kind,
            T.task_key,
            T.params,
            T.result_id,
            T.attempts,
            T.credit_charged,
            T.charges,
        )
    ).first()


#: What a task's domain writes in the completing transaction; returns extra event fields,
#: and under :data:`FOLLOW_UPS` the TaskSpecs to queue in the same transaction.
Apply = Callable[[Connection], dict[str, Any]]
FOLLOW_UPS = "_followUps"


def complete(engine: Engine, task: ClaimedTask, apply: Apply | None = None) -> bool:
    """End the task ``completed`` and run ``apply`` in the same fenced transaction.

    False when the lease was lost: nothing is written (``apply`` is not called).
    """
    pending = transitions.Pending()
    with tx.write_tx(engine) as conn:
        # The generation, then its owner's quota row (stored bytes change here): the order
        # the generation's own writes take while it is still processing (lock_order tests).
        gen = _gen_rows(conn, [task.generation_id]).get(task.generation_id)
        quota.lock_user(conn, task.user_id)
        row = _fenced(
            conn,
            task,
            {"status": TaskStatus.COMPLETED, "completed_at": utcnow(), "lease_expires_at": None},
        )
        if gen is None or row is None:
            return False
        extra = apply(conn) if apply is not None else {}
        stored = int(extra.pop("storedBytes", 0) or 0)
        if stored:
            pending.deltas.stored(int(gen.user_id), stored)
        # Work the completed task's result needs next (a new variant's exports), queued in
        # this transaction: before the open count, so ``tasks_settled`` waits for it too.
        follow = list(extra.pop(FOLLOW_UPS, ()) or ())
        if follow:
            add(conn, gen, follow, max(s.max_attempts or 1 for s in follow), pending)
        still_open = _open_count(conn, task.generation_id)
        pending.events.append(
            _event(gen, "task_completed", open=still_open, **_task_fields(row), **extra)
        )
        if still_open == 0:
            pending.events.append(_event(gen, "tasks_settled"))
        pending.write(conn, ops_for(conn))
    return True


def fail(
    engine: Engine,
    settings: Settings,
    task: ClaimedTask,
    kind: str,
    message: str,
    *,
    transient: bool,
) -> bool:
    """A failed attempt: back to ``pending`` with backoff while attempts last (``transient``),
    else ``failed``. False when the lease was lost (nothing written)."""
    retry = transient and task.attempts < task.max_attempts
    now = utcnow()
    delay = transitions.backoff_seconds(settings, task.attempts)
    values: dict[str, Any] = {
        "error_kind": kind,
        "error_message": failures.public_message(kind),
        "error_detail": failures.detail(message),
        "lease_expires_at": None,
        "leased_by": None,
    }
    if retry:
        values |= {"status": TaskStatus.PENDING, "run_after": now + dt.timedelta(seconds=delay)}
    else:
        values |= {"status": TaskStatus.FAILED, "completed_at": now}
    pending = transitions.Pending()
    with tx.write_tx(engine) as conn:
        # The generation, then the owner's quota row (a refund below updates it), as
        # :func:`complete` takes them.
        gen = _gen_rows(conn, [task.generation_id]).get(task.generation_id)
        quota.lock_user(conn, task.user_id)
        row = _fenced(conn, task, values)
        if gen is None or row is None:
            return False
        _closed(conn, gen, row, retry, kind, now + dt.timedelta(seconds=delay), pending)
        pending.write(conn, ops_for(conn))
    return True


def _closed(
    conn: Connection,
    gen: Any,
    row: Any,
    retry: bool,
    kind: str,
    run_after: dt.datetime,
    pending: transitions.Pending,
) -> None:
    fields = _task_fields(row)
    sentence = failures.public_message(kind)
    if retry:
        pending.events.append(
            _event(
                gen,
                "task_retrying",
                attempt=int(row.attempts),
                runAfter=run_after.isoformat(),
                errorKind=kind,
                errorMessage=sentence,
                **fields,
            )
        )
        return
    refunded = 0
    if int(row.credit_charged or 0) > 0:
        from posegen import credits  # the ledger's domain (imported late: no cycle)

        refunded = credits.refund_task(
            conn,
            int(gen.user_id),
            int(gen.id),
            int(row.id),
            int(row.charges),
            int(row.credit_charged),
        )
        pending.refunded += refunded
    still_open = _open_count(conn, int(gen.id))
    pending.events.append(
        _event(
            gen,
            "task_failed",
            refunded=refunded,
            open=still_open,
            errorKind=kind,
            errorMessage=sentence,
            **fields,
        )
    )
    if still_open == 0:
        pending.events.append(_event(gen, "tasks_settled"))


def release(engine: Engine, task: ClaimedTask) -> bool:
    """Graceful stop: back to ``pending`` at once, the attempt given back."""
    with tx.write_tx(engine) as conn:
        moved = conn.execute(
            update(T)
            .where(
                T.id == task.id,
                T.lease_token == task.lease_token,
                T.status == TaskStatus.PROCESSING,
            )
            .values(
                status=TaskStatus.PENDING,
                attempts=T.attempts - 1,
                leased_by=None,
                lease_expires_at=None,
                run_after=utcnow(),
            )
        ).rowcount
        if moved:
            ops_for(conn).notify(conn)
    return bool(moved)


# --- recovery ----------------------------------------------------------------------------------
def recover_expired(engine: Engine, settings: Settings, limit: int = 500) -> tuple[int, int]:
    """Tasks whose lease expired: back to ``pending`` (attempt counted) or ``failed`` when
    attempts are spent. Returns (requeued, failed)."""
    now = utcnow()
    ops = ops_for(engine)
    scan = select(T.id).where(T.status == TaskStatus.PROCESSING, T.lease_expires_at < now)
    with tx.write_tx(engine) as conn:
        ids = [int(i) for i in conn.execute(scan.limit(limit)).scalars()]
        if not ids:
            return 0, 0
        return _requeue(conn, ops, T.id.in_(ids), now, "lease-expired", expired_only=True)


def requeue_dead(conn: Connection, dead_workers: Sequence[str]) -> tuple[int, int]:
    """Inside the dead-worker transaction: the dead workers' tasks go back to ``pending`` at
    once (attempt counted) or end ``failed`` when attempts are spent."""
    if not dead_workers:
        return 0, 0
    return _requeue(
        conn, ops_for(conn), T.leased_by.in_(list(dead_workers)), utcnow(), "worker-lost"
    )


def _requeue(
    conn: Connection,
    ops: Any,
    which: Any,
    now: dt.datetime,
    kind: str,
    *,
    expired_only: bool = False,
) -> tuple[int, int]:
    cond = [T.status == TaskStatus.PROCESSING, which]
    if expired_only:
        cond.append(T.lease_expires_at < now)
    gen_ids = [int(g) for g in conn.execute(select(T.generation_id).where(*cond)).scalars()]
    if not gen_ids:
        return 0, 0
    gens = _gen_rows(conn, gen_ids)  # generation locks first: the order every writer uses
    locked = select(T.id, T.generation_id, T.lease_token, T.attempts, T.max_attempts).where(*cond)
    if ops.lock_rows:
        locked = locked.with_for_update(skip_locked=True)
    rows = conn.execute(locked.order_by(T.id)).all()
    pending = transitions.Pending()
    requeued = failed = 0
    message = "the worker stopped (lease expired or worker died)"
    for r in rows:
        task = ClaimedTask(
            id=int(r.id),
            lease_token=int(r.lease_token),
            generation_id=int(r.generation_id),
            user_id=0,
            result_id=None,
            kind="",
            key="",
            params={},
            attempts=int(r.attempts),
            max_attempts=int(r.max_attempts),
        )
        retry = task.attempts < task.max_attempts
        values: dict[str, Any] = {
            "error_kind": kind,
            "error_message": failures.public_message(kind),
            "error_detail": failures.detail(message),
            "lease_expires_at": None,
            "leased_by": None,
        }
        if retry:
            values |= {"status": TaskStatus.PENDING, "run_after": now}
        else:
            values |= {"status": TaskStatus.FAILED, "completed_at": now}
        row = _fenced(conn, task, values)
        if row is None:
            continue
        _closed(conn, gens[task.generation_id], row, retry, kind, now, pending)
        if retry:
            requeued += 1
        else:
            failed += 1
    if requeued:
        pending.notify = True
    pending.write(conn, ops)
    return requeued, failed


# --- reads -----------------------------------------------------------------------------------
def pending_exists(engine: Engine, kinds: Sequence[str]) -> bool:
    """Is any task of ``kinds`` pending (due now or later)? Burst workers exit when none is."""
    if not kinds:
        return False
    with read_connection(engine) as conn:
        found = conn.execute(
            select(T.id).where(T.status == TaskStatus.PENDING, T.kind.in_(list(kinds))).limit(1)
        ).first()
    return found is not None


def open_keys(conn: Connection, generation_id: int, kind: str) -> dict[str, str]:
    """``task_key -> status`` of a generation's tasks of ``kind`` (any state)."""
    return {
        str(k): str(getattr(s, "value", s))
        for k, s in conn.execute(
            select(T.task_key, T.status).where(T.generation_id == generation_id, T.kind == kind)
        )
    }


def params_of(engine: Engine, task_id: int) -> dict[str, Any]:
    """The stored params of one task ({} when there is none)."""
    with read_connection(engine) as conn:
        found = conn.execute(select(T.params).where(T.id == task_id)).scalar()
    return dict(found or {})


def params_by_key(engine: Engine, generation_id: int, key: str) -> dict[str, Any] | None:
    """The stored params of the generation's task ``key`` (None: no such task yet)."""
    with read_connection(engine) as conn:
        found = conn.execute(
            select(T.params).where(T.generation_id == generation_id, T.task_key == key)
        ).first()
    return None if found is None else dict(found[0] or {})
