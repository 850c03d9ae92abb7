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
from posegen.queue import ClaimedJob
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
) -> str:
    """Run the handler and end the attempt; returns what happened (a worker ``stats`` key).

    ``GeneratorError(transient=True)`` and unexpected exceptions retry the generation later;
    other posegen errors fail it; ``LeaseLost`` drops it (the new owner decides).
    """
    extra = {"generation_id": job.id, "attempt": job.attempts}

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
        return fail(exc.kind, exc.message, exc.transient)
    except PosegenError as exc:
        return fail(exc.kind, exc.message, False)
    except Exception as exc:
        log.exception("handler crashed", extra=extra)
        return fail("internal", f"{type(exc).__name__}: {exc}", True)
    if ctx.finished is not None:  # the last pose's commit already ended it
        return ctx.finished.value
    if ctx.lease_lost:
        return "lease-lost"
    if not ctx.all_done and not ctx.cancel_requested:
        if stopping.is_set():
            return _guard(lambda: queue.release(engine, job.id, job.lease_token), "released")
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
