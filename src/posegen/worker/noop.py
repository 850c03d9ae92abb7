"""The no-op handler, for load tests and benchmarks only (``POSEGEN_BACKEND=noop``).

It records every variation as completed with no image, optionally after sleeping
``POSEGEN_NOOP_POSE_SECONDS`` per pose, so the queue, leases and recovery can be exercised and
measured without a generator. It is never chosen unless the backend is set to ``noop``.
"""

from __future__ import annotations

import time

from posegen.config import Settings
from posegen.db.models import PoseStatus
from posegen.queue import ClaimedJob, PoseResult
from posegen.worker.context import JobContext, JobHandler


def make_handler(settings: Settings) -> JobHandler:
    """A handler that "generates" each pose by sleeping ``noop_pose_seconds``."""
    delay = settings.noop_pose_seconds

    def handle(job: ClaimedJob, ctx: JobContext) -> None:
        for pose_id, index, key in job.variation_keys():
            if key in job.done_keys:
                continue
            if ctx.should_stop():
                return
            started = time.perf_counter()
            if delay:
                time.sleep(delay)
            ctx.record_pose(
                PoseResult(
                    variation_key=key,
                    pose_id=pose_id,
                    variation_index=index,
                    status=PoseStatus.COMPLETED,
                    duration_ms=round((time.perf_counter() - started) * 1000),
                    meta={"backend": "noop"},
                    backend="noop",
                )
            )

    return handle
