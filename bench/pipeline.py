"""The generation pipeline end to end: poses per second with ``posemap`` and one worker, on SQLite
and PostgreSQL, and the per-pose infrastructure overhead (wall time minus backend time).

Each engine gets a fresh database and data dir: the built-in library, one user, one project with
an uploaded subject. A warm-up generation (every pose once) fills the map cache; then G
generations of P poses x V variations run through the real queue and one in-process worker
(``PipelineHandler`` + ``Worker``, burst mode). Per pose the handler reports its overhead: map
load, seed and prompt, thumbnail and atomic writes of image + thumbnail, the fenced pose write,
and the bookkeeping between poses; everything but the backend call. Target: overhead p50 < 3 ms
on PostgreSQL.

    .venv/bin/python bench/pipeline.py                       # 20 x 10 poses x 2, 512x512
    .venv/bin/python bench/pipeline.py --generations 4       # quicker
"""

from __future__ import annotations

import sys

# bench/queue.py shadows the standard library's ``queue`` (psycopg imports it): search this
# folder last.
sys.path.append(sys.path.pop(0))

import argparse
import io
import statistics
import tempfile
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from PIL import Image
from sqlalchemy import select

from pgbench_util import (
    DEFAULT_ADMIN_URL,
    emit,
    machine,
    migrate,
    scratch_database,
    table,
)
from posegen import accounts, projects, queue, uploads
from posegen.config import load_settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, PoseLibrary, Role
from posegen.library import seed_library
from posegen.queue import GenerationRequest
from posegen.worker import Worker
from posegen.worker.pipeline import PipelineHandler
from posegen.worker.pipeline_writes import DEFAULT_DEPTH

#: Stores and pose writes inline on the job's thread, or on helper threads while the backend runs.
MODES = (("serial", 0), ("overlapped", DEFAULT_DEPTH))


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * q))]


