"""What a job handler sees: the claimed job, a fenced ``record_pose`` and ``should_stop``."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Protocol

from sqlalchemy import Engine

from posegen.config import Settings
from posegen.db.models import GenerationStatus
from posegen.db.types import utcnow
from posegen.exceptions import LeaseLost
from posegen.queue import ClaimedJob, PoseResult
from posegen.queue.progress import PoseOutcome, check_result


class JobHandler(Protocol):
    """Runs one claimed generation, pose by pose, writing each through ``ctx.record_pose``."""

    def __call__(self, job: ClaimedJob, ctx: JobContext) -> None: ...


#: (job id, lease token, result, finish the generation too) -> outcome
PoseSink = Callable[[int, int, PoseResult, bool], PoseOutcome]


class JobContext:
    """Given to the handler by the worker, one per claimed generation (thread-safe)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        job: ClaimedJob,
        sink: PoseSink,
        shutdown: threading.Event,
        paused: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.job = job
        self._sink = sink
        self._shutdown = shutdown
        #: Set while the worker's breaker is open (its backend is unavailable).
        self._paused = paused
        self._lock = threading.Lock()
        self._done: set[str] = set(job.done_keys)
        self._expected = frozenset(key for _, _, key in job.variation_keys())
        self.cancel_requested = False
        self.lease_lost = False
        #: The end state, when the last pose's commit also finished the generation.
        self.finished: GenerationStatus | None = None

    def record_pose(self, result: PoseResult) -> None:
        """Checkpoint one pose under this job's lease; returns once it is committed.

        Raises :class:`LeaseLost` when another worker owns the generation now: the handler
        must stop and its result is discarded.
        """
        if self.lease_lost:
            raise LeaseLost(f"generation {self.job.id}: lease lost")
        check_result(result)
        with self._lock:
            # The last missing pose finishes the generation in the same commit: one
            # transaction instead of two for the end of every generation.
            last = self._expected <= self._done | {result.variation_key}
        outcome = self._sink(self.job.id, self.job.lease_token, result, last)
        with self._lock:
            if outcome.lost:
                self.lease_lost = True
                raise LeaseLost(f"generation {self.job.id}: lease lost")
            if outcome.cancel_requested:
                self.cancel_requested = True
            self._done.add(result.variation_key)
            if outcome.finished is not None:
                self.finished = outcome.finished

    def should_stop(self) -> bool:
        """True when the handler should stop before its next pose: cancel requested, lease
        lost, worker shutting down or paused (backend unavailable), or the generation's hard
        deadline passed."""
        return (
            self.cancel_requested
            or self.lease_lost
            or self._shutdown.is_set()
            or self.paused
            or self.past_deadline()
        )

    @property
    def paused(self) -> bool:
        """The worker's backend is unavailable: what is left goes back without an attempt."""
        return self._paused is not None and self._paused.is_set()

    def past_deadline(self) -> bool:
        return utcnow() >= self.job.deadline_at

    @property
    def all_done(self) -> bool:
        """Every variation of the generation is checkpointed (this attempt or earlier)."""
        with self._lock:
            return len(self._done) >= self.job.total_expected_poses

    def mark(self, *, lost: bool = False, cancel_requested: bool = False) -> None:
        """What the worker's heartbeat learned about this lease."""
        with self._lock:
            self.lease_lost = self.lease_lost or lost
            self.cancel_requested = self.cancel_requested or cancel_requested
