"""Queue throughput and pickup latency: posegen vs Procrastinate 3.x vs PgQueuer 1.x, same run.

On PostgreSQL, one worker process per system drains the same workload: N one-pose jobs whose
handler does nothing (posegen: ``POSEGEN_BACKEND=noop``, through the real ``posegen worker``).
Measured per system: submit rate (one job per transaction, and in batches), drain rate (first
pickup to last completion, from the database's own timestamps, so process start-up is not
counted), and pickup latency p50/p95 with an idle worker (jobs submitted one at a time).
Also posegen's drain rate on SQLite. Each system gets its own scratch database, dropped after.
The systems run interleaved (order rotated each repetition) for ``--reps`` repetitions; the
table and the JSON line give the median and min-max of each figure. The rivals are configured
as their documentation recommends for throughput: PgQueuer on asyncpg (``AsyncpgDriver``),
Procrastinate's worker with a connection pool sized to its concurrency (+1 for LISTEN).

    .venv/bin/python bench/queue.py                  # 20,000 jobs each, 3 interleaved reps
    .venv/bin/python bench/queue.py --jobs 2000 --latency-jobs 50      # quicker
"""

from __future__ import annotations

import os
import sys

# ``bench/queue.py`` is named like the standard library's ``queue``: keep ``bench/`` last on the
# import path (a stable sort: nothing else moves) so ``import queue`` finds the real one.
sys.path.sort(key=lambda p: os.path.abspath(p or ".") == os.path.dirname(os.path.abspath(__file__)))

import argparse
import signal
import statistics
import subprocess
import tempfile
import time
from typing import Any

import psycopg

from pgbench_util import (
    DEFAULT_ADMIN_URL,
    emit,
    libpq,
    machine,
    migrate,
    scratch_database,
    server_version,
    table,
)
from queue_rivals import (
    SUBMIT_BATCH,
    analyze,
    latency_figures,
    run_pgqueuer,
    run_procrastinate,
    wait_until,
)


# --- posegen ------------------------------------------------------------------------------------
def posegen_env(url: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env.update(POSEGEN_DATABASE_URL=url, POSEGEN_DATA_DIR=data_dir, POSEGEN_BACKEND="noop")
    return env


def posegen_setup(url: str) -> tuple[Any, Any, Any]:
    from sqlalchemy import insert

    from posegen import accounts
    from posegen.config import load_settings
    from posegen.db.engine import make_engine
    from posegen.db.models import GenerationType, PoseCategory, PoseLibrary, Project
    from posegen.queue import GenerationRequest

    settings = load_settings(database_url=url)
    engine = make_engine(settings)
    user = accounts.create_user(engine, "Bench", "bench@example.com").account.id
    with engine.begin() as conn:
        project = conn.execute(
            insert(Project).values(user_id=user, name="bench").returning(Project.id)
        ).scalar_one()
        cat = conn.execute(
            insert(PoseCategory).values(slug="b", name="b").returning(PoseCategory.id)
        ).scalar_one()
        pose = conn.execute(
            insert(PoseLibrary)
            .values(slug="b", name="b", category_id=cat, keypoints=[[0.5, 0.5]] * 18)
            .returning(PoseLibrary.id)
        ).scalar_one()
    req = GenerationRequest(user, project, GenerationType.LIBRARY, [pose], 1)
    return settings, engine, req


def posegen_submit(
    url: str, settings: Any, engine: Any, req: Any, single: int, bulk: int
) -> dict[str, Any]:
    from posegen import queue

    t0 = time.perf_counter()
    for _ in range(single):
        queue.submit(engine, settings, req)
    single_s = time.perf_counter() - t0
    analyze(url)
    t1 = time.perf_counter()
    for start in range(0, bulk, SUBMIT_BATCH):
        queue.submit_many(engine, settings, [req] * min(SUBMIT_BATCH, bulk - start))
    t2 = time.perf_counter()
    analyze(url)
    return {
        "submit_single_per_s": round(single / single_s) if single else None,
        "submit_batch_per_s": round(bulk / (t2 - t1)) if bulk else None,
    }


def posegen_drain(url: str, jobs: int, concurrency: int, data_dir: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "posegen", "worker", "--burst", "--concurrency", str(concurrency)],
        env=posegen_env(url, data_dir),
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"posegen worker failed: {proc.stderr[-2000:]}")
    from sqlalchemy import create_engine, text

    from posegen.db.engine import normalise_url

    engine = create_engine(normalise_url(url))
    with engine.connect() as conn:
        done, first, last = conn.execute(
            text(
                "SELECT count(*), min(started_at), max(completed_at) FROM pose_generations "
                "WHERE status = 'completed'"
            )
        ).one()
    engine.dispose()
    if done != jobs:
        raise SystemExit(f"posegen completed {done} of {jobs}")
    seconds = (last - first).total_seconds()
    return {
        "drain_per_s": round(jobs / seconds),
        "drain_s": round(seconds, 2),
        "wall_s": round(wall, 2),
    }


