"""Engine construction from settings, and the conversion of driver errors at this edge."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from sqlalchemy import Connection, Engine, create_engine
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError

from posegen.config import Settings, mask_url
from posegen.exceptions import ConfigError, DatabaseUnavailable


def normalise_url(url: str) -> str:
    """Pick the drivers posegen ships with: psycopg 3 for PostgreSQL, pysqlite for SQLite."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://") :]
    return url


def make_engine(settings: Settings, **kwargs: Any) -> Engine:
    """Create the engine for ``settings``; one per process, passed down, never global."""
    raw = settings.effective_database_url
    try:
        url = make_url(normalise_url(raw))
    except ArgumentError as exc:
        raise ConfigError(f"malformed database URL: {mask_url(raw)}") from exc
    if url.get_backend_name() == "sqlite":
        from posegen.db.dialects import sqlite

        if url.database and url.database != ":memory:":
            from pathlib import Path

            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            echo=settings.db_echo,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            connect_args={"timeout": 30, "check_same_thread": False},
            **kwargs,
        )
        sqlite.configure(engine)
        return engine
    if url.get_backend_name() == "postgresql":
        return create_engine(
            url,
            echo=settings.db_echo,
            pool_size=settings.db_pool_size,
            max_overflow=settings.db_max_overflow,
            pool_timeout=settings.db_pool_timeout_seconds,
            pool_pre_ping=True,
            connect_args={"connect_timeout": max(1, int(settings.db_connect_timeout_seconds))},
            **kwargs,
        )
    raise ConfigError(f"unsupported database: {url.get_backend_name()}")


def is_sqlite(engine: Engine | Connection) -> bool:
    return engine.dialect.name == "sqlite"


@contextlib.contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction that will write.

    On SQLite it starts with ``BEGIN IMMEDIATE`` so the write lock is taken up front: a deferred
    transaction that reads and then writes can fail with SQLITE_BUSY without waiting.
    """
    with database_errors():
        conn = engine.connect()
        try:
            if is_sqlite(conn):
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn
        finally:
            conn.close()


@contextlib.contextmanager
def read_connection(engine: Engine) -> Iterator[Connection]:
    with database_errors(), engine.connect() as conn:
        yield conn


@contextlib.contextmanager
def database_errors() -> Iterator[None]:
    """Turn "cannot reach the database" into :class:`DatabaseUnavailable`."""
    try:
        yield
    except OperationalError as exc:
        if _is_connection_problem(exc):
            raise DatabaseUnavailable(f"database unavailable: {_first_line(exc)}") from exc
        raise


def _is_connection_problem(exc: DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    text = str(exc.orig).lower()
    needles = (
        "connection refused",
        "could not connect",
        "connection failed",
        "unable to open database",
        "could not translate host",
        "name or service not known",
        "timeout expired",
        "does not exist",
        "server closed the connection",
    )
    return any(n in text for n in needles)


def _first_line(exc: DBAPIError) -> str:
    return (str(exc.orig).strip().splitlines() or ["unknown error"])[0]
