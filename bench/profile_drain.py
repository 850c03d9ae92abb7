"""Where a posegen drain spends its time: statements and commits per job (counted in-process),
and CPU per component (py-spy ``--gil`` over a real ``posegen worker --burst``: only samples
of the thread holding the GIL, so the 128 job threads waiting on their commits do not count).

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

# py-spy names files relative to their sys.path entry ("sqlalchemy/engine/base.py:1234").
COMPONENTS = (
    ("psycopg", ("psycopg/", "psycopg_binary/", "psycopg_pool/")),
    ("sqlalchemy", ("sqlalchemy/",)),
    ("posegen.queue", ("posegen/queue/",)),
    ("posegen.db", ("posegen/db/",)),
    ("posegen.worker", ("posegen/worker/",)),
    ("json", ("json/",)),
    ("logging", ("logging/",)),
    ("threading/queue waits", ("threading.py", "queue.py", "concurrent/")),
)


def component(frame: str) -> str | None:
    where = frame.rpartition(" (")[2]
    for name, needles in COMPONENTS:
        if any(where.startswith(n) or "/" + n in where for n in needles):
            return name
    return None


#: Leaf frames that are a thread waiting (a lock, a condition, the socket), not using CPU; py-spy
#: still samples them as active when the thread is runnable on a busy machine.
WAITS = ("threading.py", "psycopg/waiting.py", "selectors.py", "queue.py")


def classify(frames: list[str]) -> str:
    if any("_find_and_load" in f for f in frames):
        return "start-up (imports)"
    leaf = frames[-1].rpartition(" (")[2]
    if any(leaf.startswith(w) or "/" + w in leaf for w in WAITS):
        return "waiting (lock, condition, socket)"
    return next((c for f in reversed(frames) if (c := component(f))), "other")


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


def profile(
    url: str, jobs: int, concurrency: int, rate: int, keep: Path | None = None
) -> dict[str, Any]:
    """py-spy over a real worker process: share of CPU samples per component."""
    pyspy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    with engine_for(url) as engine:
        submit(engine, jobs)
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "stacks.txt"
        env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
        env.update(POSEGEN_DATABASE_URL=url, POSEGEN_DATA_DIR=tmp, POSEGEN_BACKEND="noop")
        cmd = [pyspy, "record", "--format", "raw", "--rate", str(rate), "--gil", "-o", str(out)]
        cmd += ["--", sys.executable, "-m", "posegen", "worker", "--burst"]
        cmd += ["--concurrency", str(concurrency)]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not out.exists():
            return {"error": (proc.stderr or proc.stdout)[-500:]}
        if keep is not None:
            shutil.copy(out, keep)
        by: collections.Counter[str] = collections.Counter()
        top: collections.Counter[str] = collections.Counter()
        total = 0
        for line in out.read_text().splitlines():
            stack, _, n = line.rpartition(" ")
            if not n.isdigit():
                continue
            frames = stack.split(";")
            total += int(n)
            name = classify(frames)
            by[name] += int(n)
            # the innermost posegen frame: which of our functions the time is spent under
            ours = next((f for f in reversed(frames) if "posegen/" in f), "outside posegen")
            top[ours.split(" (")[0]] += int(n)
    # Shares of the drain itself: start-up (imports) is reported apart.
    startup = by.pop("start-up (imports)", 0)
    top.pop("<module>", None)
    drain = max(1, total - startup)
    return {
        "samples": total,
        "startup_samples": startup,
        "share_by_component": {k: round(v / drain, 3) for k, v in by.most_common()},
        "top_posegen_functions": {k: round(v / drain, 3) for k, v in top.most_common(15)},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--jobs", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=128)
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second")
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    ap.add_argument("--stacks", type=Path, help="keep py-spy's raw stacks here")
    args = ap.parse_args()
    figures: dict[str, Any] = {"bench": "profile-drain", **machine(), "jobs": args.jobs}
    with scratch_database(args.admin_url, "posegen_bench_profile") as url:
        migrate(url)
        figures["round_trips"] = count_statements(url, args.jobs, args.concurrency)
        print(f"statements per job: {figures['round_trips']}", flush=True)
    with scratch_database(args.admin_url, "posegen_bench_profile") as url:
        migrate(url)
        figures["cpu"] = profile(url, args.jobs, args.concurrency, args.rate, args.stacks)
        print(f"cpu: {figures['cpu']}", flush=True)
    figures["loadavg_1m_end"] = round(os.getloadavg()[0], 2)
    emit(figures)


if __name__ == "__main__":
    main()
