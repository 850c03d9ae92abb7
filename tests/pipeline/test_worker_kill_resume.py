"""A real ``posegen worker`` process killed with SIGKILL mid-generation; the generation resumes
in another worker process without redoing (or rewriting) the poses already finished."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from typing import Any

from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import select

from posegen import queue
from posegen.db.models import GeneratedPose, PoseGeneration, PoseLibrary

# Big images make posemap slow enough (tens of ms a pose) to be killed halfway.
SIZE = 1024


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


def _progress(world: World, gid: int) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(
            select(
                PoseGeneration.status,
                PoseGeneration.poses_completed,
                PoseGeneration.attempts,
                PoseGeneration.total_expected_poses,
            ).where(PoseGeneration.id == gid)
        ).one()


def _rows(world: World, gid: int) -> dict[str, tuple[int, str]]:
    with world.engine.connect() as conn:
        return {
            r.variation_key: (r.id, r.image_path)
            for r in conn.execute(
                select(
                    GeneratedPose.variation_key, GeneratedPose.id, GeneratedPose.image_path
                ).where(GeneratedPose.generation_id == gid)
            )
        }


def test_sigkill_mid_generation_resumes_without_redoing_poses(
    world: World, cli_env: dict[str, str]
) -> None:
    with world.engine.connect() as conn:
        query = select(PoseLibrary.id).order_by(PoseLibrary.id).limit(8)
        pose_ids = [int(i) for i in conn.execute(query).scalars()]
    gid = world.submit(pose_ids, variations=2, width=SIZE, height=SIZE)
    total = len(pose_ids) * 2
    env = _env(cli_env)
    cmd = [sys.executable, "-m", "posegen", "worker"]

    first = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _progress(world, gid).poses_completed < 4:
            assert first.poll() is None, first.stderr.read() if first.stderr else ""
            assert time.monotonic() < deadline, "the worker made no progress"
            time.sleep(0.01)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(10)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
        for stream in (first.stdout, first.stderr):
            if stream:
                stream.close()
    assert first.returncode == -signal.SIGKILL

    before = _rows(world, gid)
    state = _progress(world, gid)
    assert state.status == "processing" and 4 <= len(before) < total
    assert state.poses_completed == len(before)
    root = world.settings.effective_results_dir
    mtimes = {key: (root / path).stat().st_mtime_ns for key, (_id, path) in before.items()}

    # The dead worker's lease expires; recovery sends the generation back to pending.
    deadline = time.monotonic() + 30
    while queue.recover(world.engine, world.settings, "test").requeued == 0:
        assert time.monotonic() < deadline, "the lease never expired"
        time.sleep(0.2)

    second = subprocess.run([*cmd, "--burst"], env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr

    state = _progress(world, gid)
    assert state.status == "completed" and state.poses_completed == total
    assert state.attempts == 2
    after = _rows(world, gid)
    assert len(after) == total
    # Finished poses kept their rows and their files were not written again.
    for key, (row_id, path) in before.items():
        assert after[key] == (row_id, path)
        assert (root / path).stat().st_mtime_ns == mtimes[key]
    files = sorted(p.name for p in (root / after[next(iter(after))][1]).parent.iterdir())
    assert len(files) == 2 * total and not [f for f in files if f.endswith(".tmp")]
