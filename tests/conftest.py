"""Shared fixtures: every database test runs on SQLite and on PostgreSQL, each with a fresh
database (a copied, migrated file on SQLite; ``CREATE DATABASE ... TEMPLATE`` on PostgreSQL).

PostgreSQL comes from ``POSEGEN_TEST_POSTGRES_URL`` when set; otherwise the session starts a
throwaway server with ``pgserver`` (PostgreSQL shipped in a wheel)."""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from sqlalchemy import Engine
from sqlalchemy.engine import make_url

from posegen.config import Settings, load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine

ENGINES = ("sqlite", "postgresql")

#: Under pytest-xdist (``make test``: ``-n 4 --dist loadgroup``) the tests of one group run on one
#: worker, one after another: those that would thrash the two cores if they ran side by side.
#: torch: the tiny diffusers pipelines (torch takes every core; four at once miss their timeouts),
#: whose module fixtures are then built once, not once per worker. Chosen by node id (the
#: scheduler sees no fixtures): these files, and tests named for the diffusers backend.
TORCH_FILES = (
    "test_diffusers_backend.py",
    "test_diffusers_single_file.py",
    "test_models_check.py",
    "test_inpaint_diffusers.py",
)


def xdist_group_of(nodeid: str) -> str | None:
    path, _, name = nodeid.partition("::")
    if path.endswith(TORCH_FILES) or "diffusers" in name:
        return "torch"
    return None


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """``--dist loadgroup`` with :func:`xdist_group_of`'s groups. (xdist 3.8 reads
    ``xdist_group`` marks by rewriting ``item._nodeid``, which pytest 9.2 no longer uses, so
    marks would be ignored.) Every other test is its own scope: spread like ``--dist load``."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return xdist_group_of(nodeid) or nodeid

    return GroupScheduling(config, log)


def _libpq(url: str) -> str:
    """SQLAlchemy URL -> libpq conninfo for psycopg admin connections."""
    u = make_url(url)
    return u.set(drivername="postgresql").render_as_string(hide_password=False)


def _with_database(url: str, name: str) -> str:
    return make_url(url).set(database=name).render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def pg_admin_url() -> Iterator[str]:
    url = os.environ.get("POSEGEN_TEST_POSTGRES_URL")
    if url:
        yield url
        return
    with warnings.catch_warnings():
        # platformdirs warns that XDG_RUNTIME_DIR is unset on headless machines; harmless here.
        warnings.simplefilter("ignore")
        import pgserver

    # Not under pytest's basetemp: a concurrent pytest session prunes old basetemp folders and
    # would delete a running server's data directory.
    pgdata = Path(tempfile.mkdtemp(prefix="posegen-pgserver-"))
    server = pgserver.get_server(pgdata, cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()
        shutil.rmtree(pgdata, ignore_errors=True)


def _admin_exec(admin_url: str, sql: str) -> None:
    with psycopg.connect(_libpq(admin_url), autocommit=True) as conn:
        conn.execute(sql)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def pg_template(pg_admin_url: str) -> Iterator[str]:
    name = f"posegen_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{name}"')
    url = _with_database(pg_admin_url, name)
    engine = make_engine(load_settings(database_url=url))
    migrate.upgrade(engine)
    engine.dispose()
    yield name
    _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("sqlite-template") / "template.db"
    engine = make_engine(load_settings(database_url=f"sqlite:///{path}"))
    migrate.upgrade(engine)
    engine.dispose()
    return path


def fresh_postgres(pg_admin_url: str, template: str | None) -> Iterator[str]:
    name = f"posegen_t_{uuid.uuid4().hex[:12]}"
    tpl = f' TEMPLATE "{template}"' if template else ""
    _admin_exec(pg_admin_url, f'CREATE DATABASE "{name}"{tpl}')
    yield _with_database(pg_admin_url, name)
    _admin_exec(pg_admin_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, migrated database on each engine."""
    if request.param == "sqlite":
        path = tmp_path / "posegen.db"
        shutil.copy(request.getfixturevalue("sqlite_template"), path)
        yield f"sqlite:///{path}"
    else:
        yield from fresh_postgres(
            request.getfixturevalue("pg_admin_url"), request.getfixturevalue("pg_template")
        )


@pytest.fixture(params=ENGINES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh database with no schema at all, on each engine."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'empty.db'}"
    else:
        yield from fresh_postgres(request.getfixturevalue("pg_admin_url"), None)


def make_test_settings(data_dir: Path, database_url: str, **overrides: Any) -> Settings:
    """Settings for tests: short timings so recovery and leases can be exercised quickly."""
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url,
        "lease_seconds": 3.0,
        "poll_interval_seconds": 0.05,
        "recovery_interval_seconds": 0.5,
        "retry_backoff_base_seconds": 0.0,
        "shutdown_grace_seconds": 5.0,
        "fetch_allowlist": "127.0.0.1",
        # Off except in the tests of it (tests/vision): a helper start and a model run per
        # project with a subject file would only slow the others down.
        "vision_detect_subjects": False,
    }
    values.update(overrides)
    return load_settings(**values)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_test_settings(tmp_path / "data", db_url)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    engine = make_engine(settings)
    yield engine
    engine.dispose()


@pytest.fixture
def cli_env(settings: Settings) -> dict[str, str]:
    """Environment for running the real ``posegen`` command against this test's database."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("POSEGEN_")}
    env["POSEGEN_DATA_DIR"] = str(settings.data_dir)
    env["POSEGEN_DATABASE_URL"] = settings.effective_database_url
    env["POSEGEN_FETCH_ALLOWLIST"] = settings.fetch_allowlist
    return env
