"""Per-pose checkpoints: each finished pose is its own ``generated_poses`` row, unique on
(generation, variation key), so a resumed generation skips it and nothing is counted twice."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select

from posegen import credits, failures
from posegen.db.models import GeneratedPose, GenerationStatus, PoseGeneration, PoseStatus
from posegen.db.types import utcnow
from posegen.exceptions import InvalidInput
from posegen.queue import events, transitions
from posegen.queue.dialects import DialectOps
from posegen.queue.model import PoseResult, variation_key

G = PoseGeneration


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
    #: Set when the same transaction also finished the generation (its last pose).
    finished: GenerationStatus | None = None


def check_result(r: PoseResult) -> None:
    """Refuse a result whose key does not match its pose and variation index."""
    if r.variation_key != variation_key(r.pose_id, r.variation_index):
        raise InvalidInput(
            f"variation key {r.variation_key!r} does not match pose {r.pose_id} "
            f"variation {r.variation_index}"
        )


def checkpoint(
    conn: Connection,
    ops: DialectOps,
    live: dict[int, transitions.LiveRow],
    writes: Sequence[PoseWrite],
    pending: transitions.Pending,
    ending: frozenset[int] = frozenset(),
) -> set[tuple[int, str]]:
    """Inside the caller's transaction, with ``live`` fenced: store the poses, bump the counts
    (``live`` is updated in place), queue rollup and ``pose`` events. Returns what was new.

    Jobs in ``ending`` are finished later in the same transaction, and the terminal UPDATE
    writes their counts: no separate count UPDATE for them.
    """
    mine = [w for w in writes if w.job_id in live]
    if not mine:
        return set()
    inserted = ops.insert_poses(conn, [_pose_row(w) for w in mine], utcnow())
    per_job: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    refunds: list[tuple[int, int, str, int | None, int]] = []
    # Failed poses of uncharged generations: a quota plan's, given back to their day.
    free_failed: list[tuple[int, str, int | None]] = []
    for w in mine:
        if (w.job_id, w.result.variation_key) not in inserted:
            continue
        ok = w.result.status == PoseStatus.COMPLETED
        row = live[w.job_id]
        if ok:
            row.poses_completed += 1
        else:
            row.poses_failed += 1
            if row.credit_charged:
                # Refunded with its own terminal write, keyed by the pose (exactly once).
                cost = credits.pricing.per_pose(row.credit_charged, row.total)
                refunds.append(
                    (w.job_id, row.user_id, w.result.variation_key, w.result.pose_id, cost)
                )
            else:
                free_failed.append((w.job_id, w.result.variation_key, w.result.pose_id))
        per_job[w.job_id][0 if ok else 1] += 1
        if ok:
            pending.deltas.poses(row.user_id, 1)
        if w.result.bytes:
            pending.deltas.stored(row.user_id, w.result.bytes)
        pending.events.append(
            events.Event(
                w.job_id,
                "pose",
                events.progress(
                    "processing",
                    row.poses_completed,
                    row.poses_failed,
                    row.total,
                    variationKey=w.result.variation_key,
                    poseId=w.result.pose_id,
                    poseStatus=w.result.status.value,
                    errorKind=w.result.error_kind,
                ),
            )
        )
        pending.poses.append(w.result.status)
    if refunds:
        pending.refunded += credits.refund_poses(conn, refunds)
    if free_failed:
        credits.quota_ledger.give_back_poses(conn, free_failed)
    _exports(
        conn,
        [w for w in mine if w.result.exports and (w.job_id, w.result.variation_key) in inserted],
        live,
        pending,
    )
    _follow_ups(
        conn,
        [
            w
            for w in mine
            if w.result.follow_ups
            and w.result.status == PoseStatus.COMPLETED
            and (w.job_id, w.result.variation_key) in inserted
        ],
        live,
        pending,
    )
    counts = [
        (j, live[j].lease_token, ok_n, bad_n)
        for j, (ok_n, bad_n) in sorted(per_job.items())
        if j not in ending
    ]
    if counts:
        ops.add_counts(conn, counts)
    return inserted


def _exports(
    conn: Connection,
    writes: Sequence[PoseWrite],
    live: dict[int, transitions.LiveRow],
    pending: transitions.Pending,
) -> None:
    """The exports made with these new poses, in the poses' own transaction: a pose is never
    stored without its exports (``posegen.exporting``)."""
    if not writes:
        return
    from posegen.exporting import records  # the domain's rows; imported late (no cycle)

    for job_id in sorted({w.job_id for w in writes}):
        mine = {w.result.variation_key: w for w in writes if w.job_id == job_id}
        ids = dict(
            conn.execute(
                select(GeneratedPose.variation_key, GeneratedPose.id).where(
                    GeneratedPose.generation_id == job_id,
                    GeneratedPose.variation_key.in_(list(mine)),
                )
            ).all()
        )
        items = [(int(ids[k]), f) for k, w in mine.items() for f in w.result.exports]
        stored = records.insert(conn, job_id, items)
        if stored:
            pending.deltas.stored(live[job_id].user_id, stored)


def _follow_ups(
    conn: Connection,
    writes: Sequence[PoseWrite],
    live: dict[int, transitions.LiveRow],
    pending: transitions.Pending,
) -> None:
    """The follow-up tasks these new results need (a background change asked at submit),
    queued in the poses' own transaction: a result never lands without its task."""
    if not writes:
        return
    from posegen.queue import tasks  # imported late: tasks imports this package's modules

    for job_id in sorted({w.job_id for w in writes}):
        mine = {w.result.variation_key: w for w in writes if w.job_id == job_id}
        ids = dict(
            conn.execute(
                select(GeneratedPose.variation_key, GeneratedPose.id).where(
                    GeneratedPose.generation_id == job_id,
                    GeneratedPose.variation_key.in_(list(mine)),
                )
            ).all()
        )
        specs = [make(int(ids[k])) for k, w in mine.items() for make in w.result.follow_ups]
        row = live[job_id]
        gen = _GenForEvents(
            row.id, row.user_id, "processing", row.poses_completed, row.poses_failed, row.total
        )
        tasks.add(conn, gen, specs, row.max_attempts, pending)


@dataclass(frozen=True)
class _GenForEvents:
    """What a task event reads of its generation, from the lease holder's live row."""

    id: int
    user_id: int
    status: str
    poses_completed: int
    poses_failed: int
    total_expected_poses: int


def _pose_row(w: PoseWrite) -> dict[str, Any]:
    r = w.result
    return {
        "generation_id": w.job_id,
        "variation_key": r.variation_key,
        "pose_id": r.pose_id,
        "variation_index": r.variation_index,
        "status": r.status,
        "image_path": r.image_path,
        "thumbnail_path": r.thumbnail_path,
        "seed": r.seed,
        "prompt_used": r.prompt_used,
        "duration_ms": r.duration_ms,
        "error_kind": r.error_kind,
        # The owner reads a sentence for the kind; the raw text is for admins and logs.
        "error_message": failures.public_message(r.error_kind),
        "error_detail": failures.detail(r.error_message),
        "metadata": r.meta,  # the column is named "metadata" (its ORM attribute is meta)
        "bytes": r.bytes,
        "backend": r.backend,
        "model": r.model,
    }
