"""A fixed set of daemon threads running jobs.

Not ``ThreadPoolExecutor``: its threads are joined at interpreter exit, so one handler hung in a
backend call would keep a stopped worker process alive. Jobs still running when the worker has
released them must not delay its exit; daemon threads do not.
"""

from __future__ import annotations

import logging
import queue as stdqueue
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)


class JobThreads:
    def __init__(self, size: int, name: str = "posegen-job") -> None:
        self._tasks: stdqueue.SimpleQueue[Callable[[], None] | None] = stdqueue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._run, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for t in self._threads:
            t.start()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)

    def close(self) -> None:
        """Let idle threads end; busy ones end after their task (never waited for)."""
        for _ in self._threads:
            self._tasks.put(None)

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            if task is None:
                return
            try:
                task()
            except Exception:  # a task reports its own errors; this only keeps the thread
                log.exception("job thread task failed")
