"""Fast recovery: generations held by a worker whose liveness lock is free go back to
``pending`` at once, without waiting for their lease (see :mod:`posegen.queue.liveness`).

Every worker runs this every ``POSEGEN_DEAD_WORKER_CHECK_SECONDS``; when nobody died it is one
read (PostgreSQL: one statement; SQLite: one read and a ``flock`` attempt per worker holding
work). Safety does not rest on the probe: the requeue is fenced on the lease token like every
other transition, so a worker that only lost its connection and lives on cannot write once its
generation moved (its next write is rejected and it drops the job).

Attempts: the claim already spent one, and a dead worker does not give it back, exactly as
with an expired lease: a generation that kills its worker (out of memory, a native crash) ends
``failed`` after ``max_attempts`` instead of looping. There is no backoff: the worker's death
is rarely the generation's fault, and the point is to resume in seconds.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.types import String

from posegen.config import Settings
from posegen.db.engine import is_sqlite, read_connection, write_transaction
from posegen.db.models import GenerationStatus, GenerationTask, PoseGeneration, TaskStatus, Worker
from posegen.db.types import utcnow
from posegen.metrics import prom
from posegen.queue import liveness, recovery, tasks, transitions, tx
from posegen.queue.bulk_core import LIVE_COLUMNS
from posegen.queue.dialects import ops_for
from posegen.queue.model import RecoveryOutcome

log = logging.getLogger(__name__)

G = PoseGeneration

#: After a PostgreSQL restart every session lock is gone at once, the living workers' too; they
#: take theirs again within a second or two of reconnecting. Until then the probe would take
#: them for dead and waste their work, so workers registered before the server started are
#: only judged this long after it started (a worker registered since took its lock on this
#: server: a free lock is proof enough).
PG_RESTART_GRACE_SECONDS = 10.0

_KEY = liveness.PG_KEY_SQL

# Workers holding work that registered a session lock nobody holds any more. One statement,
# in autocommit: the probe's transaction lock is gone when it returns. DISTINCT sits in a
# subquery so the volatile probe runs once per worker, not once per generation.
_PG_DEAD = text(
    "SELECT s.w FROM (SELECT DISTINCT g.leased_by AS w FROM ("
    # Generations and follow-up tasks (posegen.queue.tasks) alike.
    "SELECT leased_by FROM pose_generations WHERE status = 'processing' UNION ALL "
    "SELECT leased_by FROM generation_tasks WHERE status = 'processing') g "
    "JOIN workers k ON k.id = g.leased_by "
    "WHERE k.liveness = :kind AND g.leased_by <> :me "
    "AND (k.started_at > pg_postmaster_start_time() "
    "OR pg_postmaster_start_time() < now() - make_interval(secs => :grace))) s "
    f"WHERE pg_try_advisory_xact_lock({_KEY.format('s.w')})"
)
# The same probe inside the requeue transaction: the locks are held until it commits, so two
# runners never requeue the same worker's rows twice.
_PG_CONFIRM = text(
    f"SELECT w FROM unnest(:ids) AS w WHERE pg_try_advisory_xact_lock({_KEY.format('w')})"
).bindparams(bindparam("ids", type_=ARRAY(String())))

_HOLDERS = (
    select(G.leased_by)
    .distinct()
    .join(Worker, Worker.id == G.leased_by)
    .where(
        G.status == GenerationStatus.PROCESSING,
        Worker.liveness == bindparam("kind"),
        G.leased_by != bindparam("me"),
    )
).union(
    select(GenerationTask.leased_by)
    .join(Worker, Worker.id == GenerationTask.leased_by)
    .where(
        GenerationTask.status == TaskStatus.PROCESSING,
        Worker.liveness == bindparam("kind"),
        GenerationTask.leased_by != bindparam("me"),
    )
)


def recover_dead_workers(engine: Engine, settings: Settings, runner: str) -> RecoveryOutcome:
    """Requeue (or end, when attempts are spent) the generations of workers that died.

    ``runner`` is the calling worker's id: its own generations are never judged here.
    """
    if is_sqlite(engine):
        return _sqlite(engine, settings, runner)
    return _postgres(engine, settings, runner)


def _postgres(engine: Engine, settings: Settings, runner: str) -> RecoveryOutcome:
    with tx.autocommit(engine) as conn:
        dead = [
            str(w)
            for w in conn.execute(
                _PG_DEAD,
                {"kind": liveness.PG_ADVISORY, "me": runner, "grace": PG_RESTART_GRACE_SECONDS},
            ).scalars()
        ]
    if not dead:
        return RecoveryOutcome(0, 0, 0, ran=False)
    started = utcnow()
    with write_transaction(engine) as conn:
        confirmed = [str(w) for w in conn.execute(_PG_CONFIRM, {"ids": dead}).scalars()]
        outcome, pending = _requeue(conn, confirmed)
    pending.count_metrics()
    return _finish(engine, runner, started, confirmed, outcome)


def _sqlite(engine: Engine, settings: Settings, runner: str) -> RecoveryOutcome:
    folder = liveness.lock_dir(engine)
    if folder is None:
        return RecoveryOutcome(0, 0, 0, ran=False)
    with read_connection(engine) as conn:
        holders = [
            str(w) for w in conn.execute(_HOLDERS, {"kind": liveness.FLOCK, "me": runner}).scalars()
        ]
    if not holders:
        return RecoveryOutcome(0, 0, 0, ran=False)
    with contextlib.ExitStack() as probes:
        # Each dead worker's lock stays taken until its rows are requeued and committed.
        dead = [
            w
            for w in holders
            if probes.enter_context(liveness.probe_flock(liveness.lock_file(folder, w)))
        ]
        if not dead:
            return RecoveryOutcome(0, 0, 0, ran=False)
        started = utcnow()
        with write_transaction(engine) as conn:
            outcome, pending = _requeue(conn, dead)
    pending.count_metrics()
    return _finish(engine, runner, started, dead, outcome)


def _requeue(conn: Connection, dead: Sequence[str]) -> tuple[RecoveryOutcome, transitions.Pending]:
    """Move the dead workers' ``processing`` rows, locked and re-checked in this transaction."""
    pending = transitions.Pending()
    if not dead:
        return RecoveryOutcome(0, 0, 0), pending
    ops = ops_for(conn)
    stmt = (
        select(*LIVE_COLUMNS, G.leased_by)
        .where(G.status == GenerationStatus.PROCESSING, G.leased_by.in_(list(dead)))
        .order_by(G.id)
    )
    if ops.lock_rows:
        # A row some transaction is writing right now (a fenced write that will fail, or a
        # finish that will win) is left for the next pass.
        stmt = stmt.with_for_update(skip_locked=True)
    rows: list[tuple[Any, transitions.LiveRow]] = [
        (r, transitions.LiveRow.from_row(r)) for r in conn.execute(stmt)
    ]
    ends: list[tuple[transitions.LiveRow, GenerationStatus, str | None, str | None]] = []
    backs: list[tuple[transitions.LiveRow, float, str | None, str | None]] = []
    failed = cancelled = 0
    for raw, row in rows:
        message = (
            f"worker {raw.leased_by} died or lost its database session (attempt {row.attempts})"
        )
        if row.cancel_requested:
            ends.append((row, GenerationStatus.CANCELLED, None, None))
            cancelled += 1
        elif row.attempts >= row.max_attempts:
            ends.append(
                (
                    row,
                    GenerationStatus.FAILED,
                    "worker-lost",
                    f"{message}; gave up after {row.attempts} attempts",
                )
            )
            failed += 1
        else:
            backs.append((row, 0.0, "worker-lost", message))
    transitions.end(conn, ends, pending)
    transitions.requeue(conn, backs, pending)
    pending.write(conn, ops)
    # Their follow-up tasks too, in this transaction (generation locks first, as everywhere).
    t_requeued, t_failed = tasks.requeue_dead(conn, dead)
    return RecoveryOutcome(len(backs) + t_requeued, failed + t_failed, cancelled), pending


def _finish(
    engine: Engine,
    runner: str,
    started: dt.datetime,
    dead: Sequence[str],
    outcome: RecoveryOutcome,
) -> RecoveryOutcome:
    moved = outcome.requeued + outcome.failed + outcome.cancelled
    if not moved:
        return RecoveryOutcome(0, 0, 0, ran=bool(dead))
    for label, n in (
        ("requeued", outcome.requeued),
        ("failed", outcome.failed),
        ("cancelled", outcome.cancelled),
    ):
        if n:
            prom.RECOVERIES.labels(outcome=label).inc(n)
    log.info(
        "requeued the generations of dead workers",
        extra={"workers": list(dead), "requeued": outcome.requeued, "failed": outcome.failed},
    )
    recovery.record_run(
        engine, runner, started, outcome.requeued, outcome.failed + outcome.cancelled, None
    )
    return outcome