def posegen_latency(
    url: str, settings: Any, engine: Any, req: Any, n: int, gap: float, concurrency: int
) -> dict[str, Any]:
    from sqlalchemy import text

    from posegen import queue

    with engine.begin() as conn:
        conn.execute(text("TRUNCATE pose_generations CASCADE"))
    with tempfile.TemporaryDirectory() as data_dir:
        worker = subprocess.Popen(
            [sys.executable, "-m", "posegen", "worker", "--concurrency", str(concurrency)],
            env=posegen_env(url, data_dir),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with engine.connect() as conn:
                wait_until(
                    lambda: (
                        conn.execute(
                            text("SELECT count(*) FROM workers WHERE stopped_at IS NULL")
                        ).scalar_one()
                        > 0
                    ),
                    60,
                    "the posegen worker",
                )
            time.sleep(1.0)  # let it settle into waiting for NOTIFY
            for _ in range(n):
                queue.submit(engine, settings, req)
                time.sleep(gap)
            with engine.connect() as conn:
                wait_until(
                    lambda: (
                        conn.execute(
                            text("SELECT count(*) FROM pose_generations WHERE status = 'completed'")
                        ).scalar_one()
                        == n
                    ),
                    60,
                    "posegen latency jobs",
                )
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(60)
    # created_at is taken before the submit's INSERT; the "started" event right after the claim
    # returned in the worker: pickup as the worker's handler would see it.
    with engine.connect() as conn:
        rows = (
            conn.execute(
                text(
                    "SELECT extract(epoch FROM e.created_at - g.created_at) * 1000 "
                    "FROM pose_generations g JOIN generation_events e "
                    "ON e.generation_id = g.id AND e.kind = 'started'"
                )
            )
            .scalars()
            .all()
        )
    return latency_figures([float(r) for r in rows])


def run_posegen(url: str, args: argparse.Namespace) -> dict[str, Any]:
    migrate(url)
    settings, engine, req = posegen_setup(url)
    try:
        figures = posegen_submit(url, settings, engine, req, args.single, args.jobs - args.single)
        with tempfile.TemporaryDirectory() as data_dir:
            figures |= posegen_drain(url, args.jobs, args.concurrency, data_dir)
        figures |= posegen_latency(
            url, settings, engine, req, args.latency_jobs, args.gap, args.concurrency
        )
    finally:
        engine.dispose()
    return figures


def run_posegen_sqlite(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as data_dir:
        url = f"sqlite:///{data_dir}/bench.db"
        migrate(url)
        settings, engine, req = posegen_setup(url)
        try:
            figures = posegen_submit(url, settings, engine, req, 0, args.jobs)
        finally:
            engine.dispose()
        t0 = time.perf_counter()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "posegen",
                "worker",
                "--burst",
                "--concurrency",
                str(args.concurrency),
            ],
            env=posegen_env(url, data_dir),
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"posegen worker (SQLite) failed: {proc.stderr[-2000:]}")
        from sqlalchemy import create_engine, text

        eng = create_engine(url)
        with eng.connect() as conn:
            done, first, last = conn.execute(
                text(
                    "SELECT count(*), min(started_at), max(completed_at) FROM pose_generations "
                    "WHERE status = 'completed'"
                )
            ).one()
        eng.dispose()
    from datetime import datetime

    seconds = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    if done != args.jobs:
        raise SystemExit(f"posegen (SQLite) completed {done} of {args.jobs}")
    return {
        "submit_batch_per_s": figures["submit_batch_per_s"],
        "drain_per_s": round(args.jobs / seconds),
        "drain_s": round(seconds, 2),
        "wall_s": round(wall, 2),
    }


