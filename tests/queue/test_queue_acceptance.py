"""Acceptance: real ``posegen worker`` processes on a real database, killed with real signals.

The no-op backend (``POSEGEN_BACKEND=noop``) sleeps ``POSEGEN_NOOP_POSE_SECONDS`` per pose so a
generation is reliably caught mid-way; assertions wait on database state, never on timing.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest
from queue_helpers import assert_rollup_matches, pose_keys, row, wait_for
from sqlalchemy import select

from posegen import queue
from posegen.db.models import GenerationStatus, PoseGeneration

S = GenerationStatus
POSEGEN = [sys.executable, "-m", "posegen"]


@pytest.fixture
def worker_env(cli_env: dict[str, str]) -> dict[str, str]:
    return {
        **cli_env,
        "POSEGEN_BACKEND": "noop",
        "POSEGEN_LEASE_SECONDS": "1.5",
        "POSEGEN_RECOVERY_INTERVAL_SECONDS": "0.3",
        "POSEGEN_POLL_INTERVAL_SECONDS": "0.1",
        "POSEGEN_RETRY_BACKOFF_BASE_SECONDS": "0",
        "POSEGEN_SHUTDOWN_GRACE_SECONDS": "10",
    }


class Proc:
    """A ``posegen worker`` process whose output goes to files (no pipes to drain)."""

    def __init__(self, env: dict[str, str], tmp: Path, args: tuple[str, ...], extra: Any) -> None:
        name = uuid.uuid4().hex[:8]
        self.out_path, self.err_path = tmp / f"{name}.out", tmp / f"{name}.err"
        with self.out_path.open("w") as out, self.err_path.open("w") as err:
            self.popen = subprocess.Popen(
                [*POSEGEN, "worker", *args], env={**env, **extra}, stdout=out, stderr=err
            )
        self.pid = self.popen.pid

    def out(self) -> str:
        return self.out_path.read_text()

    def err(self) -> str:
        return self.err_path.read_text()

    def last_json(self) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(self.out().splitlines()[-1])
        return result

    def __enter__(self) -> Proc:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


@pytest.fixture
def spawn(worker_env: dict[str, str], tmp_path: Path) -> Any:
    def make(*args: str, **extra_env: str) -> Proc:
        return Proc(worker_env, tmp_path, args, extra_env)

    return make


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*POSEGEN, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def statuses(engine: Any) -> list[Any]:
    with engine.connect() as conn:
        return conn.execute(
            select(
                PoseGeneration.id,
                PoseGeneration.status,
                PoseGeneration.leased_by,
                PoseGeneration.poses_completed,
                PoseGeneration.attempts,
            ).order_by(PoseGeneration.id)
        ).all()


def test_sigkill_mid_generation_loses_nothing(engine, settings, owner, spawn):
    ids = queue.submit_many(engine, settings, [owner.request(poses=3) for _ in range(10)])
    # The victim starts alone, so that it (not a survivor that started sooner on a loaded
    # machine) holds work when it is killed; the survivors start after the kill.
    procs = [spawn("--concurrency", "2", POSEGEN_NOOP_POSE_SECONDS="0.2")]
    try:
        victim = procs[0]
        tag = f":{victim.pid}:"

        def orphans() -> list[int]:
            return [
                r.id
                for r in statuses(engine)
                if r.status == S.PROCESSING and tag in (r.leased_by or "")
            ]

        def victim_is_mid_generation() -> bool:
            return any(row(engine, g).poses_completed >= 1 for g in orphans())

        wait_for(victim_is_mid_generation, 60, 0.02)
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        killed = orphans()
        assert killed
        procs += [spawn("--concurrency", "2", POSEGEN_NOOP_POSE_SECONDS="0.2") for _ in range(2)]
        # the survivors' recovery loops requeue the orphans once their leases expire
        wait_for(lambda: all(r.status == S.COMPLETED for r in statuses(engine)), 60)
        for p in procs[1:]:
            p.popen.send_signal(signal.SIGTERM)
        for p in procs[1:]:
            assert p.popen.wait(20) == 0, p.err()
    finally:
        for p in procs:
            p.__exit__()
    expected = sorted(f"p{p}-v0" for p in owner.pose_ids[:3])
    for gen in ids:
        r = row(engine, gen)
        assert (r.status, r.poses_completed, r.poses_failed) == (S.COMPLETED, 3, 0)
        assert pose_keys(engine, gen) == expected
    for gen in killed:
        assert row(engine, gen).attempts == 2  # the recovery counted the killed attempt
    assert_rollup_matches(engine)


def test_sigterm_releases_without_counting_an_attempt(engine, settings, owner, spawn, worker_env):
    ids = queue.submit_many(engine, settings, [owner.request(poses=4) for _ in range(2)])
    port = free_port()
    with spawn(
        "--concurrency", "2", "--metrics-port", str(port), POSEGEN_NOOP_POSE_SECONDS="0.4"
    ) as proc:
        wait_for(lambda: all(r.poses_completed >= 1 for r in statuses(engine)), 30, 0.02)
        scraped = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
        assert "posegen_claims_total 2.0" in scraped
        assert "posegen_worker_in_flight 2.0" in scraped
        proc.popen.send_signal(signal.SIGTERM)
        assert proc.popen.wait(30) == 0, proc.err()
    assert proc.last_json()["released"] == 2
    for r in statuses(engine):
        # the pose in flight finished within the grace period; the rest went back to pending
        assert (r.status, r.attempts, r.leased_by) == (S.PENDING, 0, None)
        assert 1 <= r.poses_completed < 4
    # a burst worker resumes them from their checkpoints and exits when nothing is left
    done = run(worker_env, "worker", "--burst")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["completed"] == 2
    for gen in ids:
        r = row(engine, gen)
        assert (r.status, r.attempts, r.poses_completed) == (S.COMPLETED, 1, 4)
        assert len(pose_keys(engine, gen)) == 4
    assert_rollup_matches(engine)


def test_second_signal_exits_at_once(engine, settings, owner, spawn):
    gen = queue.submit(engine, settings, owner.request(poses=2)).generation_id
    with spawn(POSEGEN_NOOP_POSE_SECONDS="30") as proc:
        wait_for(lambda: row(engine, gen).status == S.PROCESSING, 30, 0.02)
        # The row turns 'processing' at claim time, a moment before the job thread starts its
        # first (30 s) pose; a stop inside that moment would let the worker leave at once by
        # itself. Give the pose time to start so the graceful stop really has to wait.
        time.sleep(1.0)
        proc.popen.send_signal(signal.SIGTERM)
        wait_for(lambda: "stopping gracefully" in proc.err(), 10)
        proc.popen.send_signal(signal.SIGTERM)
        # Well inside the 10 s grace period: the second signal ended it (our handler exits with
        # 128 + signum; during interpreter teardown the default action gives -signum).
        assert proc.popen.wait(5) in (128 + signal.SIGTERM, -signal.SIGTERM)
    # left processing: the recovery loop owns it now
    assert row(engine, gen).status == S.PROCESSING


def test_cli_submit_burst_and_recover_once(engine, owner, worker_env):
    email = "q@example.com"
    sub = run(
        worker_env,
        "submit",
        "--user",
        email,
        "--poses",
        ",".join(map(str, owner.pose_ids[:2])),
        "--variations",
        "2",
        "--count",
        "5",
        "--priority",
        "3",
    )
    assert sub.returncode == 0, sub.stderr
    assert json.loads(sub.stdout)["submitted"] == 5
    bad = run(worker_env, "submit", "--user", email, "--poses", "999999")
    assert bad.returncode != 0 and "no pose with id 999999" in bad.stderr
    assert "Traceback" not in bad.stderr
    done = run(worker_env, "worker", "--burst", "--concurrency", "3")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["completed"] == 5
    assert {(r.status, r.poses_completed) for r in statuses(engine)} == {(S.COMPLETED, 4)}
    rec = run(worker_env, "recover", "--once")
    assert rec.returncode == 0, rec.stderr
    assert json.loads(rec.stdout) == {
        "ran": True,
        "requeued": 0,
        "failed": 0,
        "cancelled": 0,
        "dead_workers_requeued": 0,
        "dead_workers_failed": 0,
    }
    assert_rollup_matches(engine)
