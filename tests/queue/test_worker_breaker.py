"""The worker's circuit breaker, in-process: a backend outage pauses claiming, gives work back
without spending an attempt, shows in the workers table, and ends when a probe passes; the
start-up check refuses a backend that cannot run the work. Real database, both engines."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from queue_helpers import completed_result, row, wait_for

from posegen import operations, queue
from posegen.db.models import GenerationStatus
from posegen.exceptions import ConfigError, GeneratorError
from posegen.queue import ClaimedJob
from posegen.worker import JobContext, Worker, registry
from posegen.worker.breaker import Breaker

S = GenerationStatus


def start(w: Worker) -> threading.Thread:
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    return t


class FlakyBackend:
    """A handler over a backend that is down while ``down`` is set; ``probe`` says the same."""

    def __init__(self) -> None:
        self.down = threading.Event()
        self.calls = 0
        self.probes = 0
        self.config_problem: str | None = None
        self.lock = threading.Lock()

    def probe(self) -> None:
        with self.lock:
            self.probes += 1
        if self.config_problem:
            raise ConfigError(self.config_problem)
        self.call_backend()

    def call_backend(self) -> None:
        if self.down.is_set():
            raise GeneratorError(
                "cannot reach the backend", transient=True, outage=True, kind="test-unreachable"
            )

    def __call__(self, job: ClaimedJob, ctx: JobContext) -> None:
        for pose_id, index, key in job.variation_keys():
            if key in job.done_keys:
                continue
            if ctx.should_stop():
                return
            with self.lock:
                self.calls += 1
            self.call_backend()
            ctx.record_pose(completed_result(pose_id, index))


def test_breaker_counts_backs_off_and_closes() -> None:
    now = [0.0]
    b = Breaker(threshold=2, probe_min=1.0, probe_max=3.0, clock=lambda: now[0])
    assert not b.outage("down") and b.reason is None
    b.answered()  # the backend answered in between: the count starts over
    assert not b.outage("down")
    assert b.outage("down: refused") and b.paused.is_set() and b.reason == "down: refused"
    assert b.seconds_to_probe() == 1.0
    now[0] = 1.0
    b.probed("still down")
    assert b.seconds_to_probe() == 2.0 and b.reason == "still down"
    b.probed("still down")
    assert b.seconds_to_probe() == 3.0  # capped at probe_max
    b.probed(None)
    assert not b.paused.is_set() and b.reason is None
    assert not b.outage("down")  # closed again, the count started over


def test_outage_pauses_gives_back_without_attempts_then_completes(engine, tuned, owner):
    settings = tuned(
        breaker_threshold=2,
        breaker_probe_min_seconds=0.05,
        breaker_probe_max_seconds=0.2,
        max_attempts=2,
    )
    backend = FlakyBackend()
    w = Worker(settings, engine, backend, concurrency=2)
    t = start(w)
    try:
        wait_for(lambda: backend.probes >= 1)  # the start-up check passed
        backend.down.set()
        ids = queue.submit_many(engine, settings, [owner.request(2, 1) for _ in range(5)])
        # Paused: the workers table says why, and nothing was spent.
        wait_for(lambda: w.stats["released-outage"] >= 2 and w.breaker.reason is not None)
        wait_for(lambda: backend.probes >= 6)  # several probes: far past the 2-attempt budget
        info = next(i for i in operations.workers(engine, 60) if i.id == w.id)
        assert info.paused and info.paused_at is not None
        assert "test-unreachable: cannot reach the backend" in (info.paused_reason or "")
        for gid in ids:
            r = row(engine, gid)
            assert r.status == S.PENDING and r.attempts == 0, gid
        released = [row(engine, gid) for gid in ids if row(engine, gid).error_kind]
        assert released and all(r.error_kind == "test-unreachable" for r in released)
        calls_while_paused = backend.calls
        wait_for(lambda: backend.probes >= 8)
        assert backend.calls == calls_while_paused  # paused: no claim, no backend call
        backend.down.clear()
        wait_for(lambda: all(row(engine, gid).status == S.COMPLETED for gid in ids))
        wait_for(lambda: not next(i for i in operations.workers(engine, 60) if i.id == w.id).paused)
    finally:
        w.stop()
        t.join(30)
    for gid in ids:
        assert row(engine, gid).attempts == 1  # only the claim that finished it
        assert row(engine, gid).poses_completed == 2


def test_open_breaker_releases_what_the_other_jobs_hold(engine, tuned, owner):
    settings = tuned(breaker_threshold=1, breaker_probe_min_seconds=0.05)
    gate = threading.Event()
    started = threading.Event()
    backend = FlakyBackend()

    def handler(job: ClaimedJob, ctx: JobContext) -> None:
        if len(job.pose_ids) == 4:  # the long one: one pose, then wait for the outage
            pose_id, index, _key = job.variation_keys()[0]
            ctx.record_pose(completed_result(pose_id, index))
            started.set()
            gate.wait(10)
            for pose_id, index, _key in job.variation_keys()[1:]:
                if ctx.should_stop():
                    return
                ctx.record_pose(completed_result(pose_id, index))
            return
        started.wait(10)
        backend.down.set()
        backend.call_backend()

    handler_any: Any = handler
    handler_any.probe = backend.probe
    long_id = queue.submit(engine, settings, owner.request(4, 1)).generation_id
    short_id = queue.submit(engine, settings, owner.request(1, 1)).generation_id
    w = Worker(settings, engine, handler_any, concurrency=2)
    t = start(w)
    try:
        wait_for(lambda: w.breaker.paused.is_set())
        gate.set()
        wait_for(lambda: row(engine, long_id).status == S.PENDING)
        long_row = row(engine, long_id)
        assert long_row.attempts == 0 and long_row.poses_completed == 1
        assert long_row.error_kind == "backend-unavailable"
        assert row(engine, short_id).attempts == 0
    finally:
        w.stop()
        t.join(30)
    assert w.stats["released-outage"] == 2


def test_start_up_check_refuses_a_backend_that_cannot_run_the_work(engine, settings):
    backend = FlakyBackend()
    backend.config_problem = "ComfyUI at http://x cannot run the workflow: node class 'X'"
    w = Worker(settings, engine, backend, concurrency=1)
    with pytest.raises(ConfigError, match="cannot run the workflow"):
        w.run()
    assert registry.list_workers(engine, 60) == []  # refused before registering


def test_start_up_with_the_backend_down_starts_paused(engine, tuned, owner):
    settings = tuned(breaker_probe_min_seconds=0.05, breaker_probe_max_seconds=0.1)
    backend = FlakyBackend()
    backend.down.set()
    gid = queue.submit(engine, settings, owner.request(1, 1)).generation_id
    w = Worker(settings, engine, backend, concurrency=1)
    t = start(w)
    try:
        wait_for(lambda: any(i.paused for i in operations.workers(engine, 60)))
        wait_for(lambda: backend.probes >= 3)
        assert backend.calls == 0 and row(engine, gid).status == S.PENDING
        backend.down.clear()
        wait_for(lambda: row(engine, gid).status == S.COMPLETED)
        assert row(engine, gid).attempts == 1
    finally:
        w.stop()
        t.join(30)
