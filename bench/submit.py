"""Submit rate with the per-user limits on vs off, same run, PostgreSQL and SQLite.

The limits (active generations, the minute window, result bytes) are checked and counted in the
submit transaction itself (``posegen.queue.quota``); on PostgreSQL the submit stays one
autocommit statement. This measures what that costs: single submits from T threads over U users
(each submit its own transaction), with ``SubmitLimits`` from the settings (set high enough that
nothing is refused) and without limits. Rounds alternate the two modes so load on a shared machine
hits both alike.

    .venv/bin/python bench/submit.py                      # 2,000 submits per mode and round
    .venv/bin/python bench/submit.py --submits 500 --rounds 2

``--compare uses``: library submits (``--poses`` poses each, drawn from the built-in library,
limits on) with the pose use counts (``posegen.library.popularity``: a CTE of the PostgreSQL
submit statement, an UPDATE in SQLite's submit transaction) on and off, interleaved the same way.
"""

from __future__ import annotations

import os
import sys

# bench/queue.py is named like the standard library's ``queue``: keep ``bench/`` last on the
# import path (a stable sort: nothing else moves) so ``import queue`` finds the real one.
sys.path.sort(key=lambda p: os.path.abspath(p or ".") == os.path.dirname(os.path.abspath(__file__)))

import argparse
import contextlib
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Engine, insert

from pgbench_util import DEFAULT_ADMIN_URL, emit, machine, migrated_database, table
from posegen import accounts, queue
from posegen.config import Settings, load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import GenerationType, Project
from posegen.library import popularity, seed_library
from posegen.queue import dialect_pg_bulk


def _setup(
    url: str, users: int, poses: int = 0
) -> tuple[Settings, Engine, list[queue.GenerationRequest]]:
    settings = load_settings(
        database_url=url,
        submissions_per_minute=10**9,
        max_active_generations=10**9,
        db_pool_size=20,
    )
    engine = make_engine(settings)
    reqs = []
    library = list(range(1, seed_library(engine).poses + 1)) if poses else []
    rng = random.Random(17)
    for i in range(users):
        uid = accounts.create_user(engine, f"B{i}", f"b{i}@example.com").account.id
        with engine.begin() as conn:
            pid = conn.execute(
                insert(Project).values(user_id=uid, name="b").returning(Project.id)
            ).scalar_one()
        if poses:
            for _ in range(4):  # a few pose choices per user
                picked = rng.sample(library, poses)
                reqs.append(queue.GenerationRequest(uid, pid, GenerationType.LIBRARY, picked, 1))
        else:
            reqs.append(queue.GenerationRequest(uid, pid, GenerationType.TEXT, [], 1, prompt="x"))
    return settings, engine, reqs


@contextlib.contextmanager
def _uses_off() -> Iterator[None]:
    """The submit as it was before pose use counts: the PostgreSQL statement without the CTE,
    SQLite's transaction without the UPDATE."""
    names = ("SUBMIT_ONE", "SUBMIT_ONE_FREE")  # charged and free (price 0) statements
    with_uses = {name: getattr(dialect_pg_bulk, name) for name in names}
    count = popularity.count_uses
    for name, sql in with_uses.items():
        setattr(dialect_pg_bulk, name, sql.replace(", " + popularity.uses_cte_pg("g"), ""))
        assert getattr(dialect_pg_bulk, name) != sql
    popularity.count_uses = lambda conn, generations: None  # type: ignore[assignment]
    try:
        yield
    finally:
        for name, sql in with_uses.items():
            setattr(dialect_pg_bulk, name, sql)
        popularity.count_uses = count  # type: ignore[assignment]


def _measure_uses(url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings, engine, reqs = _setup(url, args.users, args.poses)
    limits = queue.SubmitLimits.from_settings(settings)
    out: dict[str, Any] = {}
    try:
        for threads in args.threads:
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                with _uses_off():
                    rates["off"].append(
                        _rate(settings, engine, reqs, args.submits, threads, limits)
                    )
                rates["on"].append(_rate(settings, engine, reqs, args.submits, threads, limits))
            off, on_ = statistics.median(rates["off"]), statistics.median(rates["on"])
            out[f"t{threads}"] = {"off": round(off), "on": round(on_), "ratio": round(on_ / off, 2)}
    finally:
        engine.dispose()
    return out


def _rate(
    settings: Settings,
    engine: Engine,
    reqs: list[queue.GenerationRequest],
    n: int,
    threads: int,
    limits: queue.SubmitLimits,
) -> float:
    def work(k: int) -> None:
        for j in range(n // threads):
            queue.submit(engine, settings, reqs[(k + j * threads) % len(reqs)], limits)

    started = time.perf_counter()
    pool = [threading.Thread(target=work, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return n / (time.perf_counter() - started)


def _measure(url: str, args: argparse.Namespace) -> dict[str, Any]:
    settings, engine, reqs = _setup(url, args.users)
    on = queue.SubmitLimits.from_settings(settings)
    out: dict[str, Any] = {}
    try:
        for threads in args.threads:
            rates: dict[str, list[float]] = {"off": [], "on": []}
            for _ in range(args.rounds):
                rates["off"].append(
                    _rate(settings, engine, reqs, args.submits, threads, queue.UNLIMITED)
                )
                rates["on"].append(_rate(settings, engine, reqs, args.submits, threads, on))
            off, on_ = statistics.median(rates["off"]), statistics.median(rates["on"])
            out[f"t{threads}"] = {"off": round(off), "on": round(on_), "ratio": round(on_ / off, 2)}
    finally:
        engine.dispose()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--submits", type=int, default=2000, help="submits per mode and round")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--users", type=int, default=50)
    p.add_argument("--threads", type=int, nargs="+", default=[1, 8])
    p.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    p.add_argument("--compare", choices=("limits", "uses"), default="limits")
    p.add_argument("--poses", type=int, default=3, help="poses per submit with --compare uses")
    args = p.parse_args()
    measure = _measure if args.compare == "limits" else _measure_uses

    figures: dict[str, Any] = {
        "machine": machine(),
        "submits": args.submits,
        "compare": args.compare,
    }
    with migrated_database(args.admin_url, "bench_submit") as url:
        figures["postgresql"] = measure(url, args)
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        engine = make_engine(load_settings(database_url=url))
        migrate.upgrade(engine)
        engine.dispose()
        figures["sqlite"] = measure(url, args)

    what = args.compare
    rows = [("engine", "threads", f"{what} off /s", f"{what} on /s", "on / off")]
    for db in ("postgresql", "sqlite"):
        for key, f in figures[db].items():
            rows.append((db, key[1:], str(f["off"]), str(f["on"]), str(f["ratio"])))
    table(rows)
    emit(figures)


if __name__ == "__main__":
    main()
