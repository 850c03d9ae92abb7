"""Per-pose checkpoints: each finished pose is its own ``generated_poses`` row, unique on
(generation, variation key), so a resumed generation skips it and nothing is counted twice."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Engine, Table, bindparam, update
from sqlalchemy.exc import IntegrityError

from posegen.db.engine import write_transaction
from posegen.db.models import GeneratedPose, PoseGeneration, PoseStatus
from posegen.db.types import utcnow
from posegen.exceptions import InvalidInput, LeaseLost
from posegen.metrics import prom
from posegen.queue import events, rollup, transitions
from posegen.queue.dialects import DialectOps, ops_for
from posegen.queue.model import PoseResult, variation_key

G = PoseGeneration

_COUNT = (
    update(G)
    .where(G.id == bindparam("b_id"), G.lease_token == bindparam("b_token"))
    .values(
        poses_completed=G.poses_completed + bindparam("b_ok"),
        poses_failed=G.poses_failed + bindparam("b_bad"),
    )
)


@dataclass(frozen=True)
class PoseWrite:
    job_id: int
    lease_token: int
    result: PoseResult


@dataclass(frozen=True)
class PoseOutcome:
    """What the lease holder learns from a pose write."""

    lost: bool
    cancel_requested: bool = False
    #: False when the variation was already checkpointed (a no-op, not counted again).
    counted: bool = False


def record_pose(engine: Engine, job_id: int, lease_token: int, result: PoseResult) -> None:
    """Checkpoint one pose under the lease. Raises :class:`LeaseLost` when the lease is gone."""
    (outcome,) = record_poses(engine, [PoseWrite(job_id, lease_token, result)])
    if outcome.lost:
        raise LeaseLost(f"generation {job_id}: lease {lease_token} lost")


def record_poses(engine: Engine, writes: Sequence[PoseWrite]) -> list[PoseOutcome]:
    """Checkpoint many poses (of many generations) in one transaction.

    Writes whose lease is lost are dropped and reported; the rest commit. A variation already
    stored is a no-op. Counts, rollup and ``pose`` events move in the same transaction.
    """
    for w in writes:
        check_result(w.result)
    ops = ops_for(engine)
    now = utcnow()
    try:
        with write_transaction(engine) as conn:
            live = transitions.fence(conn, ops, [(w.job_id, w.lease_token) for w in writes])
            mine = [w for w in writes if w.job_id in live]
            inserted = _insert(conn, ops, mine, now) if mine else set()
            counts: dict[int, list[int]] = {}
            for w in mine:
                if (w.job_id, w.result.variation_key) in inserted:
                    ok = w.result.status == PoseStatus.COMPLETED
                    c = counts.setdefault(w.job_id, [0, 0])
                    c[0 if ok else 1] += 1
            if counts:
                conn.execute(
                    _COUNT,
                    [
                        {"b_id": j, "b_token": live[j].lease_token, "b_ok": ok, "b_bad": bad}
                        for j, (ok, bad) in sorted(counts.items())
                    ],
                )
            deltas = rollup.Deltas()
            evs = []
            running: dict[int, list[int]] = {
                j: [live[j].poses_completed, live[j].poses_failed] for j in live
            }
            for w in mine:
                if (w.job_id, w.result.variation_key) not in inserted:
                    continue
                ok = w.result.status == PoseStatus.COMPLETED
                row, run = live[w.job_id], running[w.job_id]
                run[0 if ok else 1] += 1
                if ok:
                    deltas.poses(row.user_id, 1)
                evs.append(
                    events.Event(
                        w.job_id,
                        "pose",
                        events.progress(
                            "processing",
                            run[0],
                            run[1],
                            row.total,
                            variationKey=w.result.variation_key,
                            poseId=w.result.pose_id,
                            poseStatus=w.result.status.value,
                            errorKind=w.result.error_kind,
                        ),
                    )
                )
            rollup.apply(conn, deltas)
            events.append(conn, evs)
    except IntegrityError as exc:
        # Only the pose-count CHECK can fire here: a key outside the generation's poses.
        raise InvalidInput(f"pose result does not fit its generation: {exc.orig}") from exc
    outcomes = []
    for w in writes:
        held = live.get(w.job_id)
        if held is None:
            prom.LEASE_LOSSES.inc()
            outcomes.append(PoseOutcome(lost=True))
            continue
        counted = (w.job_id, w.result.variation_key) in inserted
        if counted:
            prom.POSES.labels(status=w.result.status.value).inc()
        outcomes.append(PoseOutcome(False, held.cancel_requested, counted))
    return outcomes


def check_result(r: PoseResult) -> None:
    """Refuse a result whose key does not match its pose and variation index."""
    if r.variation_key != variation_key(r.pose_id, r.variation_index):
        raise InvalidInput(
            f"variation key {r.variation_key!r} does not match pose {r.pose_id} "
            f"variation {r.variation_index}"
        )


def _insert(
    conn: Connection, ops: DialectOps, writes: Sequence[PoseWrite], now: dt.datetime
) -> set[tuple[int, str]]:
    """Insert the pose rows; returns the (generation, key) pairs that were new."""
    stmt = ops.insert_ignoring_duplicates(cast(Table, GeneratedPose.__table__)).returning(
        GeneratedPose.generation_id, GeneratedPose.variation_key
    )
    rows = [
        {
            "generation_id": w.job_id,
            "variation_key": w.result.variation_key,
            "pose_id": w.result.pose_id,
            "variation_index": w.result.variation_index,
            "status": w.result.status,
            "image_path": w.result.image_path,
            "thumbnail_path": w.result.thumbnail_path,
            "seed": w.result.seed,
            "prompt_used": w.result.prompt_used,
            "duration_ms": w.result.duration_ms,
            "error_kind": w.result.error_kind,
            "error_message": w.result.error_message,
            "metadata": w.result.meta,  # the column is named "metadata" (its ORM attribute is meta)
            "created_at": now,
        }
        for w in writes
    ]
    return {(int(g), str(k)) for g, k in conn.execute(stmt, rows)}
