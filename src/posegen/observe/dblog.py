"""Log lines about a generation, kept in ``generation_logs`` for the dashboard's generation page.

A logging handler takes every record at INFO or above that carries a ``generation_id`` (from
``extra`` or the log context) and hands it to a background thread, which inserts what has
gathered in one statement every ``interval`` seconds, or every 500 lines when they come faster:
logging never waits on the database, and a busy worker costs one insert per batch, not one per
line. Past a backlog of 50,000 lines (the database far behind) new lines are not kept.
The log is bounded: this process
keeps at most :data:`MAX_LINES_PER_GENERATION` lines per generation (the first ones; later
lines at WARNING or above still go in, up to twice that), and rows go with their generation.
If the database is unreachable the lines are dropped (they are still on stderr).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue as stdqueue
import threading
import time
from collections import OrderedDict
from typing import Any

from sqlalchemy import Engine, insert, select

from posegen.db.engine import read_connection, write_transaction
from posegen.db.models import GenerationLog
from posegen.observe.context import current
from posegen.observe.logs import ContextFilter, record_fields, redact

#: Lines one process keeps per generation (a 500-pose generation logs ~510 at INFO).
MAX_LINES_PER_GENERATION = 1000
#: Generations whose line counts a process remembers (older ones start counting again).
_TRACKED = 10_000
_BATCH = 500
#: Lines waiting for the database beyond which new ones are not kept.
_MAX_BACKLOG = 50_000

_THREAD_NAME = "posegen-dblog"


class GenerationLogHandler(logging.Handler):
    """Attach with :func:`attach`; :meth:`close` flushes what is queued."""

    def __init__(self, engine: Engine, interval: float = 0.5) -> None:
        super().__init__(logging.INFO)
        self.addFilter(ContextFilter())
        self._engine = engine
        self._interval = interval
        self._rows: stdqueue.SimpleQueue[dict[str, Any] | None] = stdqueue.SimpleQueue()
        self._counts: OrderedDict[int, int] = OrderedDict()
        self._count_lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name=_THREAD_NAME, daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        if threading.current_thread().name == _THREAD_NAME:
            return  # this thread's own troubles must not feed back into the database
        gen_id = record.__dict__.get("generation_id", current().get("generation_id"))
        if not isinstance(gen_id, int) or not self._admit(gen_id, record.levelno):
            return
        try:
            fields = record_fields(record)
            fields.pop("generation_id", None)
            if record.exc_info:
                fields["exc"] = logging.Formatter().formatException(record.exc_info)
            row = {
                "generation_id": gen_id,
                "created_at": dt.datetime.fromtimestamp(record.created, dt.UTC),
                "level": record.levelname[:16],
                "logger": record.name[:100],
                "message": redact(record.getMessage()),
                # Through JSON text and back: values the column could not store become strings,
                # and a secret inside a field is redacted like the message.
                "fields": json.loads(redact(json.dumps(fields, default=str))),
            }
        except Exception:
            self.handleError(record)
            return
        if self._rows.qsize() >= _MAX_BACKLOG:
            return  # the database is far behind: keep memory bounded (stderr has the line)
        self._rows.put(row)

    def _admit(self, gen_id: int, level: int) -> bool:
        limit = MAX_LINES_PER_GENERATION * (2 if level >= logging.WARNING else 1)
        with self._count_lock:
            kept = self._counts.pop(gen_id, 0)
            admitted = kept < limit
            self._counts[gen_id] = kept + 1 if admitted else kept
            if len(self._counts) > _TRACKED:
                self._counts.popitem(last=False)
        return admitted

    def close(self) -> None:
        self._rows.put(None)
        self._thread.join(timeout=10)
        super().close()

    def _run(self) -> None:
        while True:
            first = self._rows.get()
            if first is None:
                return
            rows, stop = [first], False
            # Gather for one interval or one full batch, whichever comes first: a backlog is
            # written batch after batch at the database's speed, a trickle once an interval.
            deadline = time.monotonic() + self._interval
            while len(rows) < _BATCH:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self._rows.get(timeout=left)
                except stdqueue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                rows.append(nxt)
            self._insert(rows)
            if stop:
                return

    def _insert(self, rows: list[dict[str, Any]]) -> None:
        try:
            with write_transaction(self._engine) as conn:
                conn.execute(insert(GenerationLog), rows)
            return
        except Exception:
            if len(rows) == 1:
                # A generation deleted meanwhile (foreign key), or the database away: the line
                # is lost here but was printed on stderr.
                logging.getLogger(__name__).warning(
                    "could not store a generation log line", exc_info=True
                )
                return
        for row in rows:  # one bad row (a deleted generation) must not cost the others
            self._insert([row])


def attach(engine: Engine) -> GenerationLogHandler:
    """Start keeping generation log lines of this process in ``engine``'s database."""
    handler = GenerationLogHandler(engine)
    logging.getLogger().addHandler(handler)
    return handler


def detach(handler: GenerationLogHandler) -> None:
    """Flush and remove a handler from :func:`attach`."""
    logging.getLogger().removeHandler(handler)
    handler.close()


def lines(engine: Engine, generation_id: int, limit: int = 500) -> list[dict[str, Any]]:
    """A generation's stored log lines, oldest first (at most ``limit``)."""
    with read_connection(engine) as conn:
        rows = conn.execute(
            select(
                GenerationLog.created_at,
                GenerationLog.level,
                GenerationLog.logger,
                GenerationLog.message,
                GenerationLog.fields,
            )
            .where(GenerationLog.generation_id == generation_id)
            .order_by(GenerationLog.id)
            .limit(limit)
        ).all()
    return [
        {
            "at": r.created_at,
            "level": r.level,
            "logger": r.logger,
            "message": r.message,
            "fields": dict(r.fields or {}),
        }
        for r in rows
    ]
