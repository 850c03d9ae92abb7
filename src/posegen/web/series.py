"""Generations per minute over the last hour, for the overview chart.

Reads ``created_at`` and ``status`` of the generations submitted in the window: a range scan of
``ix_pose_generations_created_at``, bucketed here so the SQL is the same on both engines.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from sqlalchemy import Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import GenerationStatus, PoseGeneration
from posegen.db.types import utcnow

G = PoseGeneration

#: Chart series, in stacking order; pending and processing are shown together as "in queue".
SERIES = ("completed", "partial", "failed", "cancelled", "in queue")


@dataclass(frozen=True)
class PerMinute:
    """One label per minute (``HH:MM`` UTC) and, per series, one count per minute."""

    labels: list[str]
    counts: dict[str, list[int]]

    @property
    def total(self) -> int:
        return sum(sum(v) for v in self.counts.values())

    def as_json(self) -> dict[str, object]:
        # "order": JSON objects lose key order through sorted dumps; the chart stacks by it.
        return {
            "labels": self.labels,
            "series": self.counts,
            "order": list(SERIES),
            "total": self.total,
        }


def _series_of(status: str) -> str:
    if status in (GenerationStatus.PENDING, GenerationStatus.PROCESSING):
        return "in queue"
    return str(status)


def per_minute(engine: Engine, minutes: int = 60, now: dt.datetime | None = None) -> PerMinute:
    """Submissions per minute for the last ``minutes`` minutes, split by their current status."""
    now = (now or utcnow()).replace(second=0, microsecond=0) + dt.timedelta(minutes=1)
    start = now - dt.timedelta(minutes=minutes)
    labels = [(start + dt.timedelta(minutes=i)).strftime("%H:%M") for i in range(minutes)]
    counts = {name: [0] * minutes for name in SERIES}
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(G.created_at, G.status).where(G.created_at >= start, G.created_at < now)
        )
        for created, status in rows:
            index = int((created - start).total_seconds() // 60)
            if 0 <= index < minutes:
                counts[_series_of(GenerationStatus(status))][index] += 1
    return PerMinute(labels, counts)
