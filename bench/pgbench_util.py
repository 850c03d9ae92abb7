"""Shared by the benchmarks: throwaway databases, loading, timing, the table and the JSON line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

DEFAULT_ADMIN_URL = os.environ.get(
    "POSEGEN_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def libpq(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def scratch_database(admin_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """A new empty database for the run, dropped afterwards (unless ``keep``)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    with connect(admin_url) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]
    try:
        yield with_database(admin_url, name)
    finally:
        if keep:
            print(f"kept database {name}")
        else:
            with connect(admin_url) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[arg-type]


@contextlib.contextmanager
def migrated_database(admin_url: str, prefix: str, keep: bool = False) -> Iterator[str]:
    """:func:`scratch_database` with posegen's schema already in it."""
    with scratch_database(admin_url, prefix, keep) as url:
        migrate(url)
        yield url


def add_database_args(ap: argparse.ArgumentParser, keep: bool = True) -> None:
    """``--admin-url`` (where scratch databases are made) and, if ``keep``, ``--keep``."""
    ap.add_argument("--admin-url", default=DEFAULT_ADMIN_URL)
    if keep:
        ap.add_argument("--keep", action="store_true", help="keep the database afterwards")


def connect(url: str) -> psycopg.Connection[Any]:
    """An autocommit psycopg connection to a SQLAlchemy-style URL (for loading and timing)."""
    return psycopg.connect(libpq(url), autocommit=True)


@contextlib.contextmanager
def engine_for(url: str) -> Iterator[Engine]:
    """posegen's engine for ``url`` with default settings, disposed afterwards."""
    from posegen.config import load_settings
    from posegen.db.engine import make_engine

    engine = make_engine(load_settings(database_url=url))
    try:
        yield engine
    finally:
        engine.dispose()


def migrate(url: str) -> None:
    """posegen's own schema and indexes, through its migrations."""
    from posegen.db import migrate as mig

    with engine_for(url) as engine:
        mig.upgrade(engine)


def load_users(conn: psycopg.Connection[Any], users: int) -> None:
    """``users`` users and one project each; ids are 1..users in a fresh database."""
    conn.execute(
        "INSERT INTO users (name, email, role, created_at) "
        "SELECT 'User ' || i, 'user' || i || '@example.com', 'user', now() "
        "FROM generate_series(1, %s) i",
        (users,),
    )
    conn.execute(
        "INSERT INTO projects (user_id, name, status, created_at, updated_at) "
        "SELECT i, 'project ' || i, 'active', now(), now() FROM generate_series(1, %s) i",
        (users,),
    )
    top = conn.execute("SELECT max(id) FROM projects").fetchone()
    assert top is not None and top[0] == users, "expected a fresh database (ids 1..users)"


def timed(fn: Callable[[], Any], reps: int, warmup: int = 1) -> tuple[dict[str, float], Any]:
    """Run ``fn`` ``warmup`` + ``reps`` times; latency figures in milliseconds."""
    result = None
    for _ in range(warmup):
        result = fn()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        result = fn()
        samples.append((time.perf_counter() - t0) * 1000)
    samples.sort()
    return {
        "p50_ms": round(statistics.median(samples), 4),
        "p95_ms": round(samples[min(len(samples) - 1, int(len(samples) * 0.95))], 4),
        "min_ms": round(samples[0], 4),
        "mean_ms": round(statistics.fmean(samples), 4),
        "reps": reps,
    }, result


def machine() -> dict[str, Any]:
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "date": time.strftime("%Y-%m-%d"),
        # Other work on the machine skews every figure; record how busy it was at the start.
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


def server_version(conn: psycopg.Connection[Any]) -> str:
    row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def emit(figures: dict[str, Any]) -> None:
    """The one JSON line every benchmark ends with."""
    print(json.dumps(figures, sort_keys=True))


def table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
