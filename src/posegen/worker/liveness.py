"""The lock a worker holds for its whole life so its peers can tell, in about a second, that it
died (:mod:`posegen.queue.liveness` has the probe side).

- PostgreSQL: one dedicated session, which is also the worker's LISTEN connection, holds
  ``pg_advisory_lock(hashtextextended(worker id, 0))``. If the session drops (the server
  restarted, an admin terminated it, the network failed) the worker stops claiming until it has
  the lock again: work claimed without it would be taken away at once by a peer.
- SQLite: an exclusive ``flock`` on the worker's own lock file, held by an open descriptor.

Not held at all with ``POSEGEN_DEAD_WORKER_CHECK_SECONDS=0`` or, on PostgreSQL, with
``POSEGEN_LISTEN_NOTIFY=false`` (PgBouncer in transaction mode has no session to hold it):
such a worker registers no liveness and its generations are recovered by their leases.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import psycopg
from sqlalchemy import Engine

from posegen.config import Settings
from posegen.db.engine import is_sqlite
from posegen.queue import liveness
from posegen.queue.dialect_pg import CHANNEL

log = logging.getLogger(__name__)

#: NOTIFY channel that asks every worker to run its dead-worker check now (a worker sends it
#: when it takes its lock: a restarted service has its predecessor's work picked up at once).
RECOVER_CHANNEL = "posegen_recover"
#: Pause between attempts to get the session (and the lock) back.
RECONNECT_SECONDS = 0.5


class Holder(Protocol):
    kind: str
    #: True when this holder also LISTENs for new work (the worker needs no other listener).
    listens: bool

    def held(self) -> bool: ...

    def close(self) -> None: ...


def hold(
    settings: Settings,
    engine: Engine,
    worker_id: str,
    on_work: Callable[[], None],
    on_recover: Callable[[], None],
) -> Holder | None:
    """Start holding this worker's liveness lock; None where none can be held."""
    if settings.dead_worker_check_seconds <= 0:
        return None
    if is_sqlite(engine):
        folder = liveness.lock_dir(engine)
        if folder is None:
            return None
        return FileLock(liveness.lock_file(folder, worker_id))
    if not settings.listen_notify:
        return None
    return SessionLock(engine, worker_id, on_work, on_recover, settings.poll_interval_seconds)


class FileLock:
    """An exclusive ``flock`` held from construction to :meth:`close`."""

    kind = liveness.FLOCK
    listens = False

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = liveness.hold_flock(path)

    def held(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is None:
            return
        # Unlink first, while still holding the lock: a probe that opened the file meanwhile
        # takes the lock of a gone file and finds nothing left to requeue.
        try:
            self.path.unlink(missing_ok=True)
        finally:
            os.close(self._fd)
            self._fd = None


class SessionLock:
    """A thread that keeps one session holding the advisory lock and LISTENing."""

    kind = liveness.PG_ADVISORY
    listens = True

    def __init__(
        self,
        engine: Engine,
        worker_id: str,
        on_work: Callable[[], None],
        on_recover: Callable[[], None],
        poll: float,
    ) -> None:
        self._conninfo = engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        self._id = worker_id
        self._on_work = on_work
        self._on_recover = on_recover
        self._poll = poll
        self._held = threading.Event()
        self._stop = threading.Event()
        self._warned = False
        self._thread = threading.Thread(target=self._run, name="posegen-liveness", daemon=True)
        self._thread.start()

    def held(self) -> bool:
        return self._held.is_set()

    def wait_held(self, timeout: float) -> bool:
        return self._held.wait(timeout)

    def close(self) -> None:
        """Stop and end the session (which releases the lock) within about half a second."""
        self._stop.set()
        self._thread.join(timeout=5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self._session():
                    # Our previous session still holds it: the server has not yet noticed that
                    # connection is gone. Until we have it, claims stay paused.
                    self._complain("liveness lock still held by an old session; retrying")
            except psycopg.Error as exc:
                # Claims pause (``held`` is False); heartbeats and polling carry on.
                self._complain("liveness session lost; reconnecting", str(exc))
            finally:
                self._held.clear()
            self._stop.wait(RECONNECT_SECONDS)

    def _complain(self, message: str, error: str | None = None) -> None:
        """One warning per outage, not one per retry."""
        (log.debug if self._warned else log.warning)(
            message, extra={"worker": self._id, "error": error}
        )
        self._warned = True

    def _session(self) -> bool:
        """One session; False when the lock could not be taken."""
        with psycopg.connect(self._conninfo, autocommit=True, connect_timeout=5) as conn:
            got = conn.execute(
                f"SELECT pg_try_advisory_lock({liveness.PG_KEY_SQL.format('%s')})",
                (self._id,),
            ).fetchone()
            if not got or not got[0]:
                return False
            conn.execute("LISTEN " + CHANNEL)
            conn.execute("LISTEN " + RECOVER_CHANNEL)
            conn.execute("SELECT pg_notify(%s, '')", (RECOVER_CHANNEL,))
            self._held.set()
            self._warned = False
            self._on_work()  # claim again now, and anything queued while we were away
            while not self._stop.is_set():
                # Short waits whatever the poll interval: a stopping worker ends its session
                # (and frees its lock) at once.
                for note in conn.notifies(timeout=min(self._poll, 0.5), stop_after=1):
                    if note.channel == RECOVER_CHANNEL:
                        if note.pid != conn.info.backend_pid:
                            self._on_recover()
                    else:
                        self._on_work()
        return True
