"""Transactions on an engine or on a long-lived connection.

A worker keeps one connection for claiming and one for its writer thread: checking a pooled
connection out and back in (with its liveness ping) per transaction costs round trips that add
up at thousands of jobs per second. Everything else passes an engine."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from sqlalchemy import Connection, Engine

from posegen.db.engine import database_errors, is_sqlite, write_transaction

Bind = Engine | Connection


@contextlib.contextmanager
def write_tx(bind: Bind) -> Iterator[Connection]:
    """A write transaction (``BEGIN IMMEDIATE`` on SQLite) on ``bind``."""
    if isinstance(bind, Engine):
        with write_transaction(bind) as conn:
            yield conn
        return
    with database_errors(), bind.begin():
        yield bind


@contextlib.contextmanager
def autocommit(bind: Bind) -> Iterator[Connection]:
    """A connection where each statement commits on its own (PostgreSQL single-statement ops)."""
    if isinstance(bind, Connection):
        with database_errors():
            yield bind
        return
    with database_errors(), bind.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")


def writer_connection(engine: Engine) -> Connection:
    """A long-lived connection for :func:`write_tx` (SQLite: its transactions begin IMMEDIATE)."""
    with database_errors():
        conn = engine.connect()
    if is_sqlite(conn):
        conn.execution_options(sqlite_begin="IMMEDIATE")
    return conn


def claimer_connection(engine: Engine) -> Connection:
    """A long-lived connection for ``claim``: autocommit on PostgreSQL, where the claim is one
    statement; a writer connection on SQLite, where it needs ``BEGIN IMMEDIATE``."""
    conn = writer_connection(engine)
    if not is_sqlite(conn):
        conn.execution_options(isolation_level="AUTOCOMMIT")
    return conn
