"""Submit: a new generation is a ``pending`` row, a rollup increment, a ``queued`` event, one use
of each of its poses (:mod:`posegen.library.popularity`) and (on PostgreSQL) a NOTIFY, all in one
transaction, which also checks and counts the user's limits (:mod:`posegen.queue.quota`) and
charges its price (:mod:`posegen.credits`): PostgreSQL does all of it in one autocommit statement
(the charge and the uses are CTEs; the balance CHECK rolls the statement back when it cannot be
paid); SQLite in one ``BEGIN IMMEDIATE`` transaction."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, Date, Engine, bindparam, insert, select, text, tuple_
from sqlalchemy.exc import IntegrityError

from posegen import credits
from posegen.config import Settings
from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import GenerationStatus, GenerationType, PoseGeneration, Project
from posegen.db.types import UTCDateTime, utcnow
from posegen.exceptions import (
    Conflict,
    DailyQuotaExceeded,
    InsufficientCredits,
    InvalidInput,
    NotFound,
    PosegenError,
    RateLimited,
)
from posegen.library import popularity
from posegen.metrics import prom
from posegen.observe import tracing
from posegen.queue import events, quota, transitions, tx
from posegen.queue.dialects import DialectOps, ops_for
from posegen.queue.model import GenerationRequest, SubmitResult

_INT32 = 2**31 - 1


#: A refusal whose reason vanished before it was read (the window rolled over, a generation
#: ended) is tried again, at most this many times.
_ADMIT_TRIES = 3


@tracing.traced(
    "posegen.submit", lambda r: {"posegen.generation_id": r.generation_id, "created": r.created}
)
def submit(
    engine: Engine,
    settings: Settings,
    req: GenerationRequest,
    limits: quota.SubmitLimits = quota.UNLIMITED,
) -> SubmitResult:
    """Enqueue one generation; an idempotency key reused with the same body returns the first.

    ``limits`` are checked and counted in the same transaction as the insert, serialised per
    user (see :mod:`posegen.queue.quota`); a replayed idempotency key counts against nothing.
    Raises :class:`InvalidInput` for a malformed request, :class:`NotFound` when the project is
    not the user's, :class:`Conflict` (kind ``idempotency-conflict``) when the key was used for a
    different request, :class:`RateLimited` (``too-many-submissions``, ``too-many-active``) and
    :class:`QuotaExceeded` (``result-quota-exceeded``, ``generation-too-large``) and
    :class:`InsufficientCredits` (nothing charged). A replay is never charged again.
    """
    validate(req)
    if req.idempotency_key is not None:
        found = _existing(engine, req)
        if found is not None:
            return found
    reserved = quota.estimate_result_bytes(
        settings, req.total_expected_poses, req.width, req.height
    )
    try:
        for _ in range(_ADMIT_TRIES):
            try:
                outcome, cost = _admit_and_insert(engine, settings, req, limits, reserved)
            except InsufficientCredits:
                prom.INSUFFICIENT_CREDITS.inc()
                raise
            except DailyQuotaExceeded:
                # A concurrent submit with the same key may have taken the last pose: a replay.
                again = None if req.idempotency_key is None else _existing(engine, req)
                if again is not None:
                    return again
                prom.QUOTA_REFUSALS.inc()
                raise
            if isinstance(outcome, SubmitResult):
                if outcome.created and cost:
                    prom.CREDITS.labels(kind="charged").inc(cost)
                return outcome
            if isinstance(outcome, InsufficientCredits):
                prom.INSUFFICIENT_CREDITS.inc()
            if outcome is not None:
                raise outcome
        raise RateLimited(
            "too many concurrent submits; try again",
            retry_after=1,
            kind="too-many-submissions",
        )
    except IntegrityError:
        if req.idempotency_key is None:
            raise
        # A concurrent submit with the same key won the unique index; answer as it did.
        found = _existing(engine, req)
        if found is None:
            raise
        return found


class _Refused(Exception):
    """Rolls back a submit's transaction; ``reason``: why (None: no reason any more)."""

    def __init__(self, reason: PosegenError | None) -> None:
        super().__init__()
        self.reason = reason


def _price(settings: Settings, req: GenerationRequest) -> int:
    return credits.pricing.quote(
        settings,
        req.total_expected_poses,
        # Paid extras: exports made with each pose, a background change of each result.
        req.export_formats or (),
        background=req.background is not None,
    ).total


def _boosted(settings: Settings, req: GenerationRequest) -> GenerationRequest:
    """A quota plan's generation: claimed before pay-as-you-go ones (higher runs first)."""
    return replace(req, priority=min(_INT32, req.priority + settings.quota_priority))


