"""An in-process TTL cache with single-flight, for the metrics endpoints.

The seed suggested caching metrics for a minute, but its sketch lets every request that arrives
after expiry run the query: a burst of N requests is N recomputations. Here the first caller
after expiry computes; callers arriving meanwhile wait for that flight and get its result, or its
exception (which is not cached, so the next caller tries again). Flights leave the registry when
they end, so a key never holds a stale lock.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class CacheStats:
    hits: int = 0
    computations: int = 0
    coalesced: int = 0


class TTLCache:
    """Values by key for ``ttl`` seconds; one computation per key at a time across threads."""

    def __init__(
        self,
        ttl: float,
        *,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must be >= 0 and max_entries >= 1")
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._values: OrderedDict[Hashable, tuple[float, Any]] = OrderedDict()
        self._flights: dict[Hashable, Future[Any]] = {}
        self.stats = CacheStats()

    def peek(self, key: Hashable) -> tuple[bool, Any]:
        """``(True, value)`` when a fresh value is cached, else ``(False, None)``; never waits.

        Lets an event loop answer hits inline and send only misses to a thread.
        """
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > self._clock():
                self.stats.hits += 1
                return True, hit[1]
        return False, None

    def get_or_compute(self, key: Hashable, compute: Callable[[], T]) -> T:
        """The cached value for ``key``, computing it (once, across threads) when missing."""
        with self._lock:
            hit = self._values.get(key)
            if hit is not None and hit[0] > self._clock():
                self.stats.hits += 1
                value: T = hit[1]
                return value
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = Future()
                self.stats.computations += 1
            else:
                self.stats.coalesced += 1
        if not leader:
            result: T = flight.result()
            return result
        try:
            value = compute()
        except BaseException as exc:
            with self._lock:
                del self._flights[key]
            flight.set_exception(exc)
            raise
        with self._lock:
            if self.ttl > 0:
                self._values[key] = (self._clock() + self.ttl, value)
                self._values.move_to_end(key)
                while len(self._values) > self.max_entries:
                    self._values.popitem(last=False)
            del self._flights[key]
        flight.set_result(value)
        return value

    def clear(self) -> None:
        """Forget every cached value (flights in progress finish normally)."""
        with self._lock:
            self._values.clear()
