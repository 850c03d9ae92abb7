"""One attempt at one generation: run the handler, then record how the attempt ended through
the queue (finish, retry later, fail, or release on shutdown). A lost lease records nothing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from posegen import queue
from posegen.config import Settings
from posegen.exceptions import GeneratorError, LeaseLost, PosegenError
from posegen.metrics import prom
from posegen.queue import ClaimedJob
from posegen.worker.breaker import Breaker
from posegen.worker.context import JobContext, JobHandler
from posegen.worker.writer import BatchWriter

log = logging.getLogger(__name__)

_DB_ERRORS = (PosegenError, SQLAlchemyError)


def run_attempt(
    settings: Settings,
    engine: Engine,
    handler: JobHandler,
    job: ClaimedJob,
    ctx: JobContext,
    writer: BatchWriter,
    stopping: threading.Event,
    breaker: Breaker | None = None,
) -> str:
    """Run the handler and end the attempt; returns what happened (a worker ``stats`` key).

    A backend outage (``GeneratorError.outage``) gives the generation back without spending an
    attempt and tells the ``breaker``; ``GeneratorError(transient=True)`` and unexpected
    exceptions retry the generation later; other posegen errors fail it; ``LeaseLost`` drops
    it (the new owner decides).
    """
    extra = {"generation_id": job.id, "attempt": job.attempts}

    def give_back(kind: str | None, message: str | None, label: str) -> str:
        return _guard(
            lambda: queue.release(engine, job.id, job.lease_token, kind=kind, message=message),
            label,
        )

    def fail(kind: str, message: str, transient: bool) -> str:
        log.warning(
            "generation attempt failed",
            extra={"generation_id": job.id, "kind": kind, "transient": transient},
        )
        if transient:
            return _guard(
                lambda: (
                    queue.fail_transient(
                        engine, settings, job.id, job.lease_token, kind, message
                    ).value
                )
            )
        return _guard(
            lambda: queue.fail_permanent(engine, job.id, job.lease_token, kind, message).value
        )

    try:
        handler(job, ctx)
    except LeaseLost:
        log.warning("lease lost; result discarded", extra=extra)
        return "lease-lost"
    except GeneratorError as exc:
        if exc.outage and breaker is not None:
            opened = breaker.outage(f"{exc.kind}: {exc.message}")
            log.warning(
                "backend unavailable; generation given back without spending an attempt",
                extra={**extra, "kind": exc.kind, "breaker_opened": opened},
            )
            prom.BACKEND_OUTAGES.inc()
            return give_back(exc.kind, exc.message, "released-outage")
        if breaker is not None:
            breaker.answered()
        return fail(exc.kind, exc.message, exc.transient)
    except PosegenError as exc:
        return fail(exc.kind, exc.message, False)
    except Exception as exc:
        log.exception("handler crashed", extra=extra)
        return fail("internal", f"{type(exc).__name__}: {exc}", True)
    if breaker is not None and not ctx.paused:
        breaker.answered()
    if ctx.finished is not None:  # the last pose's commit already ended it
        return ctx.finished.value
    if ctx.lease_lost:
        return "lease-lost"
    if not ctx.all_done and not ctx.cancel_requested:
        if stopping.is_set():
            return give_back(None, None, "released")
        if ctx.paused:
            reason = breaker.reason if breaker is not None else None
            prom.BACKEND_OUTAGES.inc()
            return give_back("backend-unavailable", reason, "released-outage")
        if ctx.past_deadline():
            return fail("deadline-exceeded", "hard deadline passed", True)
    status = writer.finish(job.id, job.lease_token)
    if status is None:
        return "lease-lost"
    log.debug("generation ended", extra={**extra, "status": status.value})
    return status.value


def _guard(write: Callable[[], object], label: str = "") -> str:
    """A lease-holder write that may find the lease gone or the database away."""
    try:
        result = write()
    except LeaseLost:
        return "lease-lost"
    except _DB_ERRORS as exc:
        # The lease will expire and recovery will take the generation over.
        log.warning("could not record the outcome", extra={"error": str(exc)})
        return "write-failed"
    return label or str(result)
