"""Claim: lease up to ``limit`` runnable generations to one worker in one statement."""

from __future__ import annotations

import datetime as dt
import time
from collections import defaultdict
from typing import Any

from sqlalchemy import Connection, Engine, String, bindparam, select, text

from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.hot_queries import PENDING_FOR_BACKEND
from posegen.db.models import GeneratedPose, GenerationStatus, GenerationType, PoseGeneration
from posegen.db.types import UTCDateTime, utcnow
from posegen.metrics import prom
from posegen.observe import tracing
from posegen.queue import events, tx
from posegen.queue.dialects import ops_for
from posegen.queue.model import ClaimedJob


def claim(
    engine: Engine,
    settings: Settings,
    worker_id: str,
    limit: int,
    *,
    conn: Connection | None = None,
    backend: str | None = None,
    model: str | None = None,
) -> list[ClaimedJob]:
    """Lease up to ``limit`` pending generations whose ``run_after`` has come.

    Only generations bound to ``backend`` (default: ``settings.serving_backend``) whose model is
    ``model`` or not pinned yet; the claim pins an unpinned one to ``model``, so every attempt of
    a generation uses one model. ``model=None``: this worker's backend has no model (posemap).

    Order: priority (higher first), then ``run_after``, then id. Each claimed row becomes
    ``processing`` with a fresh ``lease_token`` (+1), ``attempts`` + 1, a heartbeat, a hard
    deadline (base + per pose) and ``lease_expires_at = min(now + lease, deadline)``.
    ``conn``: a worker's own connection from :func:`posegen.queue.tx.claimer_connection`.
    """
    if limit < 1:
        return []
    now = utcnow()
    ops = ops_for(engine)
    stmt = ops.claim_statement.bindparams(
        bindparam("now", type_=UTCDateTime()),
        bindparam("lease_until", type_=UTCDateTime()),
        bindparam("backend", type_=String()),
        bindparam("model", type_=String()),
    )
    params = {
        "now": now,
        "lease_until": now + dt.timedelta(seconds=settings.lease_seconds),
        "limit": limit,
        "worker": worker_id[:100],
        "deadline_base": settings.deadline_base_seconds,
        "deadline_per_pose": settings.deadline_per_pose_seconds,
        "backend": backend or settings.serving_backend,
        "model": model,
    }
    bind = conn if conn is not None else engine
    started_ns = time.time_ns()
    if ops.claim_writes_events:
        # One statement (lease + started events): it commits alone, with no BEGIN/COMMIT trips.
        with tx.autocommit(bind) as c:
            rows = c.execute(stmt, params).mappings().all()
    else:
        with tx.write_tx(bind) as c:
            rows = c.execute(stmt, params).mappings().all()
            events.append(c, [_started(r, worker_id) for r in rows])
    if not rows:
        return []
    prom.CLAIMS.inc(len(rows))
    if tracing.enabled():
        # One statement claimed them all; each generation's trace gets the claim as a span.
        ended_ns = time.time_ns()
        for r in rows:
            tracing.record_span(
                "posegen.claim",
                r["traceparent"],
                started_ns,
                ended_ns,
                **{"posegen.generation_id": int(r["id"]), "batch": len(rows)},
                worker=worker_id,
                attempt=int(r["attempts"]),
                lease_token=int(r["lease_token"]),
            )
    # Only resumed generations have checkpoints; a first claim costs no extra query.
    resumed = [int(r["id"]) for r in rows if r["poses_completed"] + r["poses_failed"] > 0]
    done = _done_keys(engine, resumed) if resumed else {}
    jobs = [
        ClaimedJob(
            id=int(r["id"]),
            lease_token=int(r["lease_token"]),
            user_id=int(r["user_id"]),
            project_id=int(r["project_id"]),
            type=GenerationType(r["type"]),
            pose_ids=[int(p) for p in (r["selected_pose_ids"] or [])],
            variations=int(r["variations"]),
            prompt=r["prompt"],
            negative_prompt=r["negative_prompt"],
            width=int(r["width"]),
            height=int(r["height"]),
            seed=None if r["seed"] is None else int(r["seed"]),
            attempts=int(r["attempts"]),
            max_attempts=int(r["max_attempts"]),
            deadline_at=r["deadline_at"],
            done_keys=frozenset(done.get(int(r["id"]), ())),
            priority=int(r["priority"]),
            total_expected_poses=int(r["total_expected_poses"]),
            traceparent=r["traceparent"],
            backend=str(r["backend"]),
            model=r["model"],
            export_formats=tuple(r["export_formats"]) if r["export_formats"] else None,
            background=dict(r["background"]) if r["background"] else None,
        )
        for r in rows
    ]
    # RETURNING gives no order guarantee; hand jobs out in the order they were picked.
    order = {int(r["id"]): (-int(r["priority"]), r["run_after"], int(r["id"])) for r in rows}
    jobs.sort(key=lambda j: order[j.id])
    return jobs


def _done_keys(engine: Engine, ids: list[int]) -> dict[int, set[str]]:
    out: dict[int, set[str]] = defaultdict(set)
    with read_connection(engine) as conn:
        for gen_id, key in conn.execute(
            select(GeneratedPose.generation_id, GeneratedPose.variation_key).where(
                GeneratedPose.generation_id.in_(ids)
            )
        ):
            out[int(gen_id)].add(key)
    return out


def pending_exists(engine: Engine, backend: str | None = None, model: str | None = None) -> bool:
    """Is any generation pending (due now or later)? Burst workers exit when none is.

    With ``backend``: only generations a worker serving ``backend``/``model`` could claim.
    """
    with read_connection(engine) as conn:
        if backend is None:
            found = conn.execute(
                select(PoseGeneration.id)
                .where(PoseGeneration.status == GenerationStatus.PENDING)
                .limit(1)
            ).first()
        else:
            found = conn.execute(
                text(PENDING_FOR_BACKEND.sql).bindparams(
                    bindparam("backend", type_=String()), bindparam("model", type_=String())
                ),
                {"backend": backend, "model": model},
            ).first()
    return found is not None


def _started(r: Any, worker_id: str) -> events.Event:
    return events.Event(
        int(r["id"]),
        "started",
        events.progress(
            "processing",
            r["poses_completed"],
            r["poses_failed"],
            r["total_expected_poses"],
            attempt=r["attempts"],
            worker=worker_id,
        ),
    )
