"""The pool of helper processes (``POSEGEN_VISION_HELPERS``): concurrent requests run on
different helpers, each helper serves one request at a time, and a helper killed under a request
is replaced and the request retried once."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from vision_helpers import drawn_figure, encode

from posegen import vision
from posegen.config import Settings
from posegen.vision import client

_fresh = itertools.count()


@pytest.fixture
def pool_of(vision_settings: Settings) -> Iterator[Callable[[int], client.HelperPool]]:
    """A fresh pool of n helpers (its own timeout makes it a pool no other test shares)."""
    made: list[client.HelperPool] = []

    def make(size: int) -> client.HelperPool:
        settings = vision_settings.model_copy(
            update={"vision_helpers": size, "vision_timeout_seconds": 61.0 + next(_fresh) / 100}
        )
        pool = client.helper_for(settings)
        assert pool.starts == 0
        made.append(pool)
        pool.settings = settings  # type: ignore[attr-defined]
        return pool

    yield make
    for pool in made:
        pool.close()


def _ping(pool: client.HelperPool, sleep_ms: float) -> dict[str, Any]:
    answer, _ = pool.call({"op": "ping", "sleepMs": sleep_ms})
    return answer


def test_two_concurrent_extractions_run_on_two_helpers(
    pool_of: Callable[[int], client.HelperPool],
) -> None:
    pool = pool_of(2)
    settings: Settings = pool.settings  # type: ignore[attr-defined]
    figure = encode(drawn_figure(256))
    start = threading.Barrier(2)

    def extract(_: int) -> vision.Extraction:
        start.wait()
        return vision.extract(settings, figure)

    with ThreadPoolExecutor(2) as threads:
        found = list(threads.map(extract, range(2)))
    assert all(f.pose is not None for f in found)
    # Both started cold (a second at least each): the second request found the first helper
    # busy and took the other one.
    assert [h.requests for h in pool.helpers] == [1, 1]
    assert len(set(pool.pids)) == 2


def test_forty_simultaneous_requests_share_two_helpers_one_at_a_time(
    pool_of: Callable[[int], client.HelperPool],
) -> None:
    pool = pool_of(2)
    _ping(pool, 0)  # helper 0 started; helper 1 starts when two requests overlap
    before = sum(h.requests for h in pool.helpers)
    start = threading.Barrier(40)
    busy: list[int] = []
    most = [0]
    lock = threading.Lock()

    def one(_: int) -> int:
        start.wait()
        answer = _ping(pool, 30)
        with lock:
            busy.append(answer["pid"])
            most[0] = max(most[0], sum(h.in_flight for h in pool.helpers))
        return int(answer["pid"])

    with ThreadPoolExecutor(40) as threads:
        pids = list(threads.map(one, range(40)))
    assert len(pids) == 40
    assert sum(h.requests for h in pool.helpers) - before == 40
    assert set(pids) == set(pool.pids) and len(set(pids)) == 2
    assert most[0] <= 2
    assert all(h.starts == 1 for h in pool.helpers)


def test_a_pool_of_one_serves_one_request_at_a_time(
    pool_of: Callable[[int], client.HelperPool],
) -> None:
    pool = pool_of(1)
    with ThreadPoolExecutor(4) as threads:
        pids = list(threads.map(lambda _: _ping(pool, 20)["pid"], range(4)))
    assert len(set(pids)) == 1 and pool.helpers[0].requests == 4


def test_a_helper_killed_mid_request_is_replaced_and_the_request_retried_once(
    pool_of: Callable[[int], client.HelperPool],
) -> None:
    pool = pool_of(2)
    helper = pool.helpers[0]
    with ThreadPoolExecutor(1) as threads:
        pending = threads.submit(_ping, pool, 1500)
        deadline = time.monotonic() + 60
        while not helper.in_flight:  # the request is written; its answer not read yet
            assert time.monotonic() < deadline and not pending.done()
            time.sleep(0.005)
        killed = helper.pid
        assert killed is not None
        os.kill(killed, signal.SIGKILL)
        answer = pending.result(timeout=60)
    assert answer["ok"] and answer["pid"] not in (None, killed)
    assert helper.pid == answer["pid"] and helper.starts == 2 and helper.requests == 1
    assert pool.helpers[1].pid is None  # the retry stayed on its own (replaced) helper

    # Killed on every try: the second death is the caller's error, and the helper still comes
    # back for the next request.
    def kill_whenever_busy() -> None:
        end = time.monotonic() + 30
        kills = 0
        while kills < 2 and time.monotonic() < end:
            pid = helper.pid
            if helper.in_flight and pid is not None:
                os.kill(pid, signal.SIGKILL)
                kills += 1
                while helper.pid == pid and time.monotonic() < end:
                    time.sleep(0.005)
            time.sleep(0.005)

    killer = threading.Thread(target=kill_whenever_busy)
    killer.start()
    with pytest.raises(vision.VisionFailed) as failed:
        _ping(pool, 1500)
    killer.join()
    assert failed.value.kind == "vision-failed"
    assert _ping(pool, 0)["ok"]
