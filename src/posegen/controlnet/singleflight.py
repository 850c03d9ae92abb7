"""Single-flight: one fill per key within a process, and one per host across processes.

In-process, the first caller of a key (the leader) runs the fill; callers arriving meanwhile
wait on its future and get its result or its exception. The entry leaves the registry when the
flight ends, never while it is running (the seed cleared its lock map under held locks).

Across processes, a leader takes ``flock`` on one of a fixed set of lock files chosen by the
key's hash. Lock files are never deleted: unlinking a held lock file would let another process
lock a fresh inode and enter too. Waits are capped.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from pathlib import Path
from typing import Generic, TypeVar

from posegen.exceptions import FetchError

T = TypeVar("T")

LOCK_FILES = 256


class Flights(Generic[T]):
    """In-process single-flight registry."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, Future[T]] = {}

    def run(self, key: Hashable, fill: Callable[[], T], wait_seconds: float) -> tuple[T, bool]:
        """Run ``fill`` once for concurrent callers of ``key``; returns (value, was_waiter)."""
        with self._lock:
            future = self._flights.get(key)
            leader = future is None
            if future is None:
                future = Future()
                self._flights[key] = future
        if not leader:
            try:
                return future.result(timeout=wait_seconds), True
            except FutureTimeout as exc:
                raise FetchError(
                    f"gave up after {wait_seconds:.0f} s waiting for another load of this map",
                    kind="timeout",
                ) from exc
        try:
            value = fill()
        except BaseException as exc:
            future.set_exception(exc)
            raise
        else:
            future.set_result(value)
            return value, False
        finally:
            with self._lock:
                self._flights.pop(key, None)

    def in_flight(self) -> int:
        with self._lock:
            return len(self._flights)


class HostLocks:
    """A fixed set of ``flock`` files; a key maps to one by its hash."""

    def __init__(self, folder: Path, count: int = LOCK_FILES) -> None:
        self.folder = folder
        self.count = count
        folder.mkdir(parents=True, exist_ok=True)

    def path_for(self, key: str) -> Path:
        return self.folder / f"{int(key[:8], 16) % self.count:03d}.lock"

    @contextlib.contextmanager
    def hold(self, key: str, wait_seconds: float) -> Iterator[bool]:
        """Hold the lock of ``key``; yields True when another process held it first."""
        fd = os.open(self.path_for(key), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            waited = False
            deadline = time.monotonic() + wait_seconds
            pause = 0.002
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    waited = True
                    if time.monotonic() >= deadline:
                        raise FetchError(
                            f"gave up after {wait_seconds:.0f} s waiting for another process "
                            "loading this map",
                            kind="timeout",
                        ) from None
                    time.sleep(pause)
                    pause = min(pause * 2, 0.01)
            yield waited
        finally:
            os.close(fd)  # closing the descriptor releases the lock
