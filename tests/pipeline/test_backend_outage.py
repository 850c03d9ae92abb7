"""A backend outage is not the generation's fault (issue #19), with real ``posegen worker``
processes on both engines.

ComfyUI: the fake server is killed mid-run and stays down far longer than the whole retry
budget (3 attempts with no backoff would be spent in well under a second), then comes back.
Every generation completes, no attempt is spent on the outage, no pose is made twice, and
while it is down the workers table says the workers are paused and why.

diffusers: the tiny pipeline raises CUDA out-of-memory on its first calls
(``POSEGEN_DIFFUSERS_FAULT_OOM``), more often than the retry budget allows: the same outcome.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fake_comfyui import FakeComfyUI  # type: ignore[import-not-found]
from pipeline_world import World  # type: ignore[import-not-found]
from sqlalchemy import func, select

from posegen import operations
from posegen.db.models import GeneratedPose, PoseGeneration
from posegen.generators.diffusers_backend import FAULT_ENV

OUTAGE_SECONDS = 6.0


def _env(cli_env: dict[str, str], **extra: str) -> dict[str, str]:
    env = dict(cli_env)
    env.update(
        POSEGEN_LEASE_SECONDS="3",
        POSEGEN_POLL_INTERVAL_SECONDS="0.05",
        POSEGEN_RECOVERY_INTERVAL_SECONDS="0.5",
        POSEGEN_RETRY_BACKOFF_BASE_SECONDS="0",
        POSEGEN_MAX_ATTEMPTS="3",
        POSEGEN_WORKER_CONCURRENCY="2",
        POSEGEN_SHUTDOWN_GRACE_SECONDS="5",
        POSEGEN_BREAKER_THRESHOLD="2",
        POSEGEN_BREAKER_PROBE_MIN_SECONDS="0.2",
        POSEGEN_BREAKER_PROBE_MAX_SECONDS="1",
    )
    env.update(extra)
    return env


@contextmanager
def _workers(env: dict[str, str], count: int, errors: list[str]) -> Iterator[list[Any]]:
    """``count`` real worker processes, stopped with SIGTERM at the end; each one's stderr is
    appended to ``errors`` once it exited."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "posegen", "worker"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    try:
        yield procs
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                _out, err = p.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                _out, err = p.communicate()
            errors.append(err or "")


def _rows(world: World, ids: list[int]) -> list[Any]:
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    PoseGeneration.id,
                    PoseGeneration.status,
                    PoseGeneration.attempts,
                    PoseGeneration.poses_completed,
                    PoseGeneration.poses_failed,
                    PoseGeneration.total_expected_poses,
                    PoseGeneration.error_kind,
                ).where(PoseGeneration.id.in_(ids))
            )
        )


def _completed_poses(world: World, ids: list[int]) -> int:
    return sum(r.poses_completed for r in _rows(world, ids))


def _wait(cond: Any, timeout: float, procs: list[Any], what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for p in procs:
            assert p.poll() is None, f"a worker exited: {p.stderr.read() if p.stderr else ''}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _assert_all_done_once(world: World, ids: list[int]) -> None:
    for r in _rows(world, ids):
        assert (r.status, r.poses_completed, r.poses_failed) == (
            "completed",
            r.total_expected_poses,
            0,
        ), r
        # Claimed and finished once: every outage release gave its attempt back.
        assert r.attempts == 1, r
    with world.engine.connect() as conn:
        keys = conn.execute(
            select(GeneratedPose.generation_id, GeneratedPose.variation_key, func.count())
            .where(GeneratedPose.generation_id.in_(ids))
            .group_by(GeneratedPose.generation_id, GeneratedPose.variation_key)
        ).all()
    assert all(n == 1 for _g, _k, n in keys)  # no pose twice
    assert len(keys) == sum(r.total_expected_poses for r in _rows(world, ids))
    root = world.settings.effective_results_dir
    stray = [p for p in root.rglob("*") if p.suffix == ".tmp"]
    assert not stray


def test_comfyui_killed_longer_than_the_retry_budget_fails_nothing(
    world: World, cli_env: dict[str, str]
) -> None:
    with FakeComfyUI(delay=0.05) as server:
        env = _env(
            cli_env,
            POSEGEN_BACKEND="comfyui",
            POSEGEN_COMFYUI_URL=server.url,
            POSEGEN_COMFYUI_TIMEOUT_SECONDS="20",
        )
        # Bound to the backend the workers serve (a posemap worker would never see them).
        ids = [
            world.submit(world.pose_ids, variations=2, width=128, height=128, backend="comfyui")
            for _ in range(6)
        ]
        total = sum(r.total_expected_poses for r in _rows(world, ids))
        errors: list[str] = []
        with _workers(env, 2, errors) as procs:
            _wait(lambda: _completed_poses(world, ids) >= 4, 90, procs, "first poses")
            server.stop()  # killed: refused connections, its queue and history gone
            down_at = time.monotonic()
            _wait(
                lambda: sum(w.paused for w in operations.workers(world.engine, 60)) == 2,
                30,
                procs,
                "both workers to pause",
            )
            paused = operations.workers(world.engine, 60)
            assert all("comfyui-unreachable" in (w.paused_reason or "") for w in paused)
            # While paused they hold nothing, and nothing was spent or failed.
            _wait(
                lambda: all(
                    r.status == "pending"
                    for r in _rows(world, ids)
                    if r.poses_completed < r.total_expected_poses
                ),
                30,
                procs,
                "unfinished generations back to pending",
            )
            during = _rows(world, ids)
            assert all(r.status in ("pending", "completed") for r in during)
            assert all(r.attempts <= 1 for r in during)
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - down_at)))
            server.start()  # back, empty (a restarted server forgot its uploads)
            _wait(
                lambda: all(r.status == "completed" for r in _rows(world, ids)),
                120,
                procs,
                "every generation to complete",
            )
            _wait(
                lambda: not any(w.paused for w in operations.workers(world.engine, 60)),
                30,
                procs,
                "the workers to resume",
            )
        assert [p.returncode for p in procs] == [0, 0], errors
    _assert_all_done_once(world, ids)
    # Each image was made at most once more than stored: only a prompt in flight at the kill
    # can have been made and lost.
    assert total <= server.made <= total + 2 * 2


