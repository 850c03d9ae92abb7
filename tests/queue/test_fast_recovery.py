"""Recovery in seconds: a dead worker's generations are claimed again by a living one long before
their lease (60 s here) would expire, on both engines, with real worker processes and SIGKILL,
a dropped PostgreSQL session and real ``flock`` locks; fencing keeps it exactly-once."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from queue_helpers import (
    assert_rollup_matches,
    completed_result,
    events_of,
    pose_keys,
    row,
    wait_for,
)
from sqlalchemy import Engine, select, text, update

from posegen import queue
from posegen.config import Settings
from posegen.db.models import GenerationStatus, PoseGeneration
from posegen.db.models import Worker as WorkerRow
from posegen.queue import ClaimedJob, liveness
from posegen.queue.dead_workers import recover_dead_workers
from posegen.worker import JobContext, Worker, registry

S = GenerationStatus
LEASE = 60.0
POSEGEN = [sys.executable, "-m", "posegen", "worker"]


@pytest.fixture
def slow_lease(tuned: Any) -> Settings:
    """A production lease: anything recovered within seconds was recovered by the fast path."""
    s: Settings = tuned(lease_seconds=LEASE, dead_worker_check_seconds=0.5)
    return s


def _workers(engine: Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return {r.id: r for r in conn.execute(select(WorkerRow))}


def _fake_dead_worker(engine: Engine, settings: Settings, kind: str | None) -> str:
    """A registered worker that holds no lock (as if it had died), sharing this database."""
    wid = f"dead:{uuid.uuid4().hex[:8]}"
    registry.register(engine, wid, 4, kind)
    if kind == liveness.FLOCK:
        folder = liveness.lock_dir(engine)
        assert folder is not None
        os.close(liveness.hold_flock(liveness.lock_file(folder, wid)))  # file left, unlocked
    return wid


def _statuses(engine: Engine, ids: list[int]) -> list[tuple[str, str | None, int]]:
    with engine.connect() as conn:
        return [
            (r.status, r.leased_by, r.attempts)
            for r in conn.execute(
                select(PoseGeneration.status, PoseGeneration.leased_by, PoseGeneration.attempts)
                .where(PoseGeneration.id.in_(ids))
                .order_by(PoseGeneration.id)
            )
        ]


# --- the probe and the requeue, in-process -----------------------------------------------------


def test_dead_worker_generations_are_requeued_and_the_attempt_counts(engine, slow_lease, owner):
    s = slow_lease
    kind = liveness.FLOCK if engine.dialect.name == "sqlite" else liveness.PG_ADVISORY
    dead = _fake_dead_worker(engine, s, kind)
    ids = [queue.submit(engine, s, owner.request()).generation_id for _ in range(3)]
    claimed = queue.claim(engine, s, dead, 3)
    assert len(claimed) == 3
    # the last one has spent its attempts: it ends failed instead of looping forever
    with engine.begin() as conn:
        conn.execute(
            update(PoseGeneration).where(PoseGeneration.id == ids[2]).values(max_attempts=1)
        )

    out = recover_dead_workers(engine, s, "runner")
    assert (out.requeued, out.failed) == (2, 1)
    for gen in ids[:2]:
        r = row(engine, gen)
        assert (r.status, r.leased_by, r.attempts, r.error_kind) == (
            S.PENDING,
            None,
            1,
            "worker-lost",
        )
        assert r.run_after <= dt.datetime.now(dt.UTC)  # no backoff: claimable at once
        assert [k for k, _ in events_of(engine, gen)][-1] == "retrying"
    failed = row(engine, ids[2])
    assert (failed.status, failed.error_kind) == (S.FAILED, "worker-lost")
    # a second pass finds nothing; a new claim works as usual
    assert recover_dead_workers(engine, s, "runner").requeued == 0
    assert len(queue.claim(engine, s, "next", 5)) == 2
    assert_rollup_matches(engine)


def test_posegen_recover_once_requeues_a_dead_workers_generations(
    engine, slow_lease, owner, cli_env
):
    s = slow_lease
    kind = liveness.FLOCK if engine.dialect.name == "sqlite" else liveness.PG_ADVISORY
    dead = _fake_dead_worker(engine, s, kind)
    gen = queue.submit(engine, s, owner.request()).generation_id
    assert len(queue.claim(engine, s, dead, 1)) == 1
    rec = subprocess.run(
        [sys.executable, "-m", "posegen", "recover", "--once"],
        env=cli_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rec.returncode == 0, rec.stderr
    out = json.loads(rec.stdout)
    assert (out["requeued"], out["dead_workers_requeued"]) == (0, 1)  # the lease is still live
    assert row(engine, gen).status == S.PENDING


def test_after_a_postgres_restart_old_workers_get_time_to_take_their_locks_back(
    engine, slow_lease, owner, monkeypatch
):
    """Every session lock vanishes in a restart: a worker registered before the server started
    is not judged until the grace has passed; one registered since is judged at once."""
    if engine.dialect.name == "sqlite":
        pytest.skip("a PostgreSQL restart")
    from posegen.queue import dead_workers

    s = slow_lease
    old, new = (_fake_dead_worker(engine, s, liveness.PG_ADVISORY) for _ in range(2))
    with engine.begin() as conn:
        conn.execute(
            update(WorkerRow)
            .where(WorkerRow.id == old)
            .values(started_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
        )
    gens = [queue.submit(engine, s, owner.request()).generation_id for _ in range(2)]
    queue.claim(engine, s, old, 1)
    queue.claim(engine, s, new, 1)
    # as if the server had started a moment ago
    monkeypatch.setattr(dead_workers, "PG_RESTART_GRACE_SECONDS", 10.0 * 365 * 24 * 3600)
    assert recover_dead_workers(engine, s, "runner").requeued == 1
    assert [(st, by) for st, by, _ in _statuses(engine, gens)] == [
        (S.PROCESSING, old),
        (S.PENDING, None),
    ]
    monkeypatch.setattr(dead_workers, "PG_RESTART_GRACE_SECONDS", 0.0)
    assert recover_dead_workers(engine, s, "runner").requeued == 1
    assert row(engine, gens[0]).status == S.PENDING


def test_workers_without_a_liveness_lock_are_left_to_their_lease(engine, slow_lease, owner):
    """Behind PgBouncer (or with the check off) a worker registers no lock: never judged dead."""
    s = slow_lease
    unlocked = _fake_dead_worker(engine, s, None)
    unknown = _fake_dead_worker(
        engine, s, liveness.FLOCK if engine.dialect.name == "sqlite" else None
    )
    if engine.dialect.name == "sqlite":
        folder = liveness.lock_dir(engine)
        assert folder is not None
        liveness.lock_file(folder, unknown).unlink()  # no lock file: not proof of death
    gens = [queue.submit(engine, s, owner.request()).generation_id for _ in range(2)]
    queue.claim(engine, s, unlocked, 1)
    queue.claim(engine, s, unknown, 1)
    assert recover_dead_workers(engine, s, "runner").requeued == 0
    assert [st for st, _, _ in _statuses(engine, gens)] == [S.PROCESSING, S.PROCESSING]


def test_a_living_worker_is_never_taken_for_dead(engine, slow_lease, owner):
    s = slow_lease
    gate = threading.Event()
    started = threading.Event()

    def handler(job: ClaimedJob, ctx: JobContext) -> None:
        started.set()
        gate.wait(20)

    w = Worker(s, engine, handler, concurrency=1, run_recovery=False)
    t = threading.Thread(target=w.run, daemon=True)
    t.start()
    try:
        gen = queue.submit(engine, s, owner.request()).generation_id
        assert started.wait(20)
        assert _workers(engine)[w.id].liveness in (liveness.FLOCK, liveness.PG_ADVISORY)
        for _ in range(3):
            assert recover_dead_workers(engine, s, "runner").requeued == 0
            time.sleep(0.2)
        assert row(engine, gen).leased_by == w.id
    finally:
        gate.set()
        w.stop()
        t.join(20)
    assert not t.is_alive()
    if engine.dialect.name == "sqlite":
        folder = liveness.lock_dir(engine)
        assert folder is not None and not liveness.lock_file(folder, w.id).exists()


def test_pgbouncer_mode_holds_no_session_lock(engine, slow_lease, owner):
    if engine.dialect.name == "sqlite":
        pytest.skip("LISTEN/NOTIFY and session locks are PostgreSQL's")
    s = slow_lease.model_copy(update={"listen_notify": False})
    w = Worker(s, engine, lambda job, ctx: None, concurrency=1, burst=True)
    w.run()
    assert _workers(engine)[w.id].liveness is None


# --- flock across real processes -----------------------------------------------------------------

HOLD = """
import sys, time
from pathlib import Path
from posegen.queue import liveness
liveness.hold_flock(Path(sys.argv[1]))
print("held", flush=True)
time.sleep(120)
"""


def test_flock_tells_a_killed_process_from_a_living_one(tmp_path: Path) -> None:
    path = tmp_path / "w.lock"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "held"
        with liveness.probe_flock(path) as dead:
            assert dead is False
        assert path.exists()
        child.send_signal(signal.SIGKILL)
        child.wait(10)
        with liveness.probe_flock(path) as dead:
            assert dead is True
        assert not path.exists()  # the probe removed the dead worker's file
        with liveness.probe_flock(path) as dead:
            assert dead is False  # no file: unknown, never "dead"
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(10)
        if child.stdout:
            child.stdout.close()


# --- real worker processes, SIGKILL -----------------------------------------------------------


class Proc:
    def __init__(self, env: dict[str, str], tmp: Path, *args: str, **extra: str) -> None:
        name = uuid.uuid4().hex[:8]
        self.err_path = tmp / f"{name}.err"
        with (tmp / f"{name}.out").open("w") as out, self.err_path.open("w") as err:
            self.popen = subprocess.Popen(
                [*POSEGEN, *args], env={**env, **extra}, stdout=out, stderr=err
            )
        self.pid = self.popen.pid

    def close(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
        self.popen.wait(10)


def _env(cli_env: dict[str, str]) -> dict[str, str]:
    return {
        **cli_env,
        "POSEGEN_BACKEND": "noop",
        "POSEGEN_LEASE_SECONDS": str(LEASE),
        "POSEGEN_RECOVERY_INTERVAL_SECONDS": "30",
        "POSEGEN_DEAD_WORKER_CHECK_SECONDS": "0.5",
        "POSEGEN_POLL_INTERVAL_SECONDS": "0.5",
        "POSEGEN_RETRY_BACKOFF_BASE_SECONDS": "5",
    }


def test_sigkill_of_a_worker_holding_four_generations_resumes_in_seconds(
    engine, slow_lease, owner, cli_env, tmp_path
):
    s = slow_lease
    ids = [queue.submit(engine, s, owner.request(poses=2)).generation_id for _ in range(4)]
    env = _env(cli_env)
    victim = Proc(env, tmp_path, "--concurrency", "4", POSEGEN_NOOP_POSE_SECONDS="30")
    survivor: Proc | None = None
    try:
        tag = f":{victim.pid}:"
        wait_for(
            lambda: all(
                st == S.PROCESSING and tag in (by or "") for st, by, _ in _statuses(engine, ids)
            ),
            30,
        )
        survivor = Proc(env, tmp_path, "--concurrency", "4", POSEGEN_NOOP_POSE_SECONDS="0.05")
        spid = f":{survivor.pid}:"
        wait_for(lambda: any(spid in w for w in _workers(engine)), 30)
        time.sleep(1.0)  # its session lock and first checks are under way
        victim.popen.send_signal(signal.SIGKILL)
        victim.popen.wait(10)
        killed = time.monotonic()
        # claimed again by the survivor within seconds, with a 60 s lease
        wait_for(
            lambda: all(
                spid in (by or "") or st == S.COMPLETED for st, by, _ in _statuses(engine, ids)
            ),
            15,
            0.02,
        )
        took = time.monotonic() - killed
        assert took < 15 < LEASE
        wait_for(lambda: all(st == S.COMPLETED for st, _, _ in _statuses(engine, ids)), 30)
    finally:
        victim.close()
        if survivor is not None:
            survivor.close()
    for gen in ids:
        r = row(engine, gen)
        assert (r.status, r.poses_completed, r.attempts) == (S.COMPLETED, 2, 2)
        assert pose_keys(engine, gen) == sorted(f"p{p}-v0" for p in owner.pose_ids[:2])
        retry = [d for k, d in events_of(engine, gen) if k == "retrying"]
        assert len(retry) == 1 and retry[0]["errorKind"] == "worker-lost"
    assert_rollup_matches(engine)


# --- a living worker whose session is dropped (PostgreSQL) --------------------------------------


def _session_pid(engine: Engine, worker_id: str) -> int | None:
    with engine.connect() as conn:
        pid = conn.execute(
            text(
                "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
                "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
                "AND ((classid::bigint << 32) | objid::bigint) = hashtextextended(:w, 0)"
            ),
            {"w": worker_id},
        ).scalar()
    return None if pid is None else int(pid)


def test_a_dropped_session_moves_the_work_and_fences_the_old_worker(engine, slow_lease, owner):
    if engine.dialect.name == "sqlite":
        pytest.skip(
            "pg_terminate_backend is PostgreSQL's; SQLite's flock dies only with its process"
        )
    s = slow_lease
    gen = queue.submit(engine, s, owner.request(poses=2)).generation_id
    first_pose, go_on = threading.Event(), threading.Event()
    old_writes: list[str] = []

    def old_handler(job: ClaimedJob, ctx: JobContext) -> None:
        for pose_id, index, key in job.variation_keys():
            if key in job.done_keys:
                continue
            ctx.record_pose(completed_result(pose_id, index))
            old_writes.append(key)
            first_pose.set()
            go_on.wait(30)

    def new_handler(job: ClaimedJob, ctx: JobContext) -> None:
        for pose_id, index, key in job.variation_keys():
            if key not in job.done_keys:
                ctx.record_pose(completed_result(pose_id, index))

    old = Worker(s, engine, old_handler, concurrency=1, run_recovery=False)
    t_old = threading.Thread(target=old.run, daemon=True)
    t_old.start()
    new: Worker | None = None
    t_new: threading.Thread | None = None
    try:
        assert first_pose.wait(20)
        wait_for(lambda: row(engine, gen).poses_completed == 1, 10)
        pid = _session_pid(engine, old.id)
        assert pid is not None
        with engine.connect() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        dropped = time.monotonic()
        new = Worker(s, engine, new_handler, concurrency=1)
        t_new = threading.Thread(target=new.run, daemon=True)
        t_new.start()
        wait_for(lambda: row(engine, gen).status == S.COMPLETED, 20)
        assert time.monotonic() - dropped < 20 < LEASE
        # the old worker lives on, gets its session lock back, and its late write is refused
        wait_for(lambda: _session_pid(engine, old.id) not in (None, pid), 10)
        go_on.set()
        wait_for(lambda: old.stats["lease-lost"] == 1, 10)
    finally:
        go_on.set()
        old.stop()
        if new is not None:
            new.stop()
        t_old.join(20)
        if t_new is not None:
            t_new.join(20)
    r = row(engine, gen)
    assert (r.status, r.poses_completed, r.attempts) == (S.COMPLETED, 2, 2)
    keys = sorted(f"p{p}-v0" for p in owner.pose_ids[:2])
    assert pose_keys(engine, gen) == keys  # one row per pose: no duplicate
    assert old_writes[:1] == keys[:1]
    assert_rollup_matches(engine)
