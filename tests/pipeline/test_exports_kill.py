"""Crash-safe exports: a real ``posegen worker`` process SIGKILLed mid-generation (poses with
their exports) or mid-export-task; after recovery every completed result has exactly one
complete set of exports, and the task's events replay as one story."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import select

from posegen import exporting, queue
from posegen.db.models import (
    GeneratedPose,
    GenerationEvent,
    GenerationTask,
    PoseGeneration,
    PoseLibrary,
    PoseStatus,
    ResultExport,
)
from posegen.queue.dead_workers import recover_dead_workers

SIZE = 1024
CMD = [sys.executable, "-m", "posegen", "worker"]


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    env = dict(cli_env)
    env.update(
        POSEGEN_LEASE_SECONDS="1.5",
        POSEGEN_POLL_INTERVAL_SECONDS="0.05",
        POSEGEN_RECOVERY_INTERVAL_SECONDS="0.5",
        POSEGEN_RETRY_BACKOFF_BASE_SECONDS="0",
        POSEGEN_WORKER_CONCURRENCY="1",
    )
    return env


def _pose_ids(world: World, n: int) -> list[int]:
    with world.engine.connect() as conn:
        query = select(PoseLibrary.id).order_by(PoseLibrary.id).limit(n)
        return [int(i) for i in conn.execute(query).scalars()]


def _kill_when(proc: subprocess.Popen[bytes], ready: object, what: str) -> None:
    try:
        deadline = time.monotonic() + 90
        while not ready():  # type: ignore[operator]
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, f"the worker never reached {what}"
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream:
                stream.close()
    assert proc.returncode == -signal.SIGKILL


def _sets(world: World, gid: int) -> tuple[list[int], Counter[tuple[int, str]]]:
    with world.engine.connect() as conn:
        results = [
            int(i)
            for i in conn.execute(
                select(GeneratedPose.id).where(
                    GeneratedPose.generation_id == gid,
                    GeneratedPose.status == PoseStatus.COMPLETED,
                )
            ).scalars()
        ]
        rows = Counter(
            (int(r), str(f))
            for r, f in conn.execute(
                select(ResultExport.result_id, ResultExport.format).where(
                    ResultExport.generation_id == gid
                )
            )
        )
    return results, rows


def _export_files(root: Path, gid: int, fmt: str) -> list[Path]:
    # Published names only (a temp file cut short by the kill starts with a dot).
    return sorted(root.glob(f"*/{gid}/[!.]*.x-{fmt}.*"))


def test_sigkill_between_poses_and_exports_leaves_whole_sets(
    world: World, cli_env: dict[str, str]
) -> None:
    formats = sorted(exporting.formats(world.settings))[:2]
    gid = world.submit(
        _pose_ids(world, 4), variations=2, width=SIZE, height=SIZE, export_formats=tuple(formats)
    )
    root = world.settings.effective_results_dir

    def some_done() -> bool:
        with world.engine.connect() as conn:
            done = conn.execute(
                select(PoseGeneration.poses_completed).where(PoseGeneration.id == gid)
            ).scalar_one()
        # Killed once poses are checkpointed and more exports are on disk than rows name.
        return done >= 2 and len(_export_files(root, gid, formats[0])) > done

    _kill_when(subprocess.Popen(CMD, env=_env(cli_env), stderr=subprocess.PIPE), some_done, "poses")
    results, rows = _sets(world, gid)
    assert results and set(rows) == {(r, f) for r in results for f in formats}

    deadline = time.monotonic() + 30
    while queue.recover(world.engine, world.settings, "test").requeued == 0:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.2)
    done = subprocess.run(
        [*CMD, "--burst"], env=_env(cli_env), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr

    results, rows = _sets(world, gid)
    assert len(results) == 8
    # Exactly one export per (result, format): no pose without its set, no set twice.
    assert rows == Counter({(r, f): 1 for r in results for f in formats})
    for fmt in formats:
        assert len(_export_files(root, gid, fmt)) == 8


def test_sigkill_mid_export_task_recovers_to_one_complete_set(
    world: World, cli_env: dict[str, str]
) -> None:
    gid = world.submit(_pose_ids(world, 4), variations=2, width=SIZE, height=SIZE)
    world.run_pipeline()
    fmt = sorted(exporting.formats(world.settings))[-1]
    (asked,) = exporting.request(world.engine, world.settings, gid, [fmt])
    assert asked.queued
    root = world.settings.effective_results_dir

    def mid_task() -> bool:
        return len(_export_files(root, gid, fmt)) >= 2

    _kill_when(subprocess.Popen(CMD, env=_env(cli_env), stderr=subprocess.PIPE), mid_task, "task")
    with world.engine.connect() as conn:
        task = conn.execute(
            select(GenerationTask.status, GenerationTask.attempts).where(
                GenerationTask.id == asked.task_id
            )
        ).one()
    results, rows = _sets(world, gid)
    # Killed mid-task: files on disk, no row yet (rows land with the task's completion).
    assert (str(task.status), task.attempts) == ("processing", 1)
    assert not rows

    # The dead worker's liveness lock is free: its task goes back at once (no lease wait).
    deadline = time.monotonic() + 30
    while recover_dead_workers(world.engine, world.settings, "test").requeued == 0:
        assert time.monotonic() < deadline, "the dead worker was never noticed"
        time.sleep(0.2)
    done = subprocess.run(
        [*CMD, "--burst"], env=_env(cli_env), capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr

    results, rows = _sets(world, gid)
    assert rows == Counter({(r, fmt): 1 for r in results})
    assert len(_export_files(root, gid, fmt)) == len(results) == 8
    with world.engine.connect() as conn:
        task = conn.execute(
            select(GenerationTask.status, GenerationTask.attempts).where(
                GenerationTask.id == asked.task_id
            )
        ).one()
        kinds = [
            str(k)
            for k in conn.execute(
                select(GenerationEvent.kind)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        ]
    assert (str(task.status), task.attempts) == ("completed", 2)
    tail = kinds[kinds.index("completed") + 1 :]
    assert tail == [
        "task_queued",
        "task_started",
        "task_retrying",
        "task_started",
        "task_completed",
        "tasks_settled",
    ]
