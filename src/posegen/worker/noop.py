"""The no-op handler, for load tests and benchmarks only (``POSEGEN_BACKEND=noop``).

It records every variation as completed with no image, optionally after sleeping
``POSEGEN_NOOP_POSE_SECONDS`` per pose, so the queue, leases and recovery can be exercised and
measured without a generator. It is never chosen unless the backend is set to ``noop``.

Test-only switch (not a setting): ``POSEGEN_NOOP_FAIL_EVERY=N`` records every Nth variation of
a generation (by its place in the generation's list) as failed, so the chaos tests can see
per-pose failures and their refunds with real worker processes.
"""

from __future__ import annotations

import os
import time

from posegen.config import Settings
from posegen.db.models import PoseStatus
from posegen.queue import ClaimedJob, PoseResult
from posegen.worker.context import JobContext, JobHandler

FAIL_EVERY_ENV = "POSEGEN_NOOP_FAIL_EVERY"


def make_handler(settings: Settings) -> JobHandler:
    """A handler that "generates" each pose by sleeping ``noop_pose_seconds``."""
    delay = settings.noop_pose_seconds
    fail_every = int(os.environ.get(FAIL_EVERY_ENV, "0") or 0)

    def handle(job: ClaimedJob, ctx: JobContext) -> None:
        for place, (pose_id, index, key) in enumerate(job.variation_keys(), 1):
            failed = fail_every > 0 and place % fail_every == 0
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
                    status=PoseStatus.FAILED if failed else PoseStatus.COMPLETED,
                    error_kind="noop-failure" if failed else None,
                    duration_ms=round((time.perf_counter() - started) * 1000),
                    meta={"backend": "noop"},
                    backend="noop",
                )
            )

    return handle
