"""Procrastinate 3.x and PgQueuer 1.x through the same workload as posegen, for
``bench/queue.py`` (which runs their workers as subprocesses of this file), and the helpers the
three share. Bench-only dependencies: ``pip install 'posegen[bench]'``.

Both report from their own tables' timestamps (``procrastinate_events``, ``pgqueuer_log``):
drain from the first pickup to the last completion, pickup as start minus enqueue.
"""

from __future__ import annotations

import os
import sys

# ``bench/queue.py`` is named like the standard library's ``queue``: keep ``bench/`` last on the
# import path (a stable sort: nothing else moves) so ``import queue`` finds the real one.
sys.path.sort(key=lambda p: os.path.abspath(p or ".") == os.path.dirname(os.path.abspath(__file__)))

import argparse
import asyncio
import contextlib
import signal
import sqlite3
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any

import psycopg

from pgbench_util import libpq

SCRIPT = Path(__file__).resolve()
SUBMIT_BATCH = 500


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


def latency_figures(ms: list[float]) -> dict[str, float]:
    return {
        "pickup_p50_ms": round(statistics.median(ms), 2),
        "pickup_p95_ms": round(percentile(ms, 0.95), 2),
    }


def analyze(url: str) -> None:
    """Refresh planner statistics, as autovacuum would on a live system.

    On a database created seconds ago, foreign-key checks cached their plans while the tables
    were empty (sequential scans) and keep them until statistics change; without this, the
    bulk phase of every system measures that artefact instead of the queue.
    """
    if url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(url.removeprefix("sqlite:///"))) as db:
            db.execute("ANALYZE")
        return
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute("ANALYZE")


def wait_until(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.05)


# --- Procrastinate 3.x --------------------------------------------------------------------------
def procrastinate_app(url: str, pool_size: int | None = None) -> tuple[Any, Any]:
    """``pool_size``: the worker's pool, sized to its concurrency (plus one for its LISTEN), as
    Procrastinate's docs advise; psycopg_pool's default of 4 would serialise 128 jobs on 4
    connections. Submitters keep the default."""
    import procrastinate

    pool = {} if pool_size is None else {"max_size": pool_size}
    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=libpq(url), **pool))

    @app.task(name="noop", queue="bench")
    async def noop(t: float) -> None:
        return None

    return app, noop


async def procrastinate_submit(url: str, single: int, bulk: int) -> dict[str, Any]:
    app, noop = procrastinate_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        t0 = time.perf_counter()
        for _ in range(single):
            await noop.defer_async(t=time.time())
        single_s = time.perf_counter() - t0
        analyze(url)
        t1 = time.perf_counter()
        for start in range(0, bulk, SUBMIT_BATCH):
            k = min(SUBMIT_BATCH, bulk - start)
            await noop.batch_defer_async(*[{"t": time.time()}] * k)
        t2 = time.perf_counter()
    analyze(url)
    return {
        "submit_single_per_s": round(single / single_s) if single else None,
        "submit_batch_per_s": round(bulk / (t2 - t1)) if bulk else None,
    }


async def procrastinate_latency_submit(url: str, n: int, gap: float) -> None:
    app, noop = procrastinate_app(url)
    async with app.open_async():
        for _ in range(n):
            await noop.defer_async(t=time.time())
            await asyncio.sleep(gap)


def procrastinate_worker(url: str, concurrency: int, drain: bool) -> None:
    app, _ = procrastinate_app(url, pool_size=concurrency + 1)

    async def main() -> None:
        async with app.open_async():
            await app.run_worker_async(
                queues=["bench"], concurrency=concurrency, wait=not drain, delete_jobs="never"
            )

    asyncio.run(main())


def log_figures(url: str, span_sql: str, latency_sql: str) -> tuple[float, list[float]]:
    """(drain span in s, pickup latencies in ms) read from a queue's own event log."""
    with psycopg.connect(libpq(url)) as conn:
        row = conn.execute(span_sql).fetchone()  # type: ignore[arg-type]
        lat = conn.execute(latency_sql).fetchall()  # type: ignore[arg-type]
    assert row is not None
    return float(row[0]), [float(r[0]) for r in lat]


