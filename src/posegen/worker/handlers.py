"""Which handler ``posegen worker`` runs: the real pipeline, or the no-op one when the backend
is ``noop`` (load tests and benchmarks)."""

from __future__ import annotations

from posegen.config import Settings
from posegen.worker.context import JobHandler


def select_handler(settings: Settings) -> JobHandler:
    """The handler for ``settings.backend``; raises ConfigError (from the pipeline) if unusable."""
    if settings.backend == "noop":
        from posegen.worker import noop

        return noop.make_handler(settings)
    from posegen.worker import pipeline

    return pipeline.make_handler(settings)
