"""TTL cache with single-flight: a burst after expiry computes once; errors reach every waiter."""

from __future__ import annotations

import threading
import time

import pytest

from posegen.metrics.ttlcache import TTLCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def wait_until(predicate, timeout=10.0):
    """Wait for a state another thread reaches (not an assertion about time)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.001)


def burst(cache, key, compute, n):
    results: list[object] = [None] * n

    def call(i):
        try:
            results[i] = cache.get_or_compute(key, compute)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=call, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    return threads, results


def test_a_burst_after_expiry_recomputes_once():
    clock = Clock()
    cache = TTLCache(60, clock=clock)
    assert cache.get_or_compute("top", lambda: "old") == "old"
    clock.now += 30
    assert cache.get_or_compute("top", lambda: "unused") == "old"  # fresh: no computation
    clock.now += 31  # expired

    started, release = threading.Event(), threading.Event()
    calls = []

    def compute():
        calls.append(1)
        started.set()
        release.wait(10)
        return "new"

    n = 16
    threads, results = burst(cache, "top", compute, n)
    started.wait(10)
    wait_until(lambda: cache.stats.coalesced == n - 1)  # everyone else is waiting on the flight
    assert len(calls) == 1
    release.set()
    for t in threads:
        t.join(10)
    assert results == ["new"] * n
    assert len(calls) == 1
    assert cache.stats.computations == 2 and cache.stats.hits == 1
    assert cache.peek("top") == (True, "new")


def test_the_leaders_error_reaches_every_waiter_and_is_not_cached():
    cache = TTLCache(60, clock=Clock())
    started, release = threading.Event(), threading.Event()

    def failing():
        started.set()
        release.wait(10)
        raise RuntimeError("database went away")

    threads, results = burst(cache, "k", failing, 5)
    started.wait(10)
    wait_until(lambda: cache.stats.coalesced == 4)
    release.set()
    for t in threads:
        t.join(10)
    assert all(isinstance(r, RuntimeError) and str(r) == "database went away" for r in results)
    assert cache.peek("k") == (False, None)
    assert cache.get_or_compute("k", lambda: 42) == 42  # next caller tries again


def test_keys_are_independent_and_entries_are_bounded():
    clock = Clock()
    cache = TTLCache(60, max_entries=2, clock=clock)
    for key in ("a", "b", "c"):
        cache.get_or_compute(key, lambda key=key: key.upper())
    assert cache.peek("a") == (False, None)  # the oldest went
    assert cache.peek("b") == (True, "B") and cache.peek("c") == (True, "C")
    clock.now += 61
    assert cache.peek("c") == (False, None)


def test_ttl_zero_caches_nothing_but_still_coalesces():
    cache = TTLCache(0, clock=Clock())
    calls = []
    assert cache.get_or_compute("k", lambda: calls.append(1) or len(calls)) == 1
    assert cache.get_or_compute("k", lambda: calls.append(1) or len(calls)) == 2
    with pytest.raises(ValueError):
        TTLCache(-1)