def _admit_and_insert(
    engine: Engine,
    settings: Settings,
    req: GenerationRequest,
    limits: quota.SubmitLimits,
    reserved: int,
) -> tuple[SubmitResult | PosegenError | None, int]:
    """One try: the new generation, or why it was refused (None: no reason any more), with
    the credits it was charged. The user's plan is read on the submit's own connection: a
    quota plan's generation costs no credits, counts against today's quota in the same
    transaction and is claimed first (priority raised)."""
    ops = ops_for(engine)
    now = utcnow()
    day = credits.plans.local_day(settings, now)
    if ops.submit_one is None:
        return _submit_sqlite(engine, settings, req, limits, reserved, now, day)
    cost = _price(settings, req)
    with tx.autocommit(engine) as conn:
        outcome = _submit_pg(conn, ops, settings, req, limits, reserved, cost, now, day)
    if isinstance(outcome, credits.plans.Plan):
        # The statement found a live quota plan and changed nothing.
        return _submit_pg_quota(engine, ops, settings, req, limits, reserved, outcome, now), 0
    return outcome, cost


def _submit_pg(
    conn: Connection,
    ops: DialectOps,
    settings: Settings,
    req: GenerationRequest,
    limits: quota.SubmitLimits,
    reserved: int,
    cost: int,
    now: dt.datetime,
    day: dt.date,
) -> SubmitResult | PosegenError | credits.plans.Plan | None:
    """PostgreSQL, pay as you go: plan check, limits, charge, rollup, row, event and NOTIFY in
    one autocommit statement on ``conn``; the user's quota plan when they have a live one (the
    statement then changed nothing)."""
    assert ops.submit_one is not None
    row = {**_row(req, settings, now, reserved, cost), "quota_day": day}
    try:
        new_id = ops.submit_one(conn, row, limits)
    except IntegrityError as exc:
        # The balance CHECK refused the charge and rolled the statement back; a
        # concurrent submit with the same key may have been the one that paid.
        if not credits.is_overdraft(exc):
            raise
        again = None if req.idempotency_key is None else _lookup(conn, req)
        return again or credits.insufficient(conn, req.user_id, cost)
    if new_id is not None:
        return SubmitResult(new_id, True)
    # Refused. A concurrent submit with the same key may have taken the last slot:
    # that is a replay, not a refusal.
    if req.idempotency_key is not None:
        again = _lookup(conn, req)
        if again is not None:
            return again
    plan = credits.plans.current(conn, req.user_id, day)
    if plan.is_quota:
        return plan
    return quota.refusal(conn, req.user_id, req.project_id, reserved, limits, now)


def _submit_pg_quota(
    engine: Engine,
    ops: DialectOps,
    settings: Settings,
    req: GenerationRequest,
    limits: quota.SubmitLimits,
    reserved: int,
    plan: credits.plans.Plan,
    now: dt.datetime,
) -> SubmitResult | PosegenError | None:
    """PostgreSQL, a quota plan: the usual one-statement admission, the day's count and its
    ledger row in one transaction (the rollup row is locked first, then the day: the order a
    worker's give-back takes too)."""
    assert ops.submit_one is not None
    try:
        with write_transaction(engine) as conn:
            if req.idempotency_key is not None:
                again = _lookup(conn, req)
                if again is not None:
                    return again
            row = {**_row(_boosted(settings, req), settings, now, reserved), "quota_day": None}
            new_id = ops.submit_one(conn, row, limits)
            if new_id is None:
                raise _Refused(
                    quota.refusal(conn, req.user_id, req.project_id, reserved, limits, now)
                )
            # The day's count after the admission (which locked the rollup row): one lock
            # order with the worker's give-backs (rollup row, then the day). A quota refusal
            # raises here and rolls the generation back with everything else.
            poses = req.total_expected_poses
            credits.plans.consume(conn, settings, req.user_id, plan, poses, now)
            day = credits.plans.local_day(settings, now)
            credits.quota_ledger.record_use(conn, req.user_id, day, poses, new_id, now)
            return SubmitResult(new_id, True)
    except _Refused as refused:
        return refused.reason


