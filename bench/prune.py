"""The queue's throughput while ``posegen prune`` deletes a million rows, against the same
queue with no prune, in the same run (interleaved, medians of ``--reps``).

Each repetition seeds old finished generations straight in SQL (``generate_series`` on
PostgreSQL, a recursive CTE on SQLite), three events and one result row each, so a prune with
``POSEGEN_RETENTION_EVENTS_DAYS=7`` and ``POSEGEN_RETENTION_RESULTS_DAYS=30`` deletes
``generations * 5`` rows (the events in keyset batches, then the generations with their results
by cascade). Then two phases of the same length, in alternating order: the queue loop alone
(baseline), and the queue loop while the real ``posegen prune`` runs as a separate process.
The queue loop drives the queue API directly in one thread: submit one generation (its own
transaction), claim it, finish it; its throughput is those cycles per second.

    .venv/bin/python bench/prune.py                                 # PostgreSQL, 1M rows
    .venv/bin/python bench/prune.py --engine sqlite --generations 20000
"""

from __future__ import annotations

import os
import sys

# ``bench/queue.py`` shadows the standard library's ``queue`` (psycopg imports it): keep
# ``bench/`` last on the import path, as bench/queue.py does.
sys.path.sort(key=lambda p: os.path.abspath(p or ".") == os.path.dirname(os.path.abspath(__file__)))

import argparse
import datetime as dt
import statistics
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, insert, text

from pgbench_util import DEFAULT_ADMIN_URL, emit, machine, migrate, scratch_database, table
from posegen import accounts, queue
from posegen.config import Settings, load_settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, PoseCategory, PoseLibrary, Project
from posegen.db.types import UTCDateTime, utcnow
from posegen.queue import GenerationRequest

EVENTS_PER_GENERATION = 3


def setup(url: str, data_dir: str) -> tuple[Settings, Engine, GenerationRequest]:
    settings = load_settings(database_url=url, data_dir=Path(data_dir), backend="noop")
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
    return settings, engine, GenerationRequest(user, project, GenerationType.LIBRARY, [pose], 1)


def series(engine: Engine, n: int) -> str:
    if engine.dialect.name == "postgresql":
        return f"SELECT i FROM generate_series(1, {n}) AS i"
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {n}) "
        "SELECT i FROM s"
    )


def seed(engine: Engine, req: GenerationRequest, generations: int) -> float:
    """Old finished generations with events and result rows; returns the seconds it took.
    The previous repetition's queue rows go first, so ids still grow with time."""
    t0 = time.perf_counter()
    old = bindparam("old", utcnow() - dt.timedelta(days=60), type_=UTCDateTime())
    pg = engine.dialect.name == "postgresql"
    folder = "lpad((g.id / 1000)::text, 6, '0')" if pg else "substr('000000' || (g.id / 1000), -6)"
    with engine.begin() as conn:
        conn.execute(text("DELETE FROM pose_generations"))
        conn.execute(
            text(
                "INSERT INTO pose_generations (user_id, project_id, type, selected_pose_ids, "
                "variations, total_expected_poses, width, height, status, priority, "
                "poses_completed, poses_failed, attempts, max_attempts, run_after, lease_token, "
                "cancel_requested, created_at, started_at, completed_at, reserved_bytes, "
                "credit_charged, credit_refunded, backend, kept) "
                "SELECT :u, :p, 'library', '[1]', 1, 1, 512, 512, 'completed', 0, 1, 0, 1, 3, "
                ":old, 1, false, :old, :old, :old, 0, 0, 0, 'posemap', false "
                f"FROM ({series(engine, generations)}) AS s"
            ).bindparams(old, u=req.user_id, p=req.project_id)
        )
        conn.execute(
            text(
                "INSERT INTO generation_events (generation_id, kind, data, created_at) "
                "SELECT g.id, 'pose', '{}', g.created_at FROM pose_generations g "
                f"CROSS JOIN ({series(engine, EVENTS_PER_GENERATION)}) AS s ORDER BY g.id"
            )
        )
        conn.execute(
            text(
                "INSERT INTO generated_poses (generation_id, variation_key, variation_index, "
                "status, image_path, thumbnail_path, bytes, created_at) "
                f"SELECT g.id, 'p1-v0', 0, 'completed', {folder} || '/' || g.id || '/p1-v0.png', "
                f"{folder} || '/' || g.id || '/p1-v0.thumb.jpg', 1000, g.created_at "
                "FROM pose_generations g"
            )
        )
    if pg:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(
                text("VACUUM ANALYZE pose_generations, generation_events, generated_poses")
            )
    return time.perf_counter() - t0


