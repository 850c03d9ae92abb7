"""Per-pose infrastructure overhead: wall time on the generation's critical path minus backend time.

The handler's thread alternates between backend calls and everything else (maps, prompt, handing
the previous result to the writer, waiting for it). The gap after a backend call, up to the next
call (or the end of the run, after the last write), is that call's overhead, shared by the poses
it made. Setup before the first call (job inputs, subject image) is added to the first gap. The
sum over a run is exactly its wall time minus its backend time.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from posegen.metrics import prom

#: Called per pose with (overhead seconds, backend seconds); benchmarks use it.
PoseObserver = Callable[[float, float], None]


class OverheadClock:
    """Feeds ``prom.POSE_OVERHEAD_SECONDS`` / ``GENERATOR_SECONDS`` and the optional observer."""

    def __init__(self, backend: str, observer: PoseObserver | None) -> None:
        self._backend = backend
        self._observer = observer
        self._mark = time.perf_counter()
        self._carry = 0.0
        self._open: tuple[int, float] | None = None  # (poses, backend seconds) of the last call

    def backend_starts(self) -> float:
        """Close the previous call's gap; returns the start time of this call."""
        now = time.perf_counter()
        self._carry += now - self._mark
        self._emit()
        return now

    def backend_ends(self, started: float, poses: int) -> None:
        """The backend call that began at ``started`` made ``poses`` poses (or failed on them)."""
        now = time.perf_counter()
        seconds = now - started
        prom.GENERATOR_SECONDS.labels(backend=self._backend).observe(seconds / poses)
        self._mark = now
        self._open = (poses, seconds)

    def finish(self) -> None:
        """The run's last write is done: close the last gap."""
        self._carry += time.perf_counter() - self._mark
        self._emit()

    def _emit(self) -> None:
        if self._open is None:
            return  # still before the first backend call: the gap carries over
        poses, backend = self._open
        overhead = self._carry / poses
        for _ in range(poses):
            prom.POSE_OVERHEAD_SECONDS.observe(overhead)
            if self._observer is not None:
                self._observer(overhead, backend / poses)
        self._open = None
        self._carry = 0.0