def _submit_sqlite(
    engine: Engine,
    settings: Settings,
    req: GenerationRequest,
    limits: quota.SubmitLimits,
    reserved: int,
    now: dt.datetime,
    day: dt.date,
) -> tuple[SubmitResult | PosegenError | None, int]:
    """SQLite: the plan, the quota or the charge, the limits and the row in one ``BEGIN
    IMMEDIATE`` transaction; a refusal raises inside it, so it rolls back whole."""
    try:
        with write_transaction(engine) as conn:
            if req.idempotency_key is not None:
                # Re-check under the write lock: the first lookup ran outside it.
                again = _lookup(conn, req)
                if again is not None:
                    return again, 0
            # Pay as you go unless the user has a live quota plan: the admission's own
            # condition (no statement of its own, as on PostgreSQL), read only when refused.
            row_req, cost, plan = req, _price(settings, req), credits.plans.PAYG
            params = quota.admit_params(req.user_id, req.project_id, reserved, limits, now)
            admitted = conn.execute(_ADMIT_SQLITE_PAYG, {**params, "quota_day": day}).first()
            if admitted is None:
                plan = credits.plans.current(conn, req.user_id, day)
                if plan.is_quota:
                    credits.plans.consume(
                        conn, settings, req.user_id, plan, req.total_expected_poses, now
                    )
                    row_req, cost = _boosted(settings, req), 0
                    admitted = conn.execute(_ADMIT_SQLITE, params).first()
            if admitted is None:
                # Still under the write lock: the reason read here is the one that refused.
                raise _Refused(
                    quota.refusal(conn, req.user_id, req.project_id, reserved, limits, now)
                )
            (gen_id,) = _insert(conn, settings, [row_req], admitted=True, cost=cost)
            if plan.is_quota:
                credits.quota_ledger.record_use(
                    conn, req.user_id, day, req.total_expected_poses, gen_id, now
                )
            if cost and not credits.charge_usage(conn, req.user_id, cost, gen_id, now):
                # Raising rolls back the admission and the row: a refusal charges nothing.
                raise credits.insufficient(conn, req.user_id, cost)
            return SubmitResult(gen_id, True), cost
    except _Refused as refused:
        return refused.reason, 0


_ADMIT_SQLITE = text(quota.admit_sql(lambda name: f":{name}")).bindparams(
    bindparam("now", type_=UTCDateTime()), bindparam("window_floor", type_=UTCDateTime())
)
#: The same admission for a user without a live quota plan (their newest ``credit_plans``
#: row, :mod:`posegen.credits.plans`): a quota user's submit is not admitted by it.
_ADMIT_SQLITE_PAYG = text(
    quota.admit_sql(
        lambda name: f":{name}",
        "AND NOT EXISTS (SELECT 1 FROM (SELECT plan, valid_until FROM credit_plans "
        "WHERE user_id = :user_id ORDER BY id DESC LIMIT 1) AS cp "
        "WHERE cp.plan = 'quota' AND cp.valid_until >= :quota_day)",
    )
).bindparams(
    bindparam("now", type_=UTCDateTime()),
    bindparam("window_floor", type_=UTCDateTime()),
    bindparam("quota_day", type_=Date()),
)


@tracing.traced("posegen.submit_many", lambda ids: {"count": len(ids)})
def submit_many(engine: Engine, settings: Settings, reqs: Sequence[GenerationRequest]) -> list[int]:
    """Enqueue many generations in one transaction (operators' bulk submit, load tests).

    Idempotency keys are refused here: they only make sense one request at a time.
    """
    for req in reqs:
        validate(req)
        if req.idempotency_key is not None:
            raise InvalidInput("bulk submit does not take idempotency keys")
    if not reqs:
        return []
    ops = ops_for(engine)
    with write_transaction(engine) as conn:
        if ops.submit_rows is None:
            return _insert(conn, settings, reqs)
        # PostgreSQL: rows, rollup, events and NOTIFY in one statement over arrays.
        _check_projects(conn, reqs)
        now = utcnow()
        ids = ops.submit_rows(conn, [_row(r, settings, now, _estimate(settings, r)) for r in reqs])
        popularity.count_uses(conn, [r.pose_ids for r in reqs])
        return ids


def validate(req: GenerationRequest) -> None:
    """Refuse what a worker could never finish; a clear message names the field."""
    if req.variations < 1:
        raise InvalidInput("variations must be at least 1")
    if req.type == GenerationType.LIBRARY:
        if not req.pose_ids:
            raise InvalidInput("a library generation needs at least one pose")
        if len(set(req.pose_ids)) != len(req.pose_ids):
            raise InvalidInput("pose ids must not repeat")
        if any(p < 1 for p in req.pose_ids):
            raise InvalidInput("pose ids must be positive")
    else:
        if req.pose_ids:
            raise InvalidInput("a text generation takes no pose ids")
        if not (req.prompt or "").strip():
            raise InvalidInput("a text generation needs a prompt")
    for name, value in (("width", req.width), ("height", req.height)):
        if not 64 <= value <= 4096:
            raise InvalidInput(f"{name} must be between 64 and 4096")
    if not -_INT32 <= req.priority <= _INT32:
        raise InvalidInput("priority out of range")
    if req.idempotency_key is not None and not 1 <= len(req.idempotency_key) <= 200:
        raise InvalidInput("idempotency key must be 1-200 characters")


