"""The worker's circuit breaker: a backend outage pauses claiming instead of failing work.

:class:`Breaker` is the state; :class:`BackendGate` is the worker's side of it (the start-up
check, probing while paused, the pause shown in the ``workers`` row and in Prometheus).

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

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from posegen.config import Settings
from posegen.exceptions import ConfigError, GeneratorError, PosegenError
from posegen.metrics import prom
from posegen.worker import registry

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


class BackendGate:
    """What the worker's claim loop does about its backend: ask it once at start-up, probe it
    while the breaker is open, and keep the ``workers`` row saying whether it is paused and
    why. The handler's ``probe()`` (when it has one) is the question."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        worker_id: str,
        handler: object,
        stopping: threading.Event,
    ) -> None:
        self.breaker = Breaker.from_settings(settings)
        self._engine = engine
        self._worker_id = worker_id
        self._probe_fn = getattr(handler, "probe", None)
        self._stopping = stopping
        self._poll = settings.poll_interval_seconds
        #: The pause reason the registry row shows now.
        self._shown: str | None = None

    def preflight(self) -> None:
        """The start-up check. A backend that answers but cannot run the work raises
        ConfigError (the worker refuses to start); one that does not answer starts it paused."""
        error = self._probe(at_start=True)
        if error is not None:
            log.warning(
                "backend unavailable at start-up; starting paused",
                extra={"worker": self._worker_id, "reason": error},
            )
            self.breaker.force_open(error)

    def while_paused(self) -> None:
        """One step of the paused state: show it, wait for the next probe (or the stop), probe."""
        self.show()
        wait = self.breaker.seconds_to_probe()
        if wait > 0:
            self._stopping.wait(min(wait, self._poll))
            return
        error = self._probe()
        self.breaker.probed(error)
        if error is None:
            log.info("backend answers again; claiming", extra={"worker": self._worker_id})
        else:
            log.info(
                "backend still unavailable", extra={"worker": self._worker_id, "reason": error}
            )
        self.show()

    def show(self) -> None:
        """Write the pause (or its end) to the registry row when it changed."""
        reason = self.breaker.reason
        if reason == self._shown:
            return
        try:
            registry.set_paused(self._engine, self._worker_id, reason)
        except (PosegenError, SQLAlchemyError) as exc:
            log.warning("could not record the pause", extra={"error": str(exc)})
            return
        if reason is not None and self._shown is None:
            log.warning(
                "paused: backend unavailable", extra={"worker": self._worker_id, "reason": reason}
            )
        prom.WORKER_PAUSED.set(0 if reason is None else 1)
        self._shown = reason

    def _probe(self, at_start: bool = False) -> str | None:
        """None when the backend can work, else why not. Only at start-up does a ConfigError
        propagate: later (a server back without a model) it keeps the worker paused."""
        if not callable(self._probe_fn):
            return None
        try:
            self._probe_fn()
        except GeneratorError as exc:
            return f"{exc.kind}: {exc.message}"
        except ConfigError as exc:
            if at_start:
                raise
            return f"{exc.kind}: {exc.message}"
        return None
