"""Storing results and checkpointing poses on helper threads, a few writes ahead of the backend.

While the backend makes pose k+1, helper threads write pose k (thumbnail, atomic files, fenced
database write). A pose is checkpointed only after its own files exist; poses are independent, so
their checkpoints may commit in any order (the worker's group commit batches the concurrent
ones). At most ``depth`` writes are in flight, which bounds memory and the work done after a
lease was lost or a cancel arrived; the first write error surfaces at the next ``submit`` or at
``flush``. A handler returns only once every pose it made is checkpointed.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait

#: Writes in flight per generation. A write is mostly fsync and a database commit (I/O waits),
#: so a few overlap well even on two cores.
DEFAULT_DEPTH = 4


class AheadWriter:
    """Helper threads for one generation run; ``submit`` returns the seconds it waited.

    ``depth=0`` writes inline, on the caller's thread (no overlap; benchmarks compare the two).
    """

    def __init__(self, depth: int = DEFAULT_DEPTH) -> None:
        self._depth = depth
        self._pool = (
            ThreadPoolExecutor(max_workers=depth, thread_name_prefix="posegen-pose-write")
            if depth
            else None
        )
        self._pending: deque[Future[None]] = deque()

    def submit(self, write: Callable[[], None]) -> float:
        """Start ``write``; first waits for the oldest write when ``depth`` are in flight, and
        re-raises the error of any write that failed."""
        started = time.perf_counter()
        if self._pool is None:
            write()
            return time.perf_counter() - started
        self._raise_finished()
        while len(self._pending) >= self._depth:
            self._pending.popleft().result()
        self._pending.append(self._pool.submit(write))
        return time.perf_counter() - started

    def flush(self) -> float:
        """Wait for every write in flight; re-raises the first error."""
        started = time.perf_counter()
        while self._pending:
            self._pending.popleft().result()
        return time.perf_counter() - started

    def close(self) -> None:
        """Let the writes in flight finish (their errors are dropped) and stop the threads.

        Used on the error path, where the handler is already raising something more important.
        """
        wait(self._pending)
        self._pending.clear()
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def _raise_finished(self) -> None:
        for future in list(self._pending):
            if future.done() and future.exception() is not None:
                self._pending.remove(future)
                future.result()