def _row(
    req: GenerationRequest, settings: Settings, now: dt.datetime, reserved: int, cost: int = 0
) -> dict[str, Any]:
    """The new row's values, every column given (nothing left to Python-side defaults)."""
    return {
        "user_id": req.user_id,
        "project_id": req.project_id,
        "type": req.type,
        "prompt": req.prompt,
        "negative_prompt": req.negative_prompt,
        "selected_pose_ids": list(req.pose_ids),
        "variations": req.variations,
        "total_expected_poses": req.total_expected_poses,
        "width": req.width,
        "height": req.height,
        "seed": req.seed,
        "status": GenerationStatus.PENDING,
        "priority": req.priority,
        "poses_completed": 0,
        "poses_failed": 0,
        "attempts": 0,
        "max_attempts": settings.max_attempts,
        "run_after": now,
        "lease_token": 0,
        "cancel_requested": False,
        "created_at": now,
        "idempotency_key": req.idempotency_key,
        "request_hash": req.request_hash,
        "reserved_bytes": reserved,
        "traceparent": req.traceparent or tracing.traceparent(),
        "backend": req.backend or settings.serving_backend,
        "model": req.model,
        "credit_charged": cost,
        "export_formats": list(req.export_formats) if req.export_formats else None,
        "background": _background(settings, req, cost),
    }


def _background(settings: Settings, req: GenerationRequest, cost: int) -> dict[str, Any] | None:
    """The stored change, with ``_credits``: what each result's change cost when the
    generation was charged (its task refunds that if it fails; 0 on a quota plan)."""
    if req.background is None:
        return None
    paid = settings.credits_background_surcharge if cost > 0 else 0
    return {**req.background, "_credits": paid}


def _insert(
    conn: Connection,
    settings: Settings,
    reqs: Sequence[GenerationRequest],
    *,
    admitted: bool = False,
    cost: int = 0,
) -> list[int]:
    """Insert rows with their events and rollup. ``admitted``: the admission upsert already
    counted the (single) request on the rollup row and checked its project; ``cost``: the
    credits it is charged (the caller writes the charge)."""
    if not admitted:
        _check_projects(conn, reqs)
    now = utcnow()
    rows = [_row(r, settings, now, _estimate(settings, r), cost) for r in reqs]
    result = conn.execute(
        insert(PoseGeneration).returning(PoseGeneration.id, sort_by_parameter_order=True), rows
    )
    ids = [int(i) for i in result.scalars().all()]
    pending = transitions.Pending(notify=True)
    for gen_id, req, row in zip(ids, reqs, rows, strict=True):
        if not admitted:
            pending.deltas.submitted(req.user_id)
            pending.deltas.reserved(req.user_id, row["reserved_bytes"])
        pending.events.append(
            events.Event(
                gen_id,
                "queued",
                events.progress("pending", 0, 0, req.total_expected_poses, priority=req.priority),
            )
        )
    pending.write(conn, ops_for(conn))
    popularity.count_uses(conn, [r.pose_ids for r in reqs])
    return ids


def _estimate(settings: Settings, req: GenerationRequest) -> int:
    return quota.estimate_result_bytes(settings, req.total_expected_poses, req.width, req.height)


def _check_projects(conn: Connection, reqs: Sequence[GenerationRequest]) -> None:
    pairs = {(r.project_id, r.user_id) for r in reqs}
    found = set(
        conn.execute(
            select(Project.id, Project.user_id).where(
                tuple_(Project.id, Project.user_id).in_(list(pairs))
            )
        )
    )
    missing = pairs - {(int(p), int(u)) for p, u in found}
    if missing:
        project_id, user_id = min(missing)
        raise NotFound(f"project {project_id} not found for user {user_id}")


def _lookup(conn: Connection, req: GenerationRequest) -> SubmitResult | None:
    row = conn.execute(
        select(PoseGeneration.id, PoseGeneration.request_hash).where(
            PoseGeneration.user_id == req.user_id,
            PoseGeneration.idempotency_key == req.idempotency_key,
        )
    ).first()
    if row is None:
        return None
    if row.request_hash != req.request_hash:
        raise Conflict(
            "this Idempotency-Key was used for a different request",
            kind="idempotency-conflict",
        )
    return SubmitResult(int(row.id), False)


def _existing(engine: Engine, req: GenerationRequest) -> SubmitResult | None:
    with read_connection(engine) as conn:
        return _lookup(conn, req)
