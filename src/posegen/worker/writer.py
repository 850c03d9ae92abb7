"""Group commit for lease-holder writes: pose checkpoints and finishes from all of a worker's job
threads go through one writer thread, which commits whatever is waiting in one transaction.

Each caller still blocks until its own write is committed (a checkpoint is durable when
``record_pose`` returns), but N concurrent jobs cost one round trip instead of N. With one job in
flight it degenerates to one transaction per write, as without it.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Engine

from posegen import queue
from posegen.db.models import GenerationStatus
from posegen.queue import PoseResult, PoseWrite, tx
from posegen.queue.progress import PoseOutcome

log = logging.getLogger(__name__)

#: Upper bound of writes per transaction; beyond this, latency matters more than round trips.
MAX_BATCH = 500


@dataclass
class _Op:
    kind: str  # "pose" | "finish"
    job_id: int
    lease_token: int
    result: PoseResult | None = None
    #: A pose that completes its generation: finish it in the same transaction.
    finish_after: bool = False
    future: Future[Any] = field(default_factory=Future)


class BatchWriter:
    """One writer thread per worker; ``record_pose`` and ``finish`` block until committed."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._queue: stdqueue.SimpleQueue[_Op | None] = stdqueue.SimpleQueue()
        self._closed = False
        #: The writer thread's own connection (opened on first use, reopened after an error).
        self._conn: Connection | None = None
        self._thread = threading.Thread(target=self._run, name="posegen-writer", daemon=True)
        self._thread.start()

    def record_pose(
        self, job_id: int, lease_token: int, result: PoseResult, finish: bool = False
    ) -> PoseOutcome:
        """Checkpoint a pose; with ``finish`` also end the generation in the same commit."""
        if self._closed:
            # The worker stopped and released its leases: this write could only be refused.
            return PoseOutcome(lost=True)
        op = _Op("pose", job_id, lease_token, result, finish)
        self._queue.put(op)
        outcome: PoseOutcome = op.future.result()
        return outcome

    def finish(self, job_id: int, lease_token: int) -> GenerationStatus | None:
        """The generation's end state, or None when the lease was lost."""
        if self._closed:
            return None
        op = _Op("finish", job_id, lease_token)
        self._queue.put(op)
        status: GenerationStatus | None = op.future.result()
        return status

    def close(self) -> None:
        """Commit what is queued, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                self._refuse_rest()
                self._drop_connection()
                return
            ops = [first]
            stop = False
            while len(ops) < MAX_BATCH:
                try:
                    nxt = self._queue.get_nowait()
                except stdqueue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                ops.append(nxt)
            self._commit(ops)
            if stop:
                self._refuse_rest()
                self._drop_connection()
                return

    def _drop_connection(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            except Exception:
                log.debug("closing a broken writer connection failed", exc_info=True)
            self._conn = None

    def _refuse_rest(self) -> None:
        # Writes that raced with close(): answer them so no caller blocks forever.
        while True:
            try:
                op = self._queue.get_nowait()
            except stdqueue.Empty:
                return
            if op is not None:
                op.future.set_result(PoseOutcome(lost=True) if op.kind == "pose" else None)

    def _commit(self, ops: list[_Op]) -> None:
        """One transaction for everything waiting; on error, redo one by one so a single bad
        write fails alone."""
        poses = [o for o in ops if o.kind == "pose"]
        finishes = [o for o in ops if o.kind == "finish"]
        try:
            if self._conn is None:
                self._conn = tx.writer_connection(self.engine)
            result = queue.write_batch(
                self.engine,
                [PoseWrite(o.job_id, o.lease_token, o.result) for o in poses if o.result],
                [(o.job_id, o.lease_token) for o in finishes]
                + [(o.job_id, o.lease_token) for o in poses if o.finish_after],
                conn=self._conn,
            )
        except Exception as exc:
            self._drop_connection()
            if len(ops) == 1:
                ops[0].future.set_exception(exc)
                return
            for op in ops:
                self._commit([op])
            return
        for op, outcome in zip(poses, result.poses, strict=True):
            op.future.set_result(outcome)
        for op in finishes:
            op.future.set_result(result.finished.get(op.job_id))
