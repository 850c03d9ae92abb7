"""The pipeline's small rules: seeds, prompts, the write-ahead helper and the overhead clock."""

from __future__ import annotations

import threading
import time

import pytest

from posegen.exceptions import GeneratorError, LeaseLost
from posegen.worker.job_inputs import PoseInfo, build_prompt, pick_seed
from posegen.worker.pipeline_clock import OverheadClock
from posegen.worker.pipeline_writes import AheadWriter


def test_seed_is_given_plus_index_or_derived_and_stable() -> None:
    assert pick_seed(1000, 7, "p3-v2", 2) == 1002
    derived = pick_seed(None, 7, "p3-v2", 2)
    assert derived == pick_seed(None, 7, "p3-v2", 2)  # same on every retry and resume
    assert 0 <= derived < 2**32
    others = {pick_seed(None, g, f"p3-v{i}", i) for g in (7, 8) for i in range(3)}
    assert len(others) == 6


def test_prompt_joins_request_and_pose() -> None:
    pose = PoseInfo(3, "Arms Crossed", "  standing, arms folded ", None, None)
    assert build_prompt("studio photo", pose) == "studio photo, Arms Crossed, standing, arms folded"
    assert build_prompt(None, pose) == "a person, Arms Crossed, standing, arms folded"
    assert build_prompt("  ", PoseInfo(4, "Sit", "", None, None)) == "a person, Sit"
    assert build_prompt("a red robot", None) == "a red robot"


def test_writer_overlaps_bounded_and_reports_errors() -> None:
    writer = AheadWriter(depth=2)
    release = threading.Event()
    running = []

    def slow() -> None:
        running.append(1)
        release.wait(5)

    writer.submit(slow)
    writer.submit(slow)
    time.sleep(0.05)
    assert len(running) == 2  # both in flight while the caller goes on
    threading.Timer(0.2, release.set).start()
    waited = writer.submit(lambda: None)  # a third waits for the oldest
    assert waited >= 0.1
    writer.flush()

    def lost() -> None:
        raise LeaseLost("gone")

    writer.submit(lost)
    time.sleep(0.05)
    with pytest.raises(LeaseLost):
        writer.submit(lambda: None)
    writer.submit(lost)
    with pytest.raises(LeaseLost):
        writer.flush()
    writer.submit(lost)
    writer.close()  # on the error path the write's own error is dropped


def test_inline_writer_runs_on_the_callers_thread() -> None:
    writer = AheadWriter(depth=0)
    seen: list[str] = []
    writer.submit(lambda: seen.append(threading.current_thread().name))
    assert seen == [threading.current_thread().name]
    with pytest.raises(GeneratorError):
        writer.submit(lambda: (_ for _ in ()).throw(GeneratorError("x", transient=True)))
    writer.close()


def test_overhead_clock_sums_to_wall_minus_backend() -> None:
    seen: list[tuple[float, float]] = []
    started_run = time.perf_counter()
    clock = OverheadClock("test", lambda o, b: seen.append((o, b)))
    backend_total = 0.0
    for poses in (1, 2, 1):
        time.sleep(0.01)  # maps, handing off the previous write...
        started = clock.backend_starts()
        time.sleep(0.02)
        backend_total += time.perf_counter() - started
        clock.backend_ends(started, poses)
    time.sleep(0.01)  # the last write
    clock.finish()
    wall = time.perf_counter() - started_run
    assert len(seen) == 4
    assert sum(o for o, _ in seen) == pytest.approx(wall - backend_total, abs=0.005)
    assert sum(b for _, b in seen) == pytest.approx(backend_total, abs=0.001)