class Samples:
    """Per-pose (overhead, backend) seconds from the handler's observer."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.overhead: list[float] = []
        self.backend: list[float] = []

    def __call__(self, overhead: float, backend: float) -> None:
        with self.lock:
            self.overhead.append(overhead)
            self.backend.append(backend)

    def clear(self) -> None:
        with self.lock:
            self.overhead.clear()
            self.backend.clear()


def run_engine(
    name: str, url: str, data_dir: Path, args: argparse.Namespace
) -> list[dict[str, Any]]:
    settings = load_settings(
        data_dir=data_dir,
        database_url=url,
        poll_interval_seconds=0.05,
        worker_concurrency=args.concurrency,
    )
    engine = make_engine(settings)
    try:
        user = accounts.create_user(engine, "Bench", "bench@example.com", Role.ADMIN).account
        seed_library(engine)
        buf = io.BytesIO()
        Image.new("RGB", (600, 800), (190, 160, 130)).save(buf, format="PNG")
        subject = uploads.store(engine, settings, user.id, buf.getvalue())
        project = projects.create(engine, user.id, "bench", None, subject.id).id
        with engine.connect() as conn:
            all_poses = [
                int(i)
                for i in conn.execute(select(PoseLibrary.id).order_by(PoseLibrary.id)).scalars()
            ]
        samples = Samples()

        def submit(pose_ids: list[int], variations: int) -> None:
            req = GenerationRequest(
                user_id=user.id, project_id=project, type=GenerationType.LIBRARY,
                pose_ids=pose_ids, variations=variations, prompt="studio photo",
                width=args.size, height=args.size,
            )  # fmt: skip
            queue.submit(engine, settings, req)

        def drain(handler: PipelineHandler) -> float:
            worker = Worker(settings, engine, handler, args.concurrency, burst=True)
            started = time.perf_counter()
            worker.run()
            return time.perf_counter() - started

        out = []
        for mode, depth in MODES:
            handler = PipelineHandler(settings, on_pose=samples, write_depth=depth)
            submit(all_poses, 1)  # warm-up: maps cached, code paths and connections warm
            drain(handler)
            samples.clear()
            poses = all_poses[: args.poses]
            for _ in range(args.generations):
                submit(poses, args.variations)
            wall = drain(handler)
            handler.close()
            n = len(samples.overhead)
            expected = args.generations * len(poses) * args.variations
            assert n == expected, f"{n} poses recorded, expected {expected}"
            ms = [s * 1000 for s in samples.overhead]
            backend_ms = [s * 1000 for s in samples.backend]
            out.append(
                {
                    "engine": name,
                    "mode": mode,
                    "poses": n,
                    "wall_s": round(wall, 3),
                    "poses_per_s": round(n / wall, 1),
                    "backend_p50_ms": round(statistics.median(backend_ms), 3),
                    "overhead_p50_ms": round(statistics.median(ms), 3),
                    "overhead_p99_ms": round(percentile(ms, 0.99), 3),
                    "overhead_mean_ms": round(statistics.fmean(ms), 3),
                }
            )
        return out
    finally:
        engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=20)
    parser.add_argument("--poses", type=int, default=10, help="poses per generation")
    parser.add_argument("--variations", type=int, default=2)
    parser.add_argument("--size", type=int, default=512, help="image width and height")
    parser.add_argument("--concurrency", type=int, default=1, help="worker concurrency")
    parser.add_argument("--engines", default="sqlite,postgresql")
    parser.add_argument("--postgres-url", default=DEFAULT_ADMIN_URL)
    args = parser.parse_args()

    results: list[dict[str, Any]] = []
    with ExitStack() as stack:
        for name in args.engines.split(","):
            data_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="pg-bench-")))
            if name == "sqlite":
                url = f"sqlite:///{data_dir / 'posegen.db'}"
            else:
                url = stack.enter_context(scratch_database(args.postgres_url, "posegen_pipeline"))
            migrate(url)
            results.extend(run_engine(name, url, data_dir, args))

    keys = ["poses", "wall_s", "poses_per_s", "backend_p50_ms", "overhead_p50_ms",
            "overhead_p99_ms", "overhead_mean_ms"]  # fmt: skip
    table(
        [("engine", "writes", *keys)]
        + [(r["engine"], r["mode"], *(str(r[k]) for k in keys)) for r in results]
    )
    figures: dict[str, Any] = {"machine": machine(), "size": args.size,
                               "concurrency": args.concurrency}  # fmt: skip
    by = {(r["engine"], r["mode"]): r for r in results}
    for r in results:
        for k in keys:
            figures[f"{r['engine']}_{r['mode']}_{k}"] = r[k]
    for engine in dict.fromkeys(r["engine"] for r in results):
        serial, over = by[(engine, "serial")], by[(engine, "overlapped")]
        speedup = over["poses_per_s"] / serial["poses_per_s"]
        figures[f"{engine}_overlapped_over_serial_throughput"] = round(speedup, 2)
        print(f"{engine}: overlapped writes / serial writes, poses per second: {speedup:.2f}x")
    if ("sqlite", "overlapped") in by and ("postgresql", "overlapped") in by:
        ratio = (
            by[("postgresql", "overlapped")]["poses_per_s"]
            / by[("sqlite", "overlapped")]["poses_per_s"]
        )
        figures["pg_over_sqlite_throughput"] = round(ratio, 2)
        print(f"PostgreSQL / SQLite poses per second (overlapped): {ratio:.2f}x")
    if ("postgresql", "overlapped") in by:
        p50 = by[("postgresql", "overlapped")]["overhead_p50_ms"]
        figures["target_overhead_p50_under_3ms_pg"] = p50 < 3.0
        print(f"target overhead p50 < 3 ms on PostgreSQL: {'met' if p50 < 3.0 else 'NOT met'}")
    emit(figures)


if __name__ == "__main__":
    main()
