"""Group commit for lease-holder writes: pose checkpoints and finishes from all of a worker's job
threads go through writer threads, each committing whatever is waiting in one transaction.

Each caller still blocks until its own write is committed (a checkpoint is durable when
``record_pose`` returns), but N concurrent jobs cost one round trip instead of N. With one job in
flight it degenerates to one transaction per write, as without it.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
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
    # The caller blocks on this until the writer answers (value, or exception). A SimpleQueue
    # is a C-level lock: far cheaper per write than a Future's Condition.
    reply: stdqueue.SimpleQueue[tuple[bool, Any]] = field(default_factory=stdqueue.SimpleQueue)

    def answer(self, value: Any) -> None:
        self.reply.put((True, value))

    def fail(self, exc: BaseException) -> None:
        self.reply.put((False, exc))

    def wait(self) -> Any:
        ok, value = self.reply.get()
        if not ok:
            raise value
        return value


class BatchWriter:
    """Writer threads for one worker; ``record_pose`` and ``finish`` block until committed.

    ``threads`` > 1 (PostgreSQL) lets one batch be built while another waits on its commit;
    each thread has its own connection. Transactions lock generation rows in id order before
    anything else, so concurrent batches cannot deadlock.
    """

    def __init__(self, engine: Engine, threads: int = 1) -> None:
        self.engine = engine
        self._queue: stdqueue.SimpleQueue[_Op | None] = stdqueue.SimpleQueue()
        self._closed = False
        self._threads = [
            threading.Thread(target=self._run, name=f"posegen-writer-{i}", daemon=True)
            for i in range(threads)
        ]
        for t in self._threads:
            t.start()

    def record_pose(
        self, job_id: int, lease_token: int, result: PoseResult, finish: bool = False
    ) -> PoseOutcome:
        """Checkpoint a pose; with ``finish`` also end the generation in the same commit."""
        if self._closed:
            # The worker stopped and released its leases: this write could only be refused.
            return PoseOutcome(lost=True)
        op = _Op("pose", job_id, lease_token, result, finish)
        self._queue.put(op)
        outcome: PoseOutcome = op.wait()
        return outcome

    def finish(self, job_id: int, lease_token: int) -> GenerationStatus | None:
        """The generation's end state, or None when the lease was lost."""
        if self._closed:
            return None
        op = _Op("finish", job_id, lease_token)
        self._queue.put(op)
        status: GenerationStatus | None = op.wait()
        return status

    def close(self) -> None:
        """Commit what is queued, then stop the threads."""
        self._closed = True
        for _ in self._threads:
            self._queue.put(None)
        for t in self._threads:
            t.join()
        self._refuse_rest()

    def _run(self) -> None:
        # This thread's own connection: opened on first use, reopened after an error.
        conn: list[Connection] = []
        try:
            while True:
                first = self._queue.get()
                if first is None:
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
                self._commit(ops, conn)
                if stop:
                    return
        finally:
            _drop(conn)

    def _refuse_rest(self) -> None:
        # Writes that raced with close(): answer them so no caller blocks forever.
        while True:
            try:
                op = self._queue.get_nowait()
            except stdqueue.Empty:
                return
            if op is not None:
                op.answer(PoseOutcome(lost=True) if op.kind == "pose" else None)

    def _commit(self, ops: list[_Op], conn: list[Connection]) -> None:
        """One transaction for everything taken; on error, redo one by one so a single bad
        write fails alone."""
        poses = [o for o in ops if o.kind == "pose"]
        finishes = [o for o in ops if o.kind == "finish"]
        try:
            if not conn:
                conn.append(tx.writer_connection(self.engine))
            result = queue.write_batch(
                self.engine,
                [PoseWrite(o.job_id, o.lease_token, o.result) for o in poses if o.result],
                [(o.job_id, o.lease_token) for o in finishes]
                + [(o.job_id, o.lease_token) for o in poses if o.finish_after],
                conn=conn[0],
            )
        except Exception as exc:
            _drop(conn)
            if len(ops) == 1:
                ops[0].fail(exc)
                return
            for op in ops:
                self._commit([op], conn)
            return
        for op, outcome in zip(poses, result.poses, strict=True):
            op.answer(outcome)
        for op in finishes:
            op.answer(result.finished.get(op.job_id))


def _drop(conn: list[Connection]) -> None:
    while conn:
        try:
            conn.pop().close()
        except Exception:
            log.debug("closing a writer connection failed", exc_info=True)