class QueueLoop:
    """Submit, claim, finish, one generation at a time, until stopped."""

    def __init__(self, settings: Settings, engine: Engine, req: GenerationRequest) -> None:
        self.settings, self.engine, self.req = settings, engine, req
        self.done = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            queue.submit(self.engine, self.settings, self.req)
            jobs = queue.claim(self.engine, self.settings, "bench", 1)
            if jobs:
                queue.finish_many(self.engine, [(j.id, j.lease_token) for j in jobs])
                self.done += len(jobs)


def measure(
    settings: Settings,
    engine: Engine,
    req: GenerationRequest,
    seconds: float | None,
    prune_env: dict[str, str] | None,
) -> dict[str, Any]:
    loop = QueueLoop(settings, engine, req)
    thread = threading.Thread(target=loop.run)
    t0 = time.perf_counter()
    thread.start()
    out: dict[str, Any] = {}
    if prune_env is None:
        time.sleep(seconds or 0)
    else:
        proc = subprocess.run(
            [sys.executable, "-m", "posegen", "prune", "--json"],
            env=prune_env,
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise SystemExit(f"prune failed: {proc.stderr[-2000:]}")
        out["report"] = proc.stdout.strip().splitlines()[-1]
    loop.stop.set()
    thread.join()
    wall = time.perf_counter() - t0
    out.update(seconds=round(wall, 2), cycles=loop.done, per_s=round(loop.done / wall, 1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument(
        "--generations",
        type=int,
        default=200_000,
        help="old generations seeded per repetition (rows pruned: 5 per generation)",
    )
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        if args.engine == "postgresql":
            ctx = scratch_database(args.admin_url, "bench_prune")
            url = ctx.__enter__()
        else:
            ctx = None
            url = f"sqlite:///{tmp}/bench.db"
        try:
            migrate(url)
            settings, engine, req = setup(url, tmp)
            env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
            env.update(
                POSEGEN_DATABASE_URL=url,
                POSEGEN_DATA_DIR=tmp,
                POSEGEN_RETENTION_EVENTS_DAYS="7",
                POSEGEN_RETENTION_RESULTS_DAYS="30",
            )
            base, during, prune_s, seeds = [], [], [], []
            for rep in range(args.reps):
                seeds.append(seed(engine, req, args.generations))
                # Alternate which phase goes first, so neither always gets the fresher cache.
                order = ("prune", "base") if rep % 2 == 0 else ("base", "prune")
                pruned: dict[str, Any] = {}
                for phase in order:
                    if phase == "prune":
                        pruned = measure(settings, engine, req, None, env)
                    else:
                        # As long as the prune took (or the last one did; 30 s at first).
                        length = prune_s[-1] if prune_s else 30.0
                        base.append(measure(settings, engine, req, length, None)["per_s"])
                    if pruned and phase == "prune":
                        prune_s.append(pruned["seconds"])
                        during.append(pruned["per_s"])
                print(
                    f"rep {rep}: seed {seeds[-1]:.1f}s, prune {pruned['seconds']}s "
                    f"{pruned['report']}; queue {base[-1]}/s alone, {during[-1]}/s pruning",
                    flush=True,
                )
            rows = args.generations * (2 + EVENTS_PER_GENERATION)
            figures = {
                "bench": "prune",
                "engine": args.engine,
                "rows_pruned_per_rep": rows,
                "reps": args.reps,
                "queue_cycles_per_s_alone": round(statistics.median(base), 1),
                "queue_cycles_per_s_pruning": round(statistics.median(during), 1),
                "ratio_pruning_to_alone": round(
                    statistics.median(during) / statistics.median(base), 3
                ),
                "prune_seconds": round(statistics.median(prune_s), 1),
                "prune_rows_per_s": round(rows / statistics.median(prune_s)),
                "seed_seconds": round(statistics.median(seeds), 1),
                "all": {"alone": base, "pruning": during, "prune_s": prune_s},
                **machine(),
            }
            table(
                [
                    ("figure", "median", "all"),
                    ("queue cycles/s alone", str(figures["queue_cycles_per_s_alone"]), str(base)),
                    (
                        "queue cycles/s while pruning",
                        str(figures["queue_cycles_per_s_pruning"]),
                        str(during),
                    ),
                    ("ratio", str(figures["ratio_pruning_to_alone"]), ""),
                    (f"prune of {rows} rows, s", str(figures["prune_seconds"]), str(prune_s)),
                ]
            )
            emit(figures)
            engine.dispose()
        finally:
            if ctx is not None:
                ctx.__exit__(None, None, None)


if __name__ == "__main__":
    main()
