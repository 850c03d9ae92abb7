"""Where one cached top-users request spends its time inside the app (no server, no network).

Builds the real app (``create_app``, every middleware) on a scratch SQLite database, warms the
metrics cache and the key cache with one request, then calls the ASGI app directly (CPU time of
this thread), interleaving variants in each of ``--rounds`` rounds of ``--requests`` requests
(minimum kept, since other work on the machine only adds): the full app; the app less one
middleware at a time (that middleware's cost is the difference); the same bytes from a route
with no dependencies (the cost of the endpoint's dependencies: bearer parsing, the key cache,
the role check). Then one cProfile pass lists the functions with the most own time. What the
HTTP server adds (parsing, transport, event loop) is the server's CPU per request in
``bench/api.py`` less the full app's figure.

    .venv/bin/python bench/profile_api.py --requests 5000 --rounds 3
"""

from __future__ import annotations

import sys

sys.path.append(sys.path.pop(0))  # bench/queue.py must not shadow the standard library's queue

import argparse
import asyncio
import cProfile
import pstats
import tempfile
import time
from pathlib import Path
from typing import Any

from pgbench_util import emit, machine

PATH = "/api/pose-generator/metrics/top-users"


def scope(key: str, path: str) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"limit=10",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"authorization", f"Bearer {key}".encode()),
            (b"user-agent", b"wrk"),
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "state": {},
    }


async def one(app: Any, key: str, path: str = PATH) -> int:
    status = 0

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope(key, path), receive, send)
    return status


async def run(app: Any, key: str, n: int, path: str = PATH) -> float:
    # CPU time of this thread, not wall time: on a machine shared with other work, being
    # descheduled adds wall time (2x between rounds at load 10) but no CPU time.
    started = time.thread_time()
    for _ in range(n):
        await one(app, key, path)
    return (time.thread_time() - started) / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=5_000, help="per variant and round")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from fastapi import Response

    from posegen import accounts
    from posegen.api.app import create_app
    from posegen.config import load_settings
    from posegen.db import migrate
    from posegen.db.engine import make_engine
    from posegen.db.models import Role

    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(database_url=f"sqlite:///{Path(tmp) / 'p.db'}", data_dir=Path(tmp))
        engine = make_engine(settings)
        migrate.upgrade(engine, uploads_dir=settings.effective_uploads_dir)
        key = accounts.create_user(engine, "Bench", "bench@example.com", Role.ADMIN).api_key
        app = create_app(settings, engine)
        body = b'{"users": []}'

        # The same answer from a route with no dependencies: what the endpoint's dependencies
        # (bearer parsing, the key cache, the role check, the engine) and its cache peek cost.
        async def bare() -> Response:
            return Response(body, media_type="application/json")

        # First in the table, as the metrics routes are, so both pay the same route matching.
        app.add_api_route(PATH + "-bare", bare)
        app.router.routes.insert(0, app.router.routes.pop())

        results = asyncio.run(measure(app, key, args.requests, args.rounds))
        engine.dispose()

    base = results.pop("full app")
    layers = {name: round(base - us, 1) for name, us in results.items()}
    print(f"{base} us per cached top-users request in-process (min of {args.rounds} rounds)")
    print("cost of each part (full app less the app without it), us per request:")
    for name, us in layers.items():
        print(f"  {us:7.1f}  {name}")
    print("top functions by own time under cProfile (us per request, profiler overhead included):")
    for line in TOP:
        print(line)
    emit(
        {
            "bench": "profile_api",
            **machine(),
            "requests": args.requests,
            "rounds": args.rounds,
            "us_per_request": base,
            "parts_us": layers,
        }
    )


TOP: list[str] = []


async def measure(app: Any, key: str, n: int, rounds: int) -> dict[str, float]:
    """Minimum over ``rounds`` of each variant, the variants interleaved within each round."""
    assert await one(app, key) == 200
    assert await one(app, key, PATH + "-bare") == 200
    await run(app, key, 2000)  # warm-up
    everything = list(app.user_middleware)
    variants: dict[str, tuple[list[Any], str]] = {"full app": (everything, PATH)}
    for m in everything:
        name = getattr(m.cls, "__name__", str(m.cls))
        variants[f"middleware {name}"] = ([x for x in everything if x is not m], PATH)
    variants["route dependencies + auth + cache peek"] = (everything, PATH + "-bare")
    best: dict[str, float] = {}
    for _ in range(rounds):
        for name, (middleware, path) in variants.items():
            app.user_middleware[:] = middleware
            app.middleware_stack = None  # rebuilt on the next call
            us = await run(app, key, n, path)
            best[name] = min(best.get(name, us), us)
            print(f"  {name}: {us:.1f}", file=sys.stderr)
    app.user_middleware[:] = everything
    app.middleware_stack = None
    prof = cProfile.Profile()
    prof.enable()
    await run(app, key, n)
    prof.disable()
    raw: dict[tuple[str, int, str], Any] = pstats.Stats(prof).stats  # type: ignore[attr-defined]
    top = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)[:12]
    for (f, line, fn), (_cc, nc, tt, _ct, _c) in top:
        where = f.rsplit("site-packages/", 1)[-1]
        TOP.append(f"  {tt / n * 1e6:7.2f}  {nc / n:5.1f} calls  {fn}  {where}:{line}")
    return {name: round(us, 1) for name, us in best.items()}


if __name__ == "__main__":
    main()
