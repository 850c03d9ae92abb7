"""One event feed per API process, shared by every open event stream of that process.

Streams do not query the database. They subscribe here and await their :class:`Subscription`;
the feed reads ``generation_events`` on its own thread, for every watched generation at once,
and hands each stream the rows it has not had yet:

- PostgreSQL: one LISTEN connection on ``posegen_events`` (a trigger NOTIFYs
  ``<generation id>:<event id>`` in the statement that appends events, see migration
  ``i_progress``). A notification marks that one generation due; the reader then runs one query
  for all due generations, however many streams watch them. A sweep of every watched generation
  runs every ``sweep_seconds`` anyway (it notices deleted generations and is the safety net).
- Without LISTEN (SQLite, ``POSEGEN_LISTEN_NOTIFY=false``, or while the LISTEN connection is
  down): one read of every watched generation each ``poll_seconds``; on SQLite only when some
  connection committed since the last look (``PRAGMA data_version``, no read otherwise). The
  sweep with statuses still runs every ``sweep_seconds``.

Exactly once: each subscription remembers the highest event id handed to it (``sent``) and gets
only rows above it, in id order; a generation is read from the lowest ``sent`` of its
subscribers. Whatever woke the reader (a notification, a sweep, a reconnect of the LISTEN
connection), the rows come from the table, so a lost connection loses nothing and repeats
nothing: the next read starts from the same cursors.

The reader keeps one pooled connection of its own between reads (no checkout per read). The
threads, and that connection, live only while some stream is open, so an idle process holds no
connection.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections import defaultdict
from dataclasses import dataclass

import psycopg
from fastapi.sse import format_sse_event
from sqlalchemy import Connection, Engine, and_, or_, select

from posegen.db.engine import database_errors
from posegen.db.models import TERMINAL_STATUSES, GenerationEvent, PoseGeneration
from posegen.generations_read import TERMINAL_EVENT_KINDS, EventRow, stream_status_column

log = logging.getLogger(__name__)

#: The channel the ``generation_events`` trigger notifies (payload ``"<gid>:<event id>"``).
CHANNEL = "posegen_events"
#: Generations per read statement: keeps each statement's parameter list bounded.
CHUNK = 500
#: After a notification, how long the reader waits for more before it reads: under a stream of
#: events one read then serves several of them (fewer queries and fewer, larger writes).
COALESCE_SECONDS = 0.01
#: Streams woken per turn of the event loop (see :func:`_deliver`).
DELIVER_PER_TURN = 100
#: How long the LISTEN loop waits for notifications before checking whether it should stop.
LISTEN_TICK_SECONDS = 0.5

_TERMINAL = frozenset(s.value for s in TERMINAL_STATUSES)


@dataclass(frozen=True)
class Batch:
    """Rows for one subscription, in id order; ``ended``: nothing follows them. ``frames``:
    those rows as SSE bytes, formatted once per generation and shared by all its streams."""

    events: list[EventRow]
    ended: bool
    frames: bytes = b""


def event_bytes(event: EventRow, generation_id: int) -> bytes:
    """One event as an SSE frame: ``id`` is the row id (what ``Last-Event-ID`` resumes after)."""
    payload = {
        "id": event.id,
        "kind": event.kind,
        "generationId": generation_id,
        "data": event.data,
        "createdAt": event.created_at.isoformat(),
    }
    return format_sse_event(
        data_str=json.dumps(payload, separators=(",", ":")),
        event=event.kind,
        id=str(event.id),
    )


class Subscription:
    """One stream's place in the feed. ``sent`` is written by the feed's reader only.

    Not an :class:`asyncio.Queue` with a timeout per wait: at thousands of streams the queue's
    bookkeeping and a timer armed and cancelled per delivery were a third of the event loop's
    work. Batches go to a plain list and one future wakes the stream; its keep-alive and end
    come from one timer per stream that fires at most every keep-alive interval (see
    :func:`posegen.api.sse.feed_stream`), whatever the number of deliveries.
    """

    __slots__ = ("generation_id", "loop", "pending", "sent", "waiter")

    def __init__(self, generation_id: int, after_id: int, loop: asyncio.AbstractEventLoop) -> None:
        self.generation_id = generation_id
        self.sent = after_id
        self.loop = loop
        self.pending: list[Batch] = []
        self.waiter: asyncio.Future[None] | None = None

    def wake(self) -> None:
        """Let the stream's :meth:`wait` return (on the stream's loop)."""
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> list[Batch]:
        """The batches delivered since the last call; if none, wait for a delivery or a
        :meth:`wake` (then maybe none)."""
        if not self.pending:
            self.waiter = waiter = self.loop.create_future()
            try:
                await waiter
            finally:
                self.waiter = None
        batches, self.pending = self.pending, []
        return batches


class EventFeed:
    """The process's reader (and, on PostgreSQL, listener) of generation events."""

    def __init__(
        self, engine: Engine, poll_seconds: float, listen: bool, sweep_seconds: float = 5.0
    ) -> None:
        self.engine = engine
        self.poll_seconds = poll_seconds
        self.sweep_seconds = max(sweep_seconds, poll_seconds)
        self.listen = listen and engine.dialect.name == "postgresql"
        #: Statements the reader ran (tests and the benchmark read it).
        self.queries = 0
        #: True while the LISTEN connection is up (polling otherwise).
        self.listening = False
        self._lock = threading.Lock()
        self._subs: dict[int, set[Subscription]] = defaultdict(set)
        self._due: set[int] = set()
        #: Generations with a new subscriber: their next read includes the status.
        self._fresh: set[int] = set()
        self._sweep_all = False
        self._wake = threading.Event()
        self._reader: threading.Thread | None = None
        #: The reader thread's connection (only that thread touches it).
        self._conn: Connection | None = None
        self._listener_stop: threading.Event | None = None
        self._closed = False
        #: SQLite: ``PRAGMA data_version`` at the last look (see :meth:`_unchanged`).
        self._data_version: int | None = None

    # --- the event loop's side -------------------------------------------------------------
    def subscribe(self, generation_id: int, after_id: int) -> Subscription:
        """Follow ``generation_id`` from after ``after_id`` (call on the stream's event loop)."""
        sub = Subscription(generation_id, after_id, asyncio.get_running_loop())
        with self._lock:
            self._subs[generation_id].add(sub)
            self._due.add(generation_id)
            self._fresh.add(generation_id)
            if self._reader is None and not self._closed:
                self._reader = threading.Thread(
                    target=self._read_loop, name="posegen-event-feed", daemon=True
                )
                self._reader.start()
            if self.listen and self._listener_stop is None and not self._closed:
                self._listener_stop = stop = threading.Event()
                threading.Thread(
                    target=self._listen_loop, args=(stop,), name="posegen-event-listen", daemon=True
                ).start()
        self._wake.set()
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        with self._lock:
            self._drop(sub)
        self._wake.set()  # lets an idle reader notice it has nothing left to watch

    def subscribers(self) -> int:
        """Open subscriptions (streams following a generation)."""
        with self._lock:
            return sum(len(subs) for subs in self._subs.values())

    def watched(self) -> int:
        """Generations with at least one subscriber."""
        with self._lock:
            return len(self._subs)

    def close(self) -> None:
        """Stop the threads (open streams get nothing more; the app is shutting down)."""
        with self._lock:
            self._closed = True
            self._subs.clear()
        self._wake.set()

    # --- the reader thread -----------------------------------------------------------------
    def _drop(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.generation_id)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.generation_id]

    def _read_loop(self) -> None:
        next_sweep = next_poll = time.monotonic()
        while True:
            with self._lock:
                if self._closed or not self._subs:
                    # Idle: stop, and let the next subscriber start a fresh reader.
                    self._reader = None
                    self._close_connection()
                    if self._listener_stop is not None:
                        self._listener_stop.set()
                        self._listener_stop = None
                    self.listening = False
                    return
            wake_at = next_sweep if self.listening else min(next_sweep, next_poll)
            if self._wake.wait(max(0.0, wake_at - time.monotonic())):
                time.sleep(COALESCE_SECONDS)
            self._wake.clear()
            now = time.monotonic()
            with self._lock:
                sweep = self._sweep_all or now >= next_sweep
                poll = not self.listening and now >= next_poll
                self._sweep_all = False
                due = self._due & self._subs.keys()
                gens = set(self._subs) if sweep or poll else due
                # Statuses only on a sweep or for new subscribers: between them, rows alone
                # say whether a stream ended (a deleted generation is noticed by the sweep).
                with_status = sweep or bool(self._fresh & gens)
                self._due.clear()
                self._fresh.clear()
                cursors = {g: min(s.sent for s in self._subs[g]) for g in gens}
            if sweep:
                next_sweep = now + self.sweep_seconds
            if poll:
                next_poll = now + self.poll_seconds
            if not cursors:
                continue
            try:
                if poll and not sweep and not due and self._unchanged():
                    continue  # SQLite: nothing committed since the last look
                statuses, rows = self._read(cursors, with_status)
            except Exception as exc:  # the reader must outlive a bad moment
                log.warning("event feed read failed; retrying", extra={"error": str(exc)})
                self._data_version = None
                with self._lock:
                    self._due.update(cursors)
                    self._fresh.update(cursors)
                time.sleep(self.poll_seconds)
                continue
            self._dispatch(cursors, statuses, rows)

    def _unchanged(self) -> bool:
        """SQLite: True when no other connection committed since the last look (``PRAGMA
        data_version`` of the reader's connection), so a poll can skip its read. Looked at
        before each poll's read: what committed before the look, the read sees; what commits
        after it changes the next look. Always False on PostgreSQL (it has no such counter;
        it polls only while LISTEN is off or down)."""
        if self.engine.dialect.name != "sqlite":
            return False
        conn = self._connection()
        try:
            version = conn.exec_driver_sql("PRAGMA data_version").scalar()
            conn.rollback()
        except Exception:
            self._close_connection(broken=True)
            raise
        unchanged = version is not None and version == self._data_version
        self._data_version = version
        return unchanged

    def _read(
        self, cursors: dict[int, int], with_status: bool
    ) -> tuple[dict[int, str] | None, dict[int, list[EventRow]]]:
        """Status first (if asked), then events: a status that is terminal here had its last
        event committed with it, so the events read after it include that event."""
        E, G = GenerationEvent, PoseGeneration
        statuses: dict[int, str] = {}
        rows: dict[int, list[EventRow]] = defaultdict(list)
        items = sorted(cursors.items())
        conn = self._connection()
        try:
            for start in range(0, len(items), CHUNK):
                chunk = items[start : start + CHUNK]
                if with_status:
                    gids = [g for g, _ in chunk]
                    for gid, st in conn.execute(
                        select(G.id, stream_status_column()).where(G.id.in_(gids))
                    ):
                        statuses[gid] = str(getattr(st, "value", st))
                    self.queries += 1
                result = conn.execute(
                    select(E.id, E.generation_id, E.kind, E.data, E.created_at)
                    .where(or_(*(and_(E.generation_id == g, E.id > c) for g, c in chunk)))
                    .order_by(E.id)
                )
                for r in result:
                    rows[r.generation_id].append(
                        EventRow(r.id, r.kind, dict(r.data or {}), r.created_at)
                    )
                self.queries += 1
            conn.rollback()  # ends the snapshot: the next read sees what committed since
        except Exception:
            self._close_connection(broken=True)
            raise
        return (statuses if with_status else None), rows

    def _connection(self) -> Connection:
        """The reader's own connection, kept between reads while streams are open: no pool
        checkout (and pre-ping round trip) per read, and never waiting behind the routes."""
        if self._conn is None:
            with database_errors():
                self._conn = self.engine.connect()
        return self._conn

    def _close_connection(self, broken: bool = False) -> None:
        conn, self._conn = self._conn, None
        self._data_version = None  # counted per connection: the next one starts afresh
        if conn is not None:
            try:
                if broken:
                    conn.invalidate()  # not back into the pool
                conn.close()
            except Exception:  # already broken: nothing more to give back
                log.debug("event feed connection close failed", exc_info=True)

    def _dispatch(
        self,
        cursors: dict[int, int],
        statuses: dict[int, str] | None,
        rows: dict[int, list[EventRow]],
    ) -> None:
        per_loop: dict[asyncio.AbstractEventLoop, list[tuple[Subscription, Batch]]] = defaultdict(
            list
        )
        frames = {e.id: event_bytes(e, gid) for gid, evs in rows.items() for e in evs}
        shared: dict[tuple[int, int, bool], Batch] = {}
        with self._lock:
            for gid in cursors:
                if statuses is None:
                    over = False  # not read: only a terminal row ends a stream this time
                else:
                    status = statuses.get(gid)
                    over = status is None or status in _TERMINAL
                for sub in list(self._subs.get(gid, ())):
                    if sub.sent < cursors[gid]:
                        # Subscribed during the read, from further back than it read: the
                        # rows in between are missing here, and the next read (it is due) has them.
                        continue
                    first_sent = sub.sent
                    new = [e for e in rows.get(gid, ()) if e.id > first_sent]
                    ended = False
                    for i, e in enumerate(new):
                        if e.kind in TERMINAL_EVENT_KINDS:
                            new, ended = new[: i + 1], True
                            break
                    if not new and over:
                        # Deleted, or ended with no terminal event after this stream's cursor.
                        ended = True
                    if not new and not ended:
                        continue
                    if new:
                        sub.sent = new[-1].id
                    if ended:
                        self._drop(sub)
                    # Streams of a generation mostly share a cursor: one join for all of them.
                    key = (gid, first_sent, ended)
                    batch = shared.get(key)
                    if batch is None:
                        batch = Batch(new, ended, b"".join(frames[e.id] for e in new))
                        shared[key] = batch
                    per_loop[sub.loop].append((sub, batch))
        for loop, batches in per_loop.items():
            # One wake-up of each event loop for the whole read, not one per stream.
            try:
                loop.call_soon_threadsafe(_deliver, batches)
            except RuntimeError:  # that loop has closed: its streams are gone
                with self._lock:
                    for sub, _ in batches:
                        self._drop(sub)

    # --- the listener thread (PostgreSQL) --------------------------------------------------
    def _listen_loop(self, stop: threading.Event) -> None:
        conninfo = self.engine.url.set(drivername="postgresql").render_as_string(
            hide_password=False
        )
        while not stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute("LISTEN " + CHANNEL)
                    self.listening = True
                    self._request_sweep()  # whatever happened while nobody was listening
                    while not stop.is_set():
                        for note in conn.notifies(timeout=LISTEN_TICK_SECONDS):
                            self._notified(note.payload)
            except Exception as exc:  # polling covers until LISTEN is back
                if stop.is_set():
                    return
                log.warning(
                    "event feed LISTEN connection lost; polling until it is back",
                    extra={"error": str(exc)},
                )
            finally:
                self.listening = False
            self._request_sweep()  # the reader switches to polling now, not at its next sweep
            stop.wait(self.poll_seconds)

    def _notified(self, payload: str) -> None:
        gid_text, _, eid_text = payload.partition(":")
        try:
            gid, eid = int(gid_text), int(eid_text)
        except ValueError:
            return
        with self._lock:
            subs = self._subs.get(gid)
            # Skip what every subscriber already has (a sweep may have read it first).
            if not subs or eid <= min(s.sent for s in subs):
                return
            self._due.add(gid)
        self._wake.set()

    def _request_sweep(self) -> None:
        with self._lock:
            self._sweep_all = True
        self._wake.set()


def _deliver(batches: list[tuple[Subscription, Batch]], start: int = 0) -> None:
    """Hand out one read's batches on the streams' loop, :data:`DELIVER_PER_TURN` streams per
    turn of the loop: between turns it reads its sockets, so a read that wakes thousands of
    streams (each then writes) does not hold every other request behind all of their writes."""
    end = start + DELIVER_PER_TURN
    for sub, batch in batches[start:end]:
        sub.pending.append(batch)
        sub.wake()
    if end < len(batches):
        batches[0][0].loop.call_soon(_deliver, batches, end)