def drain_then_latency(
    url: str,
    args: argparse.Namespace,
    name: str,
    figures: dict[str, Any],
    worker_cmd: list[str],
    read_log: Any,
    reset_sql: str,
    latency_submit: Any,
) -> dict[str, Any]:
    """The same two phases for every rival: drain what was submitted with a worker process in
    drain mode, then measure pickup latency with a live worker waiting on LISTEN."""
    t0 = time.perf_counter()
    subprocess.run([*worker_cmd, "--drain"], check=True, capture_output=True)
    wall = time.perf_counter() - t0
    seconds, done = read_log(url)
    if len(done) != args.jobs:
        raise SystemExit(f"{name} picked {len(done)} of {args.jobs} jobs")
    figures |= {
        "drain_per_s": round(args.jobs / seconds),
        "drain_s": round(seconds, 2),
        "wall_s": round(wall, 2),
    }
    with psycopg.connect(libpq(url), autocommit=True) as conn:
        conn.execute(reset_sql)  # type: ignore[arg-type]
    worker = subprocess.Popen(worker_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(3.0)  # start-up, then waiting on LISTEN
        asyncio.run(latency_submit(url, args.latency_jobs, args.gap))
        time.sleep(1.0)
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(60)
    _, lat = read_log(url)
    if len(lat) != args.latency_jobs:
        raise SystemExit(f"{name} picked {len(lat)} of {args.latency_jobs} latency jobs")
    return figures | latency_figures(lat)


def procrastinate_events(url: str) -> tuple[float, list[float]]:
    """Span from first start to last success, and deferred->started latencies."""
    return log_figures(
        url,
        "SELECT extract(epoch FROM max(at) FILTER (WHERE type = 'succeeded') "
        "- min(at) FILTER (WHERE type = 'started')) FROM procrastinate_events",
        "SELECT extract(epoch FROM s.at - d.at) * 1000 FROM procrastinate_events d "
        "JOIN procrastinate_events s ON s.job_id = d.job_id AND s.type = 'started' "
        "WHERE d.type = 'deferred'",
    )


def run_procrastinate(url: str, args: argparse.Namespace) -> dict[str, Any]:
    figures = asyncio.run(procrastinate_submit(url, args.single, args.jobs - args.single))
    worker_cmd = [
        sys.executable,
        str(SCRIPT),
        "--role",
        "procrastinate",
        "--url",
        url,
        "--concurrency",
        str(args.concurrency),
    ]
    return drain_then_latency(
        url,
        args,
        "procrastinate",
        figures,
        worker_cmd,
        procrastinate_events,
        "TRUNCATE procrastinate_jobs CASCADE",
        procrastinate_latency_submit,
    )


# --- PgQueuer 1.x -------------------------------------------------------------------------------
async def pgqueuer_queries(url: str) -> tuple[Any, Any]:
    """PgQueuer on asyncpg (``AsyncpgDriver``), the driver its documentation recommends; its
    psycopg driver drained about 2.9x slower here."""
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    conn = await asyncpg.connect(libpq(url))
    return conn, Queries(AsyncpgDriver(conn))


async def pgqueuer_submit(url: str, single: int, bulk: int) -> dict[str, Any]:
    conn, queries = await pgqueuer_queries(url)
    try:
        await queries.install()
        t0 = time.perf_counter()
        for _ in range(single):
            await queries.enqueue("noop", str(time.time()).encode(), 0)
        single_s = time.perf_counter() - t0
        analyze(url)
        t1 = time.perf_counter()
        for start in range(0, bulk, SUBMIT_BATCH):
            k = min(SUBMIT_BATCH, bulk - start)
            await queries.enqueue(["noop"] * k, [str(time.time()).encode()] * k, [0] * k)
        t2 = time.perf_counter()
    finally:
        await conn.close()
    analyze(url)
    return {
        "submit_single_per_s": round(single / single_s) if single else None,
        "submit_batch_per_s": round(bulk / (t2 - t1)) if bulk else None,
    }


async def pgqueuer_latency_submit(url: str, n: int, gap: float) -> None:
    conn, queries = await pgqueuer_queries(url)
    try:
        for _ in range(n):
            await queries.enqueue("noop", str(time.time()).encode(), 0)
            await asyncio.sleep(gap)
    finally:
        await conn.close()


def pgqueuer_worker(url: str, batch_size: int, drain: bool) -> None:
    from pgqueuer import QueueManager
    from pgqueuer.domain.types import QueueExecutionMode

    async def main() -> None:
        conn, queries = await pgqueuer_queries(url)
        try:
            qm = QueueManager(queries)

            @qm.entrypoint("noop")
            async def noop(job: Any) -> None:
                return None

            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, qm.shutdown.set)
            mode = QueueExecutionMode.drain if drain else QueueExecutionMode.continuous
            await qm.run(batch_size=batch_size, mode=mode)
        finally:
            await conn.close()

    asyncio.run(main())


def pgqueuer_log(url: str) -> tuple[float, list[float]]:
    """Span from first pick to last success, and queued->picked latencies."""
    return log_figures(
        url,
        "SELECT extract(epoch FROM max(created) FILTER (WHERE status = 'successful') "
        "- min(created) FILTER (WHERE status = 'picked')) FROM pgqueuer_log",
        "SELECT extract(epoch FROM p.created - q.created) * 1000 FROM pgqueuer_log q "
        "JOIN pgqueuer_log p ON p.job_id = q.job_id AND p.status = 'picked' "
        "WHERE q.status = 'queued'",
    )


def run_pgqueuer(url: str, args: argparse.Namespace) -> dict[str, Any]:
    figures = asyncio.run(pgqueuer_submit(url, args.single, args.jobs - args.single))
    worker_cmd = [
        sys.executable,
        str(SCRIPT),
        "--role",
        "pgqueuer",
        "--url",
        url,
        "--pgqueuer-batch",
        str(args.pgqueuer_batch),
    ]
    return drain_then_latency(
        url,
        args,
        "pgqueuer",
        figures,
        worker_cmd,
        pgqueuer_log,
        "TRUNCATE pgqueuer_log",
        pgqueuer_latency_submit,
    )


def main() -> None:
    """Worker subprocess entry point: ``--role procrastinate|pgqueuer --url URL [--drain]``."""
    p = argparse.ArgumentParser(description="queue benchmark worker for another system")
    p.add_argument("--role", choices=["procrastinate", "pgqueuer"], required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--concurrency", type=int, default=128)
    p.add_argument("--pgqueuer-batch", type=int, default=10)
    p.add_argument("--drain", action="store_true")
    args = p.parse_args()
    if args.role == "procrastinate":
        procrastinate_worker(args.url, args.concurrency, args.drain)
    else:
        pgqueuer_worker(args.url, args.pgqueuer_batch, args.drain)


if __name__ == "__main__":
    main()
