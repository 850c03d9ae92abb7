"""What the dashboard shows about one generation's run: per-pose timings and its trace id.

Map, backend and storage times are stored with each pose row (``metadata.timings``); the fenced
write cannot time itself inside the row it writes, so its time comes from the pose's
``pose written`` log line (:mod:`posegen.observe.dblog`), when that line was kept.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from posegen.db.engine import read_connection
from posegen.db.models import GeneratedPose, GenerationLog, PoseGeneration

WRITE_LINE = "pose written"


@dataclass(frozen=True)
class PoseTiming:
    variation_key: str
    pose_id: int | None
    status: str
    map_ms: float | None
    backend_ms: float | None
    storage_ms: float | None
    write_ms: float | None


def trace_id(engine: Engine, generation_id: int) -> str | None:
    """The generation's trace id (hex), from the traceparent its submit stored."""
    with read_connection(engine) as conn:
        header = conn.execute(
            select(PoseGeneration.traceparent).where(PoseGeneration.id == generation_id)
        ).scalar_one_or_none()
    parts = (header or "").split("-")
    return parts[1] if len(parts) == 4 and len(parts[1]) == 32 else None


def pose_timings(engine: Engine, generation_id: int) -> list[PoseTiming]:
    """One row per checkpointed pose, in the order they were written."""
    with read_connection(engine) as conn:
        poses = conn.execute(
            select(
                GeneratedPose.variation_key,
                GeneratedPose.pose_id,
                GeneratedPose.status,
                GeneratedPose.meta.label("meta"),
            )
            .where(GeneratedPose.generation_id == generation_id)
            .order_by(GeneratedPose.id)
        ).all()
        lines = conn.execute(
            select(GenerationLog.fields).where(
                GenerationLog.generation_id == generation_id, GenerationLog.message == WRITE_LINE
            )
        ).scalars()
        writes = {f.get("variation_key"): f.get("write_ms") for f in lines if f}
    out = []
    for p in poses:
        timings: dict[str, Any] = (p.meta or {}).get("timings") or {}
        out.append(
            PoseTiming(
                p.variation_key,
                p.pose_id,
                str(p.status),
                _number(timings.get("mapMs")),
                _number(timings.get("backendMs")),
                _number(timings.get("storageMs")),
                _number(writes.get(p.variation_key)),
            )
        )
    return out


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) else None
