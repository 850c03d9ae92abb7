"""The worker: claims generations in batches sized to its free slots, runs each in a job thread,
heartbeats all its leases every lease/3, runs the recovery loop, and stops gracefully.

Side threads: the writer (group commit), heartbeat, recovery and, on PostgreSQL, LISTEN. The
main loop wakes on NOTIFY, on a finished job, or every ``poll_interval_seconds``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from posegen import generators, queue
from posegen.config import Settings
from posegen.exceptions import PosegenError
from posegen.metrics import prom
from posegen.queue import ClaimedJob, tx
from posegen.queue.dialects import ops_for
from posegen.worker import registry
from posegen.worker.attempt import run_attempt
from posegen.worker.context import JobContext, JobHandler
from posegen.worker.pool import JobThreads
from posegen.worker.writer import BatchWriter

log = logging.getLogger(__name__)

_DB_ERRORS = (PosegenError, SQLAlchemyError)


class Worker:
    """``Worker(settings, engine, handler, concurrency, burst).run()``; ``stop()`` from anywhere.

    ``burst``: exit once nothing is in flight and no generation is pending.
    """

    def __init__(
        self,
        settings: Settings,
        engine: Engine,
        handler: JobHandler,
        concurrency: int | None = None,
        burst: bool = False,
        *,
        worker_id: str | None = None,
        run_recovery: bool = True,
        backend: str | None = None,
        model: str | None = None,
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.handler = handler
        self.concurrency = concurrency or settings.worker_concurrency
        self.burst = burst
        self.id = worker_id or registry.new_worker_id()
        self.run_recovery = run_recovery
        #: What this worker serves: it claims only generations bound to it.
        self.backend = backend or settings.serving_backend
        self.model = model if model is not None else generators.model_id(settings)
        #: Outcomes seen by this worker: claimed, completed, released, lease-lost, ...
        self.stats: Counter[str] = Counter()
        self._stopping = threading.Event()
        self._side_stop = threading.Event()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._in_flight: dict[int, JobContext] = {}
        #: Free slots the claim loop waits for before claiming again.
        self._want = 1
        self._writer: BatchWriter | None = None
        #: The main loop's own connection for claims (opened on first use).
        self._claim_conn: Connection | None = None

    # --- public -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming; in-flight poses finish within the grace period, the rest is released."""
        self._stopping.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight)

    def run(self) -> None:
        """Work until stopped (or, in burst mode, until nothing is left). Blocking."""
        registry.register(self.engine, self.id, self.concurrency, self.backend, self.model)
        log.info(
            "worker started",
            extra={
                "worker": self.id,
                "concurrency": self.concurrency,
                "backend": self.backend,
                "model": self.model,
            },
        )
        self._writer = BatchWriter(self.engine, ops_for(self.engine).writer_threads)
        threads = JobThreads(self.concurrency)
        side = [self._side("heartbeat", self._heartbeat_loop)]
        if self.run_recovery:
            side.append(self._side("recovery", self._recovery_loop))
        if self.settings.listen_notify:
            # Not joined: it notices the stop within one poll interval and holds nothing.
            self._side("listen", self._listen)
        try:
            self._loop(threads)
        finally:
            self._close_claim_conn()
            self._drain()
            threads.close()
            self._side_stop.set()
            for t in side:
                t.join(timeout=5)
            self._writer.close()
            try:
                registry.stopped(self.engine, self.id)
            except _DB_ERRORS:
                log.warning("could not mark the worker stopped", exc_info=True)
            log.info("worker stopped", extra={"worker": self.id, **self.stats})

    # --- main loop ----------------------------------------------------------------------------
    def _loop(self, threads: JobThreads) -> None:
        backlog = False
        while not self._stopping.is_set():
            free = self.concurrency - self.in_flight
            # With a backlog, wait for half the slots before claiming again: one claim per
            # batch instead of one per finished job. Without one, claim at once (latency).
            self._want = want = max(1, self.concurrency // 2) if backlog else 1
            if free >= want:
                try:
                    if self._claim_conn is None:
                        self._claim_conn = tx.claimer_connection(self.engine)
                    jobs = queue.claim(
                        self.engine,
                        self.settings,
                        self.id,
                        free,
                        conn=self._claim_conn,
                        backend=self.backend,
                        model=self.model,
                    )
                except _DB_ERRORS as exc:
                    log.warning("claim failed; retrying", extra={"error": str(exc)})
                    self._close_claim_conn()
                    self._stopping.wait(self.settings.poll_interval_seconds)
                    continue
                for job in jobs:
                    self._start(threads, job)
                backlog = len(jobs) == free
                if backlog:
                    continue
                if self.burst and not jobs and self.in_flight == 0 and not self._work_left():
                    log.info("burst: nothing left", extra={"worker": self.id})
                    return
            self._wake.wait(self.settings.poll_interval_seconds)
            self._wake.clear()

    def _close_claim_conn(self) -> None:
        if self._claim_conn is not None:
            try:
                self._claim_conn.close()
            except _DB_ERRORS:
                log.debug("closing the claim connection failed", exc_info=True)
            self._claim_conn = None

    def _work_left(self) -> bool:
        try:
            return queue.pending_exists(self.engine, self.backend, self.model)
        except _DB_ERRORS:
            return True

    def _start(self, threads: JobThreads, job: ClaimedJob) -> None:
        assert self._writer is not None
        ctx = JobContext(self.settings, self.engine, job, self._writer.record_pose, self._stopping)
        with self._lock:
            self._in_flight[job.id] = ctx
        self.stats["claimed"] += 1
        prom.WORKER_IN_FLIGHT.inc()
        threads.submit(lambda: self._run_job(job, ctx))

    def _run_job(self, job: ClaimedJob, ctx: JobContext) -> None:
        try:
            assert self._writer is not None
            outcome = run_attempt(
                self.settings, self.engine, self.handler, job, ctx, self._writer, self._stopping
            )
            self.stats[outcome] += 1
        except Exception:
            log.exception("job bookkeeping failed", extra={"generation_id": job.id})
            self.stats["error"] += 1
        finally:
            with self._lock:
                self._in_flight.pop(job.id, None)
                free = self.concurrency - len(self._in_flight)
            prom.WORKER_IN_FLIGHT.dec()
            # Wake the claim loop only when it would claim (enough free slots), or to let a
            # stopping worker see its last job end: one wake per batch, not one per job.
            if free >= self._want or self._stopping.is_set():
                self._wake.set()

    # --- shutdown -----------------------------------------------------------------------------
    def _drain(self) -> None:
        """Give in-flight poses the grace period, then release what is still running."""
        self._stopping.set()
        deadline = time.monotonic() + self.settings.shutdown_grace_seconds
        while self.in_flight and time.monotonic() < deadline:
            self._wake.wait(min(0.05, max(0.0, deadline - time.monotonic())))
            self._wake.clear()
        with self._lock:
            leftover = list(self._in_flight.values())
        if not leftover:
            return
        for ctx in leftover:
            ctx.mark(lost=True)  # their handlers stop at the next write; nothing of theirs lands
        try:
            lost = queue.release_many(
                self.engine, [(c.job.id, c.job.lease_token) for c in leftover]
            )
            self.stats["released"] += len(leftover) - len(lost)
            log.info(
                "released unfinished generations",
                extra={"worker": self.id, "count": len(leftover) - len(lost)},
            )
        except _DB_ERRORS as exc:
            log.warning("release failed; recovery will requeue", extra={"error": str(exc)})

    # --- side threads -------------------------------------------------------------------------
    def _side(self, name: str, target: Callable[[], None]) -> threading.Thread:
        t = threading.Thread(target=target, name=f"posegen-{name}", daemon=True)
        t.start()
        return t

    def _heartbeat_loop(self) -> None:
        interval = self.settings.lease_seconds / 3
        while not self._side_stop.wait(interval):
            with self._lock:
                snapshot = list(self._in_flight.values())
            try:
                if snapshot:
                    res = queue.heartbeat_many(
                        self.engine,
                        self.settings,
                        [(c.job.id, c.job.lease_token) for c in snapshot],
                    )
                    with self._lock:
                        running = set(self._in_flight)
                    for c in snapshot:
                        # A job that ended since the snapshot is not a lost lease.
                        lost = c.job.id in res.lost and c.job.id in running and c.finished is None
                        if lost:
                            prom.LEASE_LOSSES.inc()
                        c.mark(lost=lost, cancel_requested=c.job.id in res.cancel_requested)
                registry.touch(self.engine, self.id, len(snapshot))
            except _DB_ERRORS as exc:
                log.warning("heartbeat failed", extra={"error": str(exc)})

    def _recovery_loop(self) -> None:
        while True:
            try:
                out = queue.recover(self.engine, self.settings, self.id)
                if out.requeued or out.failed or out.cancelled:
                    log.info(
                        "recovered expired leases",
                        extra={
                            "requeued": out.requeued,
                            "failed": out.failed,
                            "cancelled": out.cancelled,
                        },
                    )
            except _DB_ERRORS as exc:
                log.warning("recovery pass failed", extra={"error": str(exc)})
            if self._side_stop.wait(self.settings.recovery_interval_seconds):
                return

    def _listen(self) -> None:
        ops_for(self.engine).listen(
            self.engine, self._wake.set, self._side_stop, self.settings.poll_interval_seconds
        )