def test_diffusers_out_of_memory_is_not_the_generations_fault(
    world: World, cli_env: dict[str, str], tiny_sd15: tuple[Path, Path]
) -> None:
    model, controlnet = tiny_sd15
    faults = 7  # more than threshold x attempts: without the breaker the generations would fail
    env = _env(
        cli_env,
        POSEGEN_BACKEND="diffusers",
        POSEGEN_DIFFUSERS_MODEL_PATH=str(model),
        POSEGEN_DIFFUSERS_CONTROLNET_PATH=str(controlnet),
        POSEGEN_DIFFUSERS_DEVICE="cpu",
        POSEGEN_DIFFUSERS_STEPS="2",
        POSEGEN_DIFFUSERS_MAX_BATCH="1",
        # Each pause lasts at least a second, so the test sees it even on a loaded machine.
        POSEGEN_BREAKER_PROBE_MIN_SECONDS="1",
        POSEGEN_BREAKER_PROBE_MAX_SECONDS="2",
        **{FAULT_ENV: str(faults)},
    )
    ids = [
        world.submit(world.pose_ids[:2], variations=1, width=64, height=64, backend="diffusers")
        for _ in range(3)
    ]
    errors: list[str] = []
    with _workers(env, 1, errors) as procs:
        _wait(
            lambda: any(
                "out-of-memory" in (w.paused_reason or "")
                for w in operations.workers(world.engine, 60)
            ),
            120,
            procs,
            "the worker to pause on out-of-memory",
        )
        _wait(
            lambda: all(r.status == "completed" for r in _rows(world, ids)),
            180,
            procs,
            "every generation to complete",
        )
    assert procs[0].returncode == 0, errors
    _assert_all_done_once(world, ids)


def test_worker_refuses_to_start_when_comfyui_lacks_a_model(
    world: World, cli_env: dict[str, str]
) -> None:
    with FakeComfyUI() as server:
        server.checkpoints = ["sdxl_base.safetensors"]
        env = _env(cli_env, POSEGEN_BACKEND="comfyui", POSEGEN_COMFYUI_URL=server.url)
        proc = subprocess.run(
            [sys.executable, "-m", "posegen", "worker"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("error: ComfyUI at http://127.0.0.1:")
    assert "ckpt_name 'v1-5-pruned-emaonly.safetensors' is not installed" in lines[0]
    assert "sdxl_base.safetensors" in lines[0]
    assert operations.workers(world.engine, 60) == []  # it never registered


def test_generate_says_in_one_line_what_the_comfyui_server_lacks(
    world: World, cli_env: dict[str, str]
) -> None:
    with FakeComfyUI() as server:
        server.controlnets = []
        env = _env(cli_env, POSEGEN_BACKEND="comfyui", POSEGEN_COMFYUI_URL=server.url)
        proc = subprocess.run(
            [sys.executable, "-m", "posegen", "generate", "--poses", str(world.pose_ids[0])],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1
    assert "control_net_name 'control_v11p_sd15_openpose.pth' is not installed" in errors[0]
