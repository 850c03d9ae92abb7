"""Who is alive: the lock each worker holds for its whole life, and the probe recovery uses to
tell a dead worker from a living one in about a second instead of a lease.

- PostgreSQL: a session advisory lock on ``hashtextextended(worker id, 0)``, held by the worker's
  LISTEN connection. When the process or its host dies the server drops the session and the lock
  with it. The probe is ``pg_try_advisory_xact_lock`` on that key: it succeeds only when nobody
  holds it.
- SQLite (one host): an exclusive ``flock`` on ``<database file>.workers/<hash of id>.lock``. The
  kernel releases it when the process dies, whatever the pid does next. The folder sits next to the
  database file (under the data dir by default) so every process sharing the database agrees on it.

A worker records which kind it holds in ``workers.liveness``; recovery only judges workers that
registered one, so a worker behind PgBouncer in transaction mode (no session lock) is never taken
for dead: its generations wait for the lease.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path

from sqlalchemy import Engine

#: ``workers.liveness`` values.
PG_ADVISORY = "pg-advisory"
FLOCK = "flock"

#: SQL for the advisory lock key of a worker id (stable: hash partitioning relies on it).
PG_KEY_SQL = "hashtextextended({}, 0)"


def lock_dir(engine: Engine) -> Path | None:
    """The folder of the SQLite lock files; None for an in-memory database."""
    database = engine.url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).resolve()
    return path.with_name(path.name + ".workers")


def lock_file(folder: Path, worker_id: str) -> Path:
    """A worker's lock file: a hash of its id (ids hold a host name, not a safe file name)."""
    return folder / (hashlib.sha256(worker_id.encode()).hexdigest()[:32] + ".lock")


def hold_flock(path: Path) -> int:
    """Create ``path`` and take its exclusive lock for the life of the returned descriptor."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BaseException:
        os.close(fd)
        raise
    return fd


@contextlib.contextmanager
def probe_flock(path: Path) -> Iterator[bool]:
    """Yield True when the worker owning ``path`` is dead (its lock could be taken).

    The lock is kept while the caller requeues that worker's generations, and the file is
    removed afterwards (its owner is gone for good: ids are never reused). A missing file is
    not proof of death (another data dir, a worker not started yet): False, the lease decides.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        yield False
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise
            yield False
            return
        yield True
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
    finally:
        os.close(fd)
