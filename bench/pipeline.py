"""The generation pipeline end to end: poses per second with ``posemap`` and one worker, on SQLite
and PostgreSQL, and the per-pose infrastructure overhead (wall time minus backend time).

Each engine gets a fresh database and data dir: the built-in library, one user, one project with
an uploaded subject. A warm-up generation (every pose once) fills the map cache; then G
generations of P poses x V variations run through the real queue and one in-process worker
(``PipelineHandler`` + ``Worker``, burst mode). Per pose the handler reports its overhead: map
load, seed and prompt, thumbnail and atomic writes of image + thumbnail, the fenced pose write,
and the bookkeeping between poses; everything but the backend call. Target: overhead p50 < 3 ms
on PostgreSQL.

Tracing: the same run also measures the overlapped mode with an OpenTelemetry tracer whose spans
go to the SDK's in-memory exporter (every span of every pose is made and exported), next to the
default of no tracer (spans are no-ops), and times one ``observe.span`` block both ways.

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
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
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
from posegen import accounts, observe, projects, queue, uploads
from posegen.config import load_settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, PoseLibrary, Role
from posegen.library import seed_library
from posegen.observe import tracing
from posegen.queue import GenerationRequest
from posegen.worker import Worker
from posegen.worker.pipeline import PipelineHandler
from posegen.worker.pipeline_writes import DEFAULT_DEPTH

#: Stores and pose writes inline on the job's thread, or on helper threads while the backend runs;
#: then the default (overlapped) again with every span recorded by the SDK's in-memory exporter.
MODES = (
    ("serial", 0, "off"),
    ("overlapped", DEFAULT_DEPTH, "off"),
    ("overlapped", DEFAULT_DEPTH, "in-memory"),
)


@contextmanager
def tracer(kind: str) -> Iterator[InMemorySpanExporter | None]:
    """No tracer (``off``: what runs without OTEL_EXPORTER_OTLP_ENDPOINT), or the SDK with an
    in-memory exporter behind a synchronous processor (every span exported as it ends)."""
    if kind == "off":
        yield None
        return
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    try:
        yield memory
    finally:
        tracing.install(None)
        provider.shutdown()


def span_cost(n: int = 20_000, repeats: int = 5) -> dict[str, float]:
    """Nanoseconds for one ``with observe.span(...)`` block, off and with the in-memory SDK
    (best of ``repeats``: the least disturbed by other work on the machine)."""
    out = {}
    for kind in ("off", "in-memory"):
        with tracer(kind) as memory:
            best = float("inf")
            for _ in range(repeats):
                started = time.perf_counter_ns()
                for _ in range(n):
                    with observe.span("bench.span", pose_id=1):
                        pass
                best = min(best, (time.perf_counter_ns() - started) / n)
                if memory is not None:
                    memory.clear()
            out[kind] = best
    return out


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
        for mode, depth, traced in MODES:
            handler = PipelineHandler(settings, on_pose=samples, write_depth=depth)
            submit(all_poses, 1)  # warm-up: maps cached, code paths and connections warm
            drain(handler)
            samples.clear()
            poses = all_poses[: args.poses]
            with tracer(traced) as memory:
                for _ in range(args.generations):
                    submit(poses, args.variations)
                wall = drain(handler)
                spans = len(memory.get_finished_spans()) if memory is not None else 0
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
                    "tracing": traced,
                    "spans_per_pose": round(spans / n, 2),
                    "wall_ms_per_pose": round(wall * 1000 / n, 3),
                    "poses": n,
                    "wall_s": round(wall, 3),
                    "poses_per_s": round(n / wall, 1),
                    "backend_p50_ms": round(statistics.median(backend_ms), 3),
                    "overhead_p50_ms": round(statistics.median(ms), 3),
                    "overhead_p99_ms": round(percentile(ms, 0.99), 3),
                    "overhead_mean_ms": round(statistics.fmean(ms), 3),
                }
            )
        # The submit's share: the span and the traceparent travel in the submit's one statement.
        # Blocks of 20 submits alternate between the two modes, so drift hits both alike.
        per_mode: dict[str, list[float]] = {"off": [], "in-memory": []}
        for _ in range(args.submit_blocks):
            for kind, times in per_mode.items():
                with tracer(kind):
                    for _ in range(20):
                        started = time.perf_counter()
                        submit(all_poses[:1], 1)
                        times.append((time.perf_counter() - started) * 1000)
        for kind, times in per_mode.items():
            out.append({"engine": name, "submit": kind, "submit_p50_ms": statistics.median(times),
                        "submits": len(times)})  # fmt: skip
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
    parser.add_argument(
        "--submit-blocks", type=int, default=10, help="blocks of 20 submits per tracing mode"
    )
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
    submits = [r for r in results if "submit" in r]
    results = [r for r in results if "submit" not in r]

    keys = ["poses", "wall_s", "poses_per_s", "wall_ms_per_pose", "backend_p50_ms",
            "overhead_p50_ms", "overhead_p99_ms", "overhead_mean_ms", "spans_per_pose"]  # fmt: skip
    table(
        [("engine", "writes", "tracing", *keys)]
        + [(r["engine"], r["mode"], r["tracing"], *(str(r[k]) for k in keys)) for r in results]
    )
    figures: dict[str, Any] = {"machine": machine(), "size": args.size,
                               "concurrency": args.concurrency}  # fmt: skip
    by = {(r["engine"], r["mode"]): r for r in results if r["tracing"] == "off"}
    traced = {r["engine"]: r for r in results if r["tracing"] != "off"}
    for r in results:
        for k in keys:
            figures[f"{r['engine']}_{r['mode']}_{r['tracing']}_{k}"] = r[k]
    for engine, on in traced.items():
        off = by[(engine, "overlapped")]
        for k in ("wall_ms_per_pose", "overhead_p50_ms", "overhead_mean_ms"):
            figures[f"{engine}_tracing_cost_{k}"] = round(on[k] - off[k], 3)
        print(
            f"{engine}: in-memory tracing - no tracer, per pose: wall "
            f"{on['wall_ms_per_pose'] - off['wall_ms_per_pose']:+.3f} ms, overhead p50 "
            f"{on['overhead_p50_ms'] - off['overhead_p50_ms']:+.3f} ms, overhead mean "
            f"{on['overhead_mean_ms'] - off['overhead_mean_ms']:+.3f} ms "
            f"({on['spans_per_pose']} spans per pose)"
        )
    for r in submits:
        figures[f"{r['engine']}_submit_p50_ms_tracing_{r['submit']}"] = round(r["submit_p50_ms"], 3)
        print(f"{r['engine']}: submit p50 {r['submit_p50_ms']:.3f} ms, tracing {r['submit']} "
              f"({r['submits']} submits)")  # fmt: skip
    cost = span_cost()
    figures["span_ns_off"] = round(cost["off"], 1)
    figures["span_ns_in_memory"] = round(cost["in-memory"], 1)
    off_ns, memory_ns = cost["off"], cost["in-memory"]
    print(f"one span block: {off_ns:.0f} ns with no tracer, {memory_ns:.0f} ns in-memory")
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
