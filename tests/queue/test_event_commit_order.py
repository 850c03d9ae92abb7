"""Event ids of one generation become visible in id order.

Readers of ``generation_events`` (the API's event feed, ``Last-Event-ID`` resumes) keep "the
highest id handed out" per generation and read only rows above it. That is exactly-once only
if a generation's rows never commit out of id order: a transaction holding id 10 that commits
after another one's id 11 was read would be skipped for good. Two transactions appending to one
generation at once must therefore serialise (PostgreSQL: a per-generation lock taken before the
id is drawn, migration ``sse_order``; SQLite: one writer at a time).
"""

from __future__ import annotations

import threading
import time

from queue_helpers import Owner, waiting_on_lock
from sqlalchemy import Engine, select, text

from posegen import queue
from posegen.config import Settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationEvent
from posegen.queue import events


def _read_after(engine: Engine, gid: int, cursor: int) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                select(GenerationEvent.id)
                .where(GenerationEvent.generation_id == gid, GenerationEvent.id > cursor)
                .order_by(GenerationEvent.id)
            )
        )


def test_a_later_append_cannot_commit_before_an_earlier_one(
    engine: Engine, settings: Settings, owner: Owner
) -> None:
    gid = queue.submit(engine, settings, owner.request()).generation_id
    cursor = max(_read_after(engine, gid, 0))
    other = make_engine(settings)
    try:
        # A appends (and so draws its id) but has not committed yet.
        a = engine.connect()
        a_tx = a.begin()
        events.append(a, [events.Event(gid, "pose", events.progress("processing", 1, 0, 2))])
        b_pid: list[int] = []
        b_done = threading.Event()

        def second() -> None:
            # B appends to the same generation and commits at once.
            with other.begin() as b:
                if b.dialect.name == "postgresql":
                    b_pid.append(int(b.scalar(text("SELECT pg_backend_pid()"))))
                events.append(
                    b, [events.Event(gid, "pose", events.progress("processing", 2, 0, 2))]
                )
            b_done.set()

        t = threading.Thread(target=second)
        t.start()
        # Until B has committed, or is seen waiting for A (PostgreSQL), or 2 s have passed
        # (SQLite's writer lock: B cannot even begin its insert).
        deadline = time.monotonic() + 2.0
        while not b_done.is_set() and time.monotonic() < deadline:
            if b_pid and waiting_on_lock(engine, b_pid[0]):
                break
            time.sleep(0.02)
        # A reader runs now and moves its cursor past whatever it was handed...
        seen = _read_after(engine, gid, cursor)
        if seen:
            cursor = seen[-1]
        a_tx.commit()
        a.close()
        t.join(30)
        assert b_done.is_set()
        # ...and its next read must still find every row it has not had.
        seen += _read_after(engine, gid, cursor)
        with engine.connect() as conn:
            appended = list(
                conn.scalars(
                    select(GenerationEvent.id)
                    .where(GenerationEvent.generation_id == gid, GenerationEvent.kind == "pose")
                    .order_by(GenerationEvent.id)
                )
            )
        assert len(appended) == 2
        assert seen == appended
    finally:
        other.dispose()
