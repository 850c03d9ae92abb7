"""Where a posegen drain spends its time: statements and commits per job (counted in-process),
and CPU per component (py-spy over a real ``posegen worker --burst``, all threads).

    .venv/bin/python bench/profile_drain.py --jobs 5000        # PostgreSQL scratch database

Components are assigned from each sample's innermost frame that belongs to a known package:
psycopg (driver, including waiting on the socket), SQLAlchemy, posegen's queue, posegen's worker,
json, logging, threading (waits and locks), other. Prints one JSON line.
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/queue.py must not shadow the standard library's queue

import argparse
import collections
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event

from pgbench_util import DEFAULT_ADMIN_URL, emit, engine_for, machine, migrate, scratch_database
from recovery_kill import submit

COMPONENTS = (
    ("psycopg", ("/psycopg/", "/psycopg_binary/", "/psycopg_pool/")),
    ("sqlalchemy", ("/sqlalchemy/",)),
    ("posegen.queue", ("/posegen/queue/",)),
    ("posegen.db", ("/posegen/db/",)),
    ("posegen.worker", ("/posegen/worker/",)),
    ("json", ("/json/",)),
    ("logging", ("/logging/",)),
    ("threading/queue waits", ("/threading.py", "/queue.py", "/concurrent/")),
)


def component(frame: str) -> str | None:
    for name, needles in COMPONENTS:
        if any(n in frame for n in needles):
            return name
    return None


def count_statements(url: str, jobs: int, concurrency: int) -> dict[str, Any]:
    """Drain ``jobs`` with an in-process worker, counting what reaches the database."""
    from posegen.config import load_settings
    from posegen.worker import Worker, noop

    with engine_for(url) as engine:
        submit(engine, jobs)
    settings = load_settings(database_url=url, backend="noop", dead_worker_check_seconds=1.0)
    from posegen.db.engine import make_engine

    engine = make_engine(settings)
    counts: collections.Counter[str] = collections.Counter()

    @event.listens_for(engine, "before_cursor_execute")
    def _stmt(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        counts["statements"] += 1
        counts[statement.split(None, 1)[0].upper()] += 1

    @event.listens_for(engine, "commit")
    def _commit(conn: Any) -> None:
        counts["commits"] += 1

    t0 = time.perf_counter()
    Worker(settings, engine, noop.make_handler(settings), concurrency, burst=True).run()
    wall = time.perf_counter() - t0
    engine.dispose()
    per_job = {k: round(v / jobs, 3) for k, v in sorted(counts.items())}
    return {"jobs": jobs, "wall_s": round(wall, 2), "per_job": per_job}


def profile(url: str, jobs: int, concurrency: int, rate: int) -> dict[str, Any]:
    """py-spy over a real worker process: share of CPU samples per component."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with engine_for(url) as engine:
        submit(engine, jobs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
        env.update(POSEGEN_DATABASE_URL=url, POSEGEN_DATA_DIR=tmp, POSEGEN_BACKEND="noop")
        cmd = [pyspy, "record", "--format", "raw", "--rate", str(rate), "--threads", "-o", str(out)]
        cmd += ["--", sys.executable, "-m", "posegen", "worker", "--burst"]
        cmd += ["--concurrency", str(concurrency)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr or proc.stdout)[-500:]}
        by: collections.Counter[str] = collections.Counter()
        top: collections.Counter[str] = collections.Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            total += int(n)
            name = next((c for f in reversed(frames) if (c := component(f))), "other")
            by[name] += int(n)
            # the innermost posegen frame: which of our functions the time is spent under
            ours = next((f for f in reversed(frames) if "/posegen/" in f), "outside posegen")
            top[ours.split(" (")[0]] += int(n)
    return {
        "samples": total,
        "share_by_component": {k: round(v / total, 3) for k, v in by.most_common()},
        "top_posegen_functions": {k: round(v / total, 3) for k, v in top.most_common(12)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    args = ap.parse_args()
    figures: dict[str, Any] = {"bench": "profile-drain", **machine(), "jobs": args.jobs}
    with scratch_database(args.admin_url, "posegen_bench_profile") as url:
        migrate(url)
        figures["round_trips"] = count_statements(url, args.jobs, args.concurrency)
        print(f"statements per job: {figures['round_trips']}", flush=True)
    with scratch_database(args.admin_url, "posegen_bench_profile") as url:
        migrate(url)
        figures["cpu"] = profile(url, args.jobs, args.concurrency, args.rate)
        print(f"cpu: {figures['cpu']}", flush=True)
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    emit(figures)


if __name__ == "__main__":
    main()
