"""The worker's circuit breaker: a backend outage pauses claiming instead of failing work.

``threshold`` outages in a row (a backend unreachable, answering 5xx, restarted, out of GPU
memory) open the breaker: the worker claims nothing, gives back what it holds without spending
an attempt, and probes the backend after ``probe_min`` seconds, doubling up to ``probe_max``,
until a probe passes. Any other outcome of an attempt (the backend answered) resets the count.
Thread-safe: job threads report, the claim loop asks and probes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from posegen.config import Settings

log = logging.getLogger(__name__)

Probe = Callable[[], None]


class Breaker:
    def __init__(
        self,
        threshold: int,
        probe_min: float,
        probe_max: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, threshold)
        self.probe_min = probe_min
        self.probe_max = max(probe_min, probe_max)
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._reason: str | None = None
        self._delay = probe_min
        self._next_probe = 0.0
        #: Set while open: job threads stop before their next pose and give their work back.
        self.paused = threading.Event()

    @classmethod
    def from_settings(cls, settings: Settings) -> Breaker:
        return cls(
            settings.breaker_threshold,
            settings.breaker_probe_min_seconds,
            settings.breaker_probe_max_seconds,
        )

    @property
    def reason(self) -> str | None:
        """Why the worker is paused; None while the breaker is closed."""
        with self._lock:
            return self._reason

    def outage(self, reason: str) -> bool:
        """Record one outage; True when this one opened the breaker."""
        with self._lock:
            self._failures += 1
            if self._reason is not None:
                self._reason = reason  # the latest word on what is wrong
                return False
            if self._failures < self.threshold:
                return False
            self._open(reason)
            return True

    def force_open(self, reason: str) -> None:
        """Open at once (the start-up check found the backend unavailable)."""
        with self._lock:
            self._open(reason)

    def _open(self, reason: str) -> None:
        self._reason = reason
        self._delay = self.probe_min
        self._next_probe = self._clock() + self._delay
        self.paused.set()

    def answered(self) -> None:
        """An attempt ended in a way that shows the backend works: the count starts over."""
        with self._lock:
            if self._reason is None:
                self._failures = 0

    def seconds_to_probe(self) -> float:
        with self._lock:
            return max(0.0, self._next_probe - self._clock())

    def probed(self, error: str | None) -> None:
        """The result of a probe: None closes the breaker, an error waits twice as long."""
        with self._lock:
            if error is None:
                self._reason = None
                self._failures = 0
                self.paused.clear()
                return
            self._reason = error
            self._delay = min(self.probe_max, self._delay * 2)
            self._next_probe = self._clock() + self._delay
