"""Whose turn it is to prune: one worker of a fleet at a time (the others skip that round).

PostgreSQL: a session advisory lock held on a connection of its own for the prune's length
(not with ``POSEGEN_LISTEN_NOTIFY=false``: behind PgBouncer in transaction mode a session lock
is not the session's; there every worker prunes, which is safe, only wasted work). SQLite (one
host): an exclusive ``flock`` on ``<database file>.prune.lock``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from posegen.config import Settings

#: pg_advisory lock key of the prune ("posegen" + 2 as ASCII bytes, fits a bigint).
PRUNE_LOCK_KEY = 0x706F736567656E02


@contextlib.contextmanager
def my_turn(engine: Engine, settings: Settings) -> Iterator[bool]:
    """Yields True when this process may prune now (and holds the turn until the block ends)."""
    if engine.dialect.name == "postgresql":
        if not settings.listen_notify:
            yield True
            return
        with engine.connect() as conn:
            got = bool(
                conn.execute(
                    text("SELECT pg_try_advisory_lock(:k)"), {"k": PRUNE_LOCK_KEY}
                ).scalar_one()
            )
            conn.commit()
            try:
                yield got
            finally:
                if got:
                    conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": PRUNE_LOCK_KEY})
                    conn.commit()
        return
    database = engine.url.database
    path = Path(f"{database}.prune.lock") if database else settings.data_dir / "prune.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
