"""The worker: claims generations in batches sized to its free slots, runs each in a job thread,
heartbeats all its leases every lease/3, runs the recovery loop, and stops gracefully.

Side threads: the writer (group commit), heartbeat, recovery and, on PostgreSQL, LISTEN. The
main loop wakes on NOTIFY, on a finished job, or every ``poll_interval_seconds``. While the
backend is unavailable the circuit breaker (``breaker.py``) keeps the loop from claiming; the
loop probes the backend with backoff instead and says so in the worker's registry row.
"""

from __future__ import annotations

import functools
import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from posegen import generators, observe, queue
from posegen.config import Settings
from posegen.exceptions import PosegenError
from posegen.metrics import prom
from posegen.queue import ClaimedJob, tasks, tx
from posegen.queue.dead_workers import recover_dead_workers
from posegen.queue.dialects import ops_for
from posegen.storage import make_storage
from posegen.worker import liveness, registry, task_handlers
from posegen.worker.attempt import run_attempt
from posegen.worker.breaker import BackendGate
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
        #: Follow-up tasks running (``posegen.queue.tasks``), beside the generations.
        self._tasks: dict[int, tasks.ClaimedTask] = {}
        #: Free slots the claim loop waits for before claiming again.
        self._want = 1
        self._writer: BatchWriter | None = None
        #: The main loop's own connection for claims (opened on first use).
        self._claim_conn: Connection | None = None
        #: The lock peers probe to see this worker is alive (None: leases only).
        self._liveness: liveness.Holder | None = None
        self._recover_now = threading.Event()
        self._store: Any = None
        #: Start-up check, probing while paused, the pause in the registry (``breaker.py``).
        self.gate = BackendGate(settings, engine, self.id, handler, self._stopping)
        self.breaker = self.gate.breaker

    # --- public -------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop claiming; in-flight poses finish within the grace period, the rest is released."""
        self._stopping.set()
        self._wake.set()

    @property
    def in_flight(self) -> int:
        with self._lock:
            return len(self._in_flight) + len(self._tasks)

    def run(self) -> None:
        """Work until stopped (or, in burst mode, until nothing is left). Blocking.

        Raises ConfigError, before registering, when the backend answers but cannot run the
        work (the start-up check); an unreachable backend starts the worker paused instead.
        """
        # Every line this worker's threads log names it (threads get a copy: observe.carry).
        scope = observe.context.enter(worker=self.id)
        self.gate.preflight()
        self._liveness = liveness.hold(
            self.settings, self.engine, self.id, self._wake.set, self._recover_now.set
        )
        try:
            kind = self._liveness.kind if self._liveness else None
            registry.register(
                self.engine, self.id, self.concurrency, kind, backend=self.backend, model=self.model
            )
        except BaseException:
            if self._liveness is not None:
                self._liveness.close()
            raise
        self.gate.show()
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
            if self.settings.prune_interval_seconds > 0:
                # Beside recovery, not inside it: a long prune never delays a lease's recovery.
                side.append(self._side("prune", self._prune_loop))
        if self.settings.listen_notify and not (self._liveness and self._liveness.listens):
            # Not joined: it notices the stop within one poll interval and holds nothing.
            self._side("listen", self._listen)
        try:
            self._loop(threads)
        finally:
            self._close_claim_conn()
            self._drain()
            threads.close()
            self._side_stop.set()
            self._recover_now.set()
            for t in side:
                t.join(timeout=5)
            self._writer.close()
            try:
                registry.stopped(self.engine, self.id)
            except _DB_ERRORS:
                log.warning("could not mark the worker stopped", exc_info=True)
            if self._liveness is not None:
                self._liveness.close()
            log.info("worker stopped", extra={"worker": self.id, **self.stats})
            observe.context.leave(scope)

    # --- main loop ----------------------------------------------------------------------------
    def _loop(self, threads: JobThreads) -> None:
        backlog = False
        while not self._stopping.is_set():
            if self.breaker.paused.is_set():
                self.gate.while_paused()
                backlog = False
                continue
            self.gate.show()
            free = self.concurrency - self.in_flight
            # With a backlog, wait for half the slots before claiming again: one claim per
            # batch instead of one per finished job. Without one, claim at once (latency).
            self._want = want = max(1, self.concurrency // 2) if backlog else 1
            # Without its liveness lock (session lost), work claimed now would be requeued by
            # a peer at once: wait until the lock is back.
            held = self._liveness is None or self._liveness.held()
            if free >= want and held:
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
                claimed_tasks = self._claim_tasks(threads, free - len(jobs))
                backlog = len(jobs) + claimed_tasks == free
                if backlog:
                    continue
                if self.burst and not jobs and self.in_flight == 0 and self._nothing_left():
                    log.info("burst: nothing left", extra={"worker": self.id})
                    return
            self._wake.wait(self.settings.poll_interval_seconds)
            self._wake.clear()

    def _claim_tasks(self, threads: JobThreads, free: int) -> int:
        """Follow-up tasks for the slots generations left free; returns how many started."""
        if free < 1:
            return 0
        try:
            claimed = tasks.claim(self.engine, self.settings, self.id, free, task_handlers.kinds())
        except _DB_ERRORS as exc:
            log.warning("task claim failed; retrying", extra={"error": str(exc)})
            return 0
        for task in claimed:
            with self._lock:
                self._tasks[task.id] = task
            self.stats["tasks-claimed"] += 1
            threads.submit(observe.carry(functools.partial(self._run_task, task)))
        return len(claimed)

    def _run_task(self, task: tasks.ClaimedTask) -> None:
        try:
            with observe.log_context(generation_id=task.generation_id, task_id=task.id):
                if self._store is None:
                    self._store = make_storage(self.settings)
                outcome = task_handlers.run(
                    self.engine, self.settings, self._store, task, self._stopping
                )
                log.info("task ended", extra={"kind": task.kind, "outcome": outcome})
            self.stats[f"task-{outcome}"] += 1
        except Exception:
            log.exception("task bookkeeping failed", extra={"task_id": task.id})
            self.stats["error"] += 1
        finally:
            with self._lock:
                self._tasks.pop(task.id, None)
            self._wake.set()

    def _close_claim_conn(self) -> None:
        if self._claim_conn is not None:
            try:
                self._claim_conn.close()
            except _DB_ERRORS:
                log.debug("closing the claim connection failed", exc_info=True)
            self._claim_conn = None

    def _nothing_left(self) -> bool:
        """Burst mode's exit test. Before leaving, expired leases are recovered once: a lease
        that ran out under load (its last write fenced) would otherwise be left processing
        with no worker, until some later worker's recovery requeued it."""
        if self._work_left():
            return False
        if self.run_recovery:
            self._lease_pass()
            return not self._work_left()
        return True

    def _work_left(self) -> bool:
        try:
            return queue.pending_exists(
                self.engine, self.backend, self.model
            ) or tasks.pending_exists(self.engine, task_handlers.kinds())
        except _DB_ERRORS:
            return True

    def _start(self, threads: JobThreads, job: ClaimedJob) -> None:
        assert self._writer is not None
        ctx = JobContext(
            self.settings,
            self.engine,
            job,
            self._writer.record_pose,
            self._stopping,
            self.breaker.paused,
        )
        with self._lock:
            self._in_flight[job.id] = ctx
        self.stats["claimed"] += 1
        prom.WORKER_IN_FLIGHT.inc()
        threads.submit(observe.carry(lambda: self._run_job(job, ctx)))

    def _run_job(self, job: ClaimedJob, ctx: JobContext) -> None:
        try:
            assert self._writer is not None
            with (
                observe.log_context(
                    generation_id=job.id, user_id=job.user_id, lease_token=job.lease_token
                ),
                observe.span(
                    "posegen.generation", job.traceparent, attempt=job.attempts, worker=self.id
                ) as span,
            ):
                log.info("generation claimed", extra={"attempt": job.attempts})
                outcome = run_attempt(
                    self.settings,
                    self.engine,
                    self.handler,
                    job,
                    ctx,
                    self._writer,
                    self._stopping,
                    self.breaker,
                )
                observe.set_attributes(span, outcome=outcome, **{"posegen.generation_id": job.id})
                log.info("attempt ended", extra={"outcome": outcome})
            self.stats[outcome] += 1
            if self.breaker.paused.is_set():
                self._wake.set()  # the claim loop shows the pause and starts probing
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
            leftover_tasks = list(self._tasks.values())
        for task in leftover_tasks:
            try:
                tasks.release(self.engine, task)  # fenced: a task that finished meanwhile stays
            except _DB_ERRORS as exc:
                log.warning("task release failed; recovery will requeue", extra={"error": str(exc)})
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
        t = threading.Thread(target=observe.carry(target), name=f"posegen-{name}", daemon=True)
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
        check = self.settings.dead_worker_check_seconds
        next_lease_pass = 0.0
        while True:
            if check > 0:
                self._dead_worker_pass()
            if time.monotonic() >= next_lease_pass:
                self._lease_pass()
                next_lease_pass = time.monotonic() + self.settings.recovery_interval_seconds
            wait = next_lease_pass - time.monotonic()
            if check > 0:
                wait = min(wait, check)
            # Woken early by a peer's NOTIFY (a worker took its lock) or by the stop.
            self._recover_now.wait(max(0.0, wait))
            self._recover_now.clear()
            if self._side_stop.is_set():
                return

    def _dead_worker_pass(self) -> None:
        try:
            out = recover_dead_workers(self.engine, self.settings, self.id)
        except _DB_ERRORS as exc:
            log.warning("dead-worker check failed", extra={"error": str(exc)})
            return
        if out.requeued:
            self._wake.set()  # this worker may take them itself, without waiting for a poll

    def _lease_pass(self) -> None:
        try:
            t_requeued, t_failed = tasks.recover_expired(self.engine, self.settings)
            if t_requeued or t_failed:
                log.info(
                    "recovered expired task leases",
                    extra={"requeued": t_requeued, "failed": t_failed},
                )
                self._wake.set()
        except _DB_ERRORS as exc:
            log.warning("task recovery pass failed", extra={"error": str(exc)})
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

    def _prune_loop(self) -> None:
        interval = self.settings.prune_interval_seconds
        # Workers started together do not all try at once; one at a time prunes (``turn.py``).
        if self._side_stop.wait(interval * random.uniform(0.1, 1.0)):
            return
        while True:
            self._prune_pass()
            if self._side_stop.wait(interval):
                return

    def _prune_pass(self) -> None:
        from posegen import retention
        from posegen.retention.turn import my_turn

        try:
            with my_turn(self.engine, self.settings) as mine:
                if not mine:
                    return  # another worker is pruning
                report = retention.prune(self.engine, self.settings)
        except _DB_ERRORS as exc:
            log.warning("prune failed", extra={"error": str(exc)})
            return
        except Exception:
            # Housekeeping: whatever went wrong, the worker goes on working and tries next time.
            log.exception("prune crashed")
            return
        if (
            report.errors
            or any(t.count for t in (report.events, report.generations, report.uploads))
            or any(t.count for t in report.orphans.values())
        ):
            log.info("pruned", extra={"worker": self.id, **report.as_dict()})

    def _listen(self) -> None:
        ops_for(self.engine).listen(
            self.engine, self._wake.set, self._side_stop, self.settings.poll_interval_seconds
        )