# --- main ---------------------------------------------------------------------------------------
def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--jobs", type=int, default=20_000, help="jobs each system drains")
    p.add_argument(
        "--single",
        type=int,
        default=None,
        help="of those, submitted one per transaction (default jobs/10, max 2000)",
    )
    p.add_argument("--concurrency", type=int, default=128, help="worker concurrency (all systems)")
    p.add_argument("--pgqueuer-batch", type=int, default=10, help="PgQueuer dequeue batch size")
    p.add_argument("--latency-jobs", type=int, default=200)
    p.add_argument("--gap", type=float, default=0.02, help="seconds between latency submits")
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    p.add_argument("--reps", type=int, default=3, help="interleaved repetitions of every system")
    p.add_argument(
        "--only",
        choices=["posegen", "procrastinate", "pgqueuer", "sqlite"],
        action="append",
        help="run only these (repeatable)",
    )
    args = p.parse_args()
    if args.single is None:
        args.single = min(2000, args.jobs // 10)
    runs = args.only or ["posegen", "procrastinate", "pgqueuer", "sqlite"]

    with psycopg.connect(libpq(args.admin_url)) as conn:
        pg_version = server_version(conn)
        row = conn.execute(
            "SELECT current_setting('max_connections')::int - count(*) FROM pg_stat_activity"
        ).fetchone()
    # Procrastinate's pool is sized to the concurrency: on a shared server, opening more
    # connections than are free would lock everyone else out ("too many clients").
    free = int(row[0]) if row else 0
    if "procrastinate" in runs and args.concurrency + 1 + 20 > free:
        raise SystemExit(
            f"only {free} free connections on the server; Procrastinate's pool needs "
            f"--concurrency + 1 = {args.concurrency + 1} plus headroom: lower --concurrency"
        )
    load_start = round(os.getloadavg()[0], 2)
    systems = {"posegen": run_posegen, "procrastinate": run_procrastinate, "pgqueuer": run_pgqueuer}
    order = [n for n in ("posegen", "procrastinate", "pgqueuer", "sqlite") if n in runs]
    samples: dict[str, list[dict[str, Any]]] = {}
    loads: list[float] = []
    for rep in range(args.reps):
        # Interleaved and rotated: no system always runs first (cold caches) or last (a busier
        # machine), and a burst of load from other work hits every system alike.
        k = rep % len(order)
        for name in order[k:] + order[:k]:
            print(f"rep {rep + 1}/{args.reps}: {name} ({args.jobs} jobs)...", flush=True)
            if name == "sqlite":
                samples.setdefault("posegen_sqlite", []).append(run_posegen_sqlite(args))
                continue
            with scratch_database(args.admin_url, f"bench_queue_{name}") as url:
                samples.setdefault(name, []).append(systems[name](url, args))
        loads.append(round(os.getloadavg()[0], 2))
    results = {name: spread(runs_) for name, runs_ in samples.items()}

    def cell(f: dict[str, Any], key: str) -> str:
        v = f.get(key)
        return "-" if v is None else f"{v['median']} ({v['min']}-{v['max']})"

    rows = [
        (
            "system (median, min-max)",
            "submit 1/tx /s",
            "submit batch /s",
            "drain /s",
            "pickup p50 ms",
            "pickup p95 ms",
        )
    ]
    for name, f in results.items():
        rows.append(
            (
                name,
                cell(f, "submit_single_per_s"),
                cell(f, "submit_batch_per_s"),
                cell(f, "drain_per_s"),
                cell(f, "pickup_p50_ms"),
                cell(f, "pickup_p95_ms"),
            )
        )
    print()
    table(rows)
    ratios: dict[str, float] = {}
    ours = results.get("posegen")

    def med(name: str, key: str) -> float:
        return float(results[name][key]["median"])

    for other in ("procrastinate", "pgqueuer"):
        if ours and other in results:
            ratios[f"drain_vs_{other}"] = round(
                med("posegen", "drain_per_s") / med(other, "drain_per_s"), 2
            )
            ratios[f"submit_single_vs_{other}"] = round(
                med("posegen", "submit_single_per_s") / med(other, "submit_single_per_s"), 2
            )
            ratios[f"pickup_p50_vs_{other}"] = round(
                med("posegen", "pickup_p50_ms") / med(other, "pickup_p50_ms"), 2
            )
    targets: dict[str, Any] = {}
    if ours and "pgqueuer" in results:
        targets["drain_at_least_1.5x_pgqueuer"] = ratios["drain_vs_pgqueuer"] >= 1.5
        targets["submit_single_at_least_pgqueuer"] = ratios["submit_single_vs_pgqueuer"] >= 1.0
    peers = [n for n in ("procrastinate", "pgqueuer") if n in results]
    if ours and peers:
        fastest = min(med(n, "pickup_p50_ms") for n in peers)
        targets["pickup_p50_no_slower_than_fastest_peer"] = (
            med("posegen", "pickup_p50_ms") <= fastest
        )
    print()
    for k, v in ratios.items():
        print(f"{k}: {v}x")
    for k, v in targets.items():
        print(f"target {k}: {'met' if v else 'MISSED'}")
    emit(
        {
            "benchmark": "queue",
            "jobs": args.jobs,
            "reps": args.reps,
            "concurrency": args.concurrency,
            "pgqueuer_batch": args.pgqueuer_batch,
            "pgqueuer_driver": "asyncpg",
            "procrastinate_pool": args.concurrency + 1,
            "postgres": pg_version,
            **machine(),
            "loadavg_1m": load_start,
            "loadavg_1m_after_each_rep": loads,
            "results": results,
            "ratios": ratios,
            "targets": targets,
        }
    )


def spread(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Each figure's median, min and max over the repetitions."""
    out: dict[str, Any] = {}
    for key in runs[0]:
        values = [r[key] for r in runs if r.get(key) is not None]
        if not values or not isinstance(values[0], (int, float)):
            continue
        out[key] = {
            "median": round(statistics.median(values), 2),
            "min": min(values),
            "max": max(values),
            "runs": values,
        }
    return out


if __name__ == "__main__":
    main()
