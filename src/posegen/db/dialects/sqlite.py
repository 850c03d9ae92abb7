"""SQLite specifics: WAL, foreign keys, busy timeout, and explicit BEGIN modes.

pysqlite's own transaction handling defers BEGIN and never issues BEGIN IMMEDIATE, so posegen
takes over (SQLAlchemy's documented recipe) and lets a connection ask for IMMEDIATE through the
``sqlite_begin`` execution option.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, Engine, event


def configure(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we emit BEGIN ourselves
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
        conn.exec_driver_sql(f"BEGIN {mode}")
