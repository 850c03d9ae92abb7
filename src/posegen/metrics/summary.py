"""Usage summaries over a time window: generations, poses, errors, popular poses, queue health.

These read the base tables over the window, so they cost O(rows in the window); the API serves
them through a TTL cache. The live queue figures use the partial indexes (pending / processing
rows only), so they stay cheap whatever the table's size.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, and_, func, select

from posegen import bounds
from posegen.credits import hourly
from posegen.db.engine import read_connection
from posegen.db.models import (
    GeneratedPose,
    GenerationStatus,
    PoseGeneration,
    PoseLibrary,
    PoseStatus,
    Worker,
)
from posegen.db.types import utcnow
from posegen.exceptions import InvalidInput
from posegen.metrics.rollup import success_rate

PERIODS: dict[str, dt.timedelta | None] = {
    "1h": dt.timedelta(hours=1),
    "24h": dt.timedelta(hours=24),
    "7d": dt.timedelta(days=7),
    "30d": dt.timedelta(days=30),
    "all": None,
}
DEFAULT_PERIOD = "24h"
#: Finished = reached an outcome. Cancelled generations are left out of the success rate: a
#: user changing their mind says nothing about whether the service works.
FINISHED = (GenerationStatus.COMPLETED, GenerationStatus.PARTIAL, GenerationStatus.FAILED)


@dataclass(frozen=True)
class Window:
    """A half-open time window ``[start, end)``; ``start`` None = since the beginning."""

    label: str
    start: dt.datetime | None
    end: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "period": self.label,
            "from": None if self.start is None else self.start.isoformat(),
            "to": self.end.isoformat(),
        }

    def on(self, column: Any) -> ColumnElement[bool]:
        """The SQL condition "column falls in this window"."""
        cond = column < self.end
        return cond if self.start is None else and_(column >= self.start, cond)


def resolve_window(
    period: str | None = None,
    start: dt.datetime | None = None,
    end: dt.datetime | None = None,
    *,
    now: dt.datetime | None = None,
) -> Window:
    """A window from ``period`` (1h|24h|7d|30d|all) or from ``start``/``end`` (not both)."""
    now = now or utcnow()
    if period is not None and (start is not None or end is not None):
        raise InvalidInput("give either period or from/to, not both")
    if start is None and end is None:
        label = period or DEFAULT_PERIOD
        if label not in PERIODS:
            raise InvalidInput(f"period must be one of {', '.join(PERIODS)}, got {label!r}")
        span = PERIODS[label]
        return Window(label, None if span is None else now - span, now)
    start, end = _utc(start), _utc(end) or now
    if start is not None and start >= end:
        raise InvalidInput("from must be before to")
    return Window("custom", start, end)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    # A time without an offset is taken as UTC, the only zone posegen stores.
    if value is None:
        return None
    try:
        return bounds.bounded_timestamp(value)
    except ValueError as exc:
        raise InvalidInput(f"from/to: {exc}", kind="bad-timestamp") from exc


def summary(
    engine: Engine, window: Window, *, worker_stale_seconds: float, now: dt.datetime | None = None
) -> dict[str, Any]:
    """Generations by status, success rate, poses, seconds per pose, queue and worker health."""
    now = now or utcnow()
    g, gp = PoseGeneration, GeneratedPose
    with read_connection(engine) as conn:
        by_status = {s.value: 0 for s in GenerationStatus}
        for status, count in conn.execute(
            select(g.status, func.count()).where(window.on(g.created_at)).group_by(g.status)
        ):
            by_status[GenerationStatus(status).value] = int(count)
        poses = {s.value: 0 for s in PoseStatus}
        avg_ms: float | None = None
        for status, count, avg in conn.execute(
            select(gp.status, func.count(), func.avg(gp.duration_ms))
            .join(g, g.id == gp.generation_id)
            .where(window.on(g.created_at))
            .group_by(gp.status)
        ):
            poses[PoseStatus(status).value] = int(count)
            if PoseStatus(status) is PoseStatus.COMPLETED and avg is not None:
                avg_ms = float(avg)
        queue = _queue(conn, now)
        workers = _workers(conn, now, worker_stale_seconds)
        # From the hourly credit rollup (posegen.credits.hourly), not a scan; to the hour.
        spent, refunded = hourly.totals(conn, window.start, window.end)
    finished = sum(by_status[s.value] for s in FINISHED)
    return {
        **window.as_dict(),
        "generations": {"total": sum(by_status.values()), "byStatus": by_status},
        "finished": finished,
        "successRate": success_rate(by_status[GenerationStatus.COMPLETED.value], finished),
        "poses": poses,
        "avgSecondsPerPose": None if avg_ms is None else round(avg_ms / 1000, 3),
        "queue": queue,
        "workers": workers,
        "totalCreditsSpent": spent,
        "totalCreditsRefunded": refunded,
    }


def queue_health(engine: Engine, now: dt.datetime | None = None) -> dict[str, Any]:
    """Live queue figures alone (for the Prometheus collector)."""
    with read_connection(engine) as conn:
        return _queue(conn, now or utcnow())


def _queue(conn: Connection, now: dt.datetime) -> dict[str, Any]:
    g = PoseGeneration
    pending = g.status == GenerationStatus.PENDING
    depth, oldest = conn.execute(select(func.count(), func.min(g.created_at)).where(pending)).one()
    runnable = conn.execute(select(func.min(g.run_after)).where(pending, g.run_after <= now))
    oldest_runnable = runnable.scalar_one()
    processing = conn.execute(
        select(func.count()).where(g.status == GenerationStatus.PROCESSING)
    ).scalar_one()
    return {
        "pending": int(depth),
        "processing": int(processing),
        "oldestPendingAgeSeconds": _age(now, oldest),
        # Lag: how long the longest-waiting runnable generation has waited past its run_after
        # (generations backing off before a retry are not late).
        "lagSeconds": _age(now, oldest_runnable) or 0.0,
    }


def _workers(conn: Connection, now: dt.datetime, stale_seconds: float) -> dict[str, int]:
    w = Worker
    live, in_flight, capacity, paused = conn.execute(
        select(
            func.count(),
            func.coalesce(func.sum(w.in_flight), 0),
            func.coalesce(func.sum(w.concurrency), 0),
            # Live but claiming nothing: their backend is unavailable.
            func.count(w.paused_reason),
        ).where(w.stopped_at.is_(None), w.last_seen_at >= now - dt.timedelta(seconds=stale_seconds))
    ).one()
    return {
        "live": int(live),
        "inFlight": int(in_flight),
        "capacity": int(capacity),
        "paused": int(paused),
    }


def _age(now: dt.datetime, then: Any) -> float | None:
    if then is None:
        return None
    stamp = then if isinstance(then, dt.datetime) else dt.datetime.fromisoformat(str(then))
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return round(max(0.0, (now - stamp).total_seconds()), 3)


def errors(engine: Engine, window: Window) -> dict[str, Any]:
    """Failures in the window grouped by the error kind the pipeline recorded."""
    g, gp = PoseGeneration, GeneratedPose
    kinds: dict[str, dict[str, Any]] = {}

    def entry(kind: str | None) -> dict[str, Any]:
        key = kind or "unknown"
        return kinds.setdefault(key, {"kind": key, "generations": 0, "poses": 0})

    with read_connection(engine) as conn:
        for kind, count in conn.execute(
            select(g.error_kind, func.count())
            .where(g.status == GenerationStatus.FAILED, window.on(g.created_at))
            .group_by(g.error_kind)
        ):
            entry(kind)["generations"] = int(count)
        for kind, count in conn.execute(
            select(gp.error_kind, func.count())
            .join(g, g.id == gp.generation_id)
            .where(gp.status == PoseStatus.FAILED, window.on(g.created_at))
            .group_by(gp.error_kind)
        ):
            entry(kind)["poses"] = int(count)
    rows = sorted(kinds.values(), key=lambda e: (-(e["generations"] + e["poses"]), e["kind"]))
    return {**window.as_dict(), "errors": rows}


def popular_poses(engine: Engine, window: Window, limit: int) -> dict[str, Any]:
    """Library poses by completed images in the window, most first (ties: lower id). Users'
    private poses are theirs alone, so they are not counted here."""
    g, gp, pl = PoseGeneration, GeneratedPose, PoseLibrary
    images = func.count().label("images")
    stmt = (
        select(pl.id, pl.slug, pl.name, images, func.count(func.distinct(gp.generation_id)))
        .join(gp, gp.pose_id == pl.id)
        .join(g, g.id == gp.generation_id)
        .where(
            gp.status == PoseStatus.COMPLETED,
            window.on(g.created_at),
            pl.owner_user_id.is_(None),
        )
        .group_by(pl.id, pl.slug, pl.name)
        .order_by(images.desc(), pl.id)
        .limit(limit)
    )
    with read_connection(engine) as conn:
        rows = conn.execute(stmt).all()
    return {
        **window.as_dict(),
        "poses": [
            {
                "poseId": r[0],
                "slug": r[1],
                "name": r[2],
                "images": int(r[3]),
                "generations": int(r[4]),
            }
            for r in rows
        ],
    }
