"""The shared event feed over a real HTTP server: many streams on one and on many generations,
exactly-once across reconnects, the LISTEN connection killed mid-stream, and the database's
queries independent of how many streams are open."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from live_server import live_server
from sqlalchemy import Engine, event, select, text

from posegen.api import event_feed, server, sse
from posegen.api.app import create_app
from posegen.api.event_feed import EventFeed
from posegen.config import Settings
from posegen.db.engine import make_engine
from posegen.db.models import GenerationEvent
from posegen.queue import events as queue_events

STREAMS_PER_USER = 500


@pytest.fixture
def feed_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={
            "sse_max_streams_per_user": STREAMS_PER_USER,
            "max_active_generations": 50,
            "submissions_per_minute": 100,
        }
    )


@pytest.fixture
def feed_engine(feed_settings: Settings) -> Iterator[Engine]:
    engine = make_engine(feed_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def writer(feed_settings: Settings) -> Iterator[Engine]:
    """A second engine for the test's own writes, so they never count as the API's queries."""
    engine = make_engine(feed_settings)
    yield engine
    engine.dispose()


@pytest.fixture
def feed_app(feed_settings: Settings, feed_engine: Engine) -> Iterator[FastAPI]:
    app = create_app(feed_settings, feed_engine)
    yield app
    app.state.event_feed.close()


@pytest.fixture
def base(feed_app: FastAPI, feed_settings: Settings) -> Iterator[str]:
    with live_server(feed_app, feed_settings) as (url, _):
        yield url


@pytest.fixture
def user_key(feed_engine: Engine) -> str:
    from posegen import accounts
    from posegen.library import seed_library

    seed_library(feed_engine)
    return accounts.create_user(feed_engine, "Uma User", "uma@example.com").api_key


def append_events(engine: Engine, gids: list[int], kind: str, n: int) -> None:
    """One event per generation, appended by the queue's own code in one transaction."""
    with engine.begin() as conn:
        queue_events.append(
            conn,
            [
                queue_events.Event(g, kind, queue_events.progress("processing", n, 0, 100))
                for g in gids
            ],
        )


def db_event_ids(engine: Engine, gid: int) -> list[int]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(GenerationEvent.id)
                .where(GenerationEvent.generation_id == gid)
                .order_by(GenerationEvent.id)
            ).scalars()
        )


def _ok(response: httpx.Response) -> Any:
    assert response.status_code < 300, response.text
    return response.json()


def _submit(base: str, key: str, count: int) -> list[int]:
    auth = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=base, headers=auth, timeout=30) as client:
        pid = client.post("/projects", json={"name": "live"}).json()["id"]
        return [
            _ok(client.post("/generations", json={"projectId": pid, "poseIds": [1]}))["id"]
            for _ in range(count)
        ]


class Watcher:
    """One SSE client: the event ids it received, in order."""

    def __init__(self, gid: int) -> None:
        self.gid = gid
        self.ids: list[int] = []
        self.kinds: list[str] = []
        self.ended = False

    async def run(
        self, client: httpx.AsyncClient, after: int | None = None, stop_after: int | None = None
    ) -> None:
        headers = {"Last-Event-ID": str(after)} if after is not None else {}
        async with client.stream("GET", f"/generations/{self.gid}/events", headers=headers) as r:
            assert r.status_code == 200, await r.aread()
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    data = json.loads(line[5:])
                    self.ids.append(int(data["id"]))
                    self.kinds.append(data["kind"])
                    if stop_after is not None and len(self.ids) >= stop_after:
                        return
        self.ended = True


def _client(base: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        base_url=base,
        headers={"Authorization": f"Bearer {key}"},
        timeout=60,
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=1000),
    )


async def _until(predicate: Any, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def _watch_and_emit(
    base: str, key: str, writer: Engine, gids: list[int], per_gen: int, events: int
) -> list[Watcher]:
    """``per_gen`` streams on each generation; ``events`` pose events then ``completed`` each."""

    async def main() -> list[Watcher]:
        async with _client(base, key) as client:
            watchers = [Watcher(g) for g in gids for _ in range(per_gen)]
            tasks = [asyncio.create_task(w.run(client)) for w in watchers]
            await _until(lambda: all(w.ids for w in watchers))  # each has its queued event
            for i in range(events):
                await asyncio.to_thread(append_events, writer, gids, "pose", i)
                await asyncio.sleep(0.01)
            await asyncio.to_thread(append_events, writer, gids, "completed", events)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return watchers

    return asyncio.run(main())


def test_many_streams_on_one_generation_get_every_event_once(
    base: str, user_key: str, writer: Engine
) -> None:
    [gid] = _submit(base, user_key, 1)
    watchers = _watch_and_emit(base, user_key, writer, [gid], per_gen=60, events=15)
    expected = db_event_ids(writer, gid)
    assert len(expected) == 17  # queued, 15 poses, completed
    for w in watchers:
        assert w.ended and w.ids == expected
        assert w.kinds[-1] == "completed"


def test_many_streams_on_many_generations_get_their_own_events(
    base: str, user_key: str, writer: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A read that wakes 48 streams hands them out 7 per turn of the loop (100 in production).
    monkeypatch.setattr(event_feed, "DELIVER_PER_TURN", 7)
    gids = _submit(base, user_key, 12)
    watchers = _watch_and_emit(base, user_key, writer, gids, per_gen=4, events=8)
    expected = {g: db_event_ids(writer, g) for g in gids}
    assert all(len(ids) == 10 for ids in expected.values())
    assert len(watchers) == 48
    for w in watchers:
        assert w.ended and w.ids == expected[w.gid]


def test_reconnects_with_last_event_id_see_every_event_once(
    base: str, user_key: str, writer: Engine
) -> None:
    [gid] = _submit(base, user_key, 1)

    async def main() -> list[int]:
        seen: list[int] = []
        async with _client(base, user_key) as client:
            for round_ in range(5):
                # Events land while this client is away, and while it is connected.
                await asyncio.to_thread(append_events, writer, [gid], "pose", 2 * round_)
                w = Watcher(gid)
                after = seen[-1] if seen else None
                task = asyncio.create_task(w.run(client, after=after, stop_after=2))
                await _until(lambda w=w: bool(w.ids))
                await asyncio.to_thread(append_events, writer, [gid], "pose", 2 * round_ + 1)
                await asyncio.wait_for(task, 20)
                seen.extend(w.ids)
            await asyncio.to_thread(append_events, writer, [gid], "completed", 99)
            last = Watcher(gid)
            await asyncio.wait_for(last.run(client, after=seen[-1]), 20)
            assert last.ended
            seen.extend(last.ids)
        return seen

    seen = asyncio.run(main())
    assert seen == db_event_ids(writer, gid)
    assert len(seen) == len(set(seen)) == 12  # queued, 10 poses, completed


def _listen_pid(writer: Engine) -> int | None:
    with writer.connect() as conn:
        return conn.execute(
            text(
                "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
                "AND query = 'LISTEN posegen_events'"
            )
        ).scalar()


def test_killed_listen_connection_loses_and_repeats_nothing(
    base: str, user_key: str, writer: Engine, feed_app: FastAPI
) -> None:
    if writer.dialect.name != "postgresql":
        pytest.skip("LISTEN is PostgreSQL's; SQLite's feed always polls")
    feed: EventFeed = feed_app.state.event_feed
    gids = _submit(base, user_key, 3)

    async def main() -> list[Watcher]:
        async with _client(base, user_key) as client:
            watchers = [Watcher(g) for g in gids for _ in range(5)]
            tasks = [asyncio.create_task(w.run(client)) for w in watchers]
            await _until(lambda: all(w.ids for w in watchers) and feed.listening)
            first = await asyncio.to_thread(_listen_pid, writer)
            assert first is not None
            for i in range(20):
                await asyncio.to_thread(append_events, writer, gids, "pose", i)
                if i == 5:
                    with writer.connect() as conn:
                        killed = conn.execute(
                            text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
                        ).scalar()
                    assert killed
                await asyncio.sleep(0.02)
            # The feed is back on a new LISTEN connection (and polled in between).
            await _until(lambda: feed.listening and _listen_pid(writer) not in (None, first))
            for i in range(20, 25):
                await asyncio.to_thread(append_events, writer, gids, "pose", i)
            await asyncio.to_thread(append_events, writer, gids, "completed", 25)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return watchers

    watchers = asyncio.run(main())
    for w in watchers:
        assert w.ended and w.ids == db_event_ids(writer, w.gid)
        assert len(w.ids) == 27


def _reader_pid(feed: EventFeed) -> int | None:
    """The backend of the feed reader's own connection (kept between reads)."""
    conn = feed._conn  # the reader's; no public face needed outside this test
    try:
        return int(conn.connection.dbapi_connection.info.backend_pid)  # type: ignore[union-attr]
    except Exception:  # none yet, or being replaced by the reader thread right now
        return None


def test_killed_reader_connection_loses_and_repeats_nothing(
    base: str, user_key: str, writer: Engine, feed_app: FastAPI
) -> None:
    """The reader keeps one connection between reads; killed mid-stream, the next read fails,
    a new connection reads from the same cursors."""
    if writer.dialect.name != "postgresql":
        pytest.skip("a SQLite connection cannot be killed from outside")
    feed: EventFeed = feed_app.state.event_feed
    gids = _submit(base, user_key, 3)

    async def main() -> list[Watcher]:
        async with _client(base, user_key) as client:
            watchers = [Watcher(g) for g in gids for _ in range(5)]
            tasks = [asyncio.create_task(w.run(client)) for w in watchers]
            await _until(lambda: all(w.ids for w in watchers))
            for i in range(20):
                await asyncio.to_thread(append_events, writer, gids, "pose", i)
                if i == 5:
                    first = _reader_pid(feed)
                    assert first is not None
                    with writer.connect() as conn:
                        killed = conn.execute(
                            text("SELECT pg_terminate_backend(:pid)"), {"pid": first}
                        ).scalar()
                    assert killed
                await asyncio.sleep(0.02)
            # The next read failed on the dead connection; a new one reads from the same cursors.
            await _until(lambda: _reader_pid(feed) not in (None, first))
            await asyncio.to_thread(append_events, writer, gids, "completed", 20)
            await asyncio.wait_for(asyncio.gather(*tasks), 30)
            return watchers

    watchers = asyncio.run(main())
    for w in watchers:
        assert w.ended and w.ids == db_event_ids(writer, w.gid)
        assert len(w.ids) == 22


def _count_queries(engine: Engine) -> list[int]:
    counter = [0]

    def count(*_: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    return counter


def test_queries_do_not_grow_with_the_number_of_streams(
    base: str, user_key: str, writer: Engine, feed_engine: Engine, feed_app: FastAPI
) -> None:
    gids = _submit(base, user_key, 4)
    counter = _count_queries(feed_engine)
    feed: EventFeed = feed_app.state.event_feed

    async def window(per_gen: int, first: int) -> float:
        """Statements per second the API ran (every statement on its engine: the feed's, the
        streams' own, any other) while ``per_gen`` streams per generation followed 10 events."""
        async with _client(base, user_key) as client:
            watchers = [Watcher(g) for g in gids for _ in range(per_gen)]
            total = len(db_event_ids(writer, gids[0])) + 10  # the replay, then 10 live ones
            tasks = [asyncio.create_task(w.run(client, stop_after=total)) for w in watchers]
            await _until(lambda: all(w.ids for w in watchers))
            # Every stream subscribed: its opening reads (key, visibility, replay) are done and
            # stay out of the window, however slowly this machine ran them.
            await _until(lambda: feed.subscribers() == len(watchers))
            before, start = counter[0], time.monotonic()
            for i in range(first, first + 10):
                await asyncio.to_thread(append_events, writer, gids, "pose", i)
                await asyncio.sleep(max(0.0, start + 0.1 * (i - first + 1) - time.monotonic()))
            await asyncio.sleep(max(0.2, start + 1.2 - time.monotonic()))
            # A rate, not a count: the SQLite poller reads by the clock, and a loaded machine
            # stretches the window (the appends take longer), not the rate.
            rate = (counter[0] - before) / (time.monotonic() - start)
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return rate

    few = asyncio.run(window(1, 0))
    many = asyncio.run(window(25, 100))
    # 4 streams vs 100 streams on the same generations: the same reads per second (a
    # poll-per-stream design runs 25 times as many: ~1,000/s against ~40/s here).
    assert few > 0
    assert many <= few * 1.5 + 10, (few, many)


def test_streams_open_and_deliver_while_every_route_thread_is_busy(
    feed_settings: Settings, feed_engine: Engine, user_key: str, writer: Engine
) -> None:
    """Streams never take (or queue for) a thread of the routes' pool: with all of them held by
    slow requests, 30 streams still open (one reserved opening thread) and get every event."""
    settings = feed_settings.model_copy(update={"http_threads": 2, "sse_open_threads": 1})
    app = create_app(settings, feed_engine)
    release = threading.Event()
    limiters: list[Any] = []

    @app.get("/_hold")
    async def hold() -> dict[str, int]:  # holds one of the routes' threads until released
        limiters.append(anyio.to_thread.current_default_thread_limiter())
        await anyio.to_thread.run_sync(release.wait)
        return {}

    config = server.make_config(app, settings, "127.0.0.1", 0, lifespan="on")
    srv = uvicorn.Server(config)
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        while not srv.started:
            assert thread.is_alive()
            time.sleep(0.01)
        port = srv.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}/api/pose-generator"
        gids = _submit(base, user_key, 3)

        async def main() -> list[Watcher]:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as c:
                holds = [asyncio.create_task(c.get("/_hold")) for _ in range(2)]
                await _until(lambda: len(limiters) == 2)
                # POSEGEN_HTTP_THREADS sized the pool, and both of its threads are taken.
                assert limiters[0].total_tokens == 2
                await _until(lambda: limiters[0].borrowed_tokens == 2)
                async with _client(base, user_key) as client:
                    watchers = [Watcher(g) for g in gids for _ in range(10)]
                    tasks = [asyncio.create_task(w.run(client)) for w in watchers]
                    await _until(lambda: all(w.ids for w in watchers), timeout=30)
                    for i in range(3):
                        await asyncio.to_thread(append_events, writer, gids, "pose", i)
                    await asyncio.to_thread(append_events, writer, gids, "completed", 3)
                    await asyncio.wait_for(asyncio.gather(*tasks), 60)
                assert limiters[0].borrowed_tokens == 2  # held all along
                release.set()
                await asyncio.gather(*holds)
                return watchers

        watchers = asyncio.run(main())
    finally:
        release.set()
        srv.should_exit = True
        thread.join(10)
    for w in watchers:
        assert w.ended and w.ids == db_event_ids(writer, w.gid)
        assert len(w.ids) == 5  # queued, 3 poses, completed


def test_quiet_streams_get_keep_alives_and_end_after_the_maximum(
    feed_settings: Settings,
    feed_engine: Engine,
    user_key: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.2)
    settings = feed_settings.model_copy(update={"sse_max_seconds": 1.5})
    app = create_app(settings, feed_engine)
    with live_server(app, settings) as (base, _):
        [gid] = _submit(base, user_key, 1)

        async def main() -> tuple[list[str], float]:
            async with _client(base, user_key) as client:
                lines = []
                t = time.monotonic()
                async with client.stream("GET", f"/generations/{gid}/events") as r:
                    assert r.status_code == 200
                    async for line in r.aiter_lines():
                        lines.append(line)
                return lines, time.monotonic() - t

        lines, took = asyncio.run(main())
    keepalives = [line for line in lines if line.startswith(": keep-alive")]
    assert sum(line.startswith("data:") for line in lines) == 1  # the queued event
    assert 3 <= len(keepalives) <= 8, lines  # about one every 0.2 s of the 1.5 s
    assert 1.4 <= took < 15
    assert app.state.event_feed.subscribers() == 0


def test_poll_setting_keeps_the_old_loop_per_stream(
    feed_settings: Settings, feed_engine: Engine, user_key: str, writer: Engine
) -> None:
    """``POSEGEN_SSE_FEED=poll`` (kept for the benchmark's comparison) still streams exactly
    once, without the shared feed."""
    settings = feed_settings.model_copy(update={"sse_feed": "poll"})
    app = create_app(settings, feed_engine)
    with live_server(app, settings) as (base, _):
        [gid] = _submit(base, user_key, 1)
        watchers = _watch_and_emit(base, user_key, writer, [gid], per_gen=5, events=5)
    feed: EventFeed = app.state.event_feed
    assert feed.queries == 0  # the feed never ran: each stream polled for itself
    expected = db_event_ids(writer, gid)
    assert len(expected) == 7
    assert all(w.ended and w.ids == expected for w in watchers)


def test_a_stream_gets_every_middlewares_headers_and_its_frames_skip_their_wrappers(
    feed_settings: Settings, feed_engine: Engine, user_key: str, writer: Engine
) -> None:
    """The start goes through every middleware (they add their headers); the frames go straight
    to the server's send; the end goes through the middleware again."""
    app = create_app(feed_settings, feed_engine)
    seen: list[str] = []

    class Spy:  # innermost middleware: the last wrapper a frame would pass
        def __init__(self, inner: Any) -> None:
            self.inner = inner

        async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
            if not scope["path"].endswith("/events"):
                await self.inner(scope, receive, send)
                return

            async def spy(message: Any) -> None:
                seen.append(f"{message['type']}:{message.get('more_body', False)}")
                await send(message)

            await self.inner(scope, receive, spy)

    app.add_middleware(Spy)
    with live_server(app, feed_settings) as (base, _):
        [gid] = _submit(base, user_key, 1)

        async def main() -> tuple[httpx.Headers, Watcher]:
            async with _client(base, user_key) as client:
                w = Watcher(gid)
                async with client.stream("GET", f"/generations/{gid}/events") as r:
                    task = asyncio.create_task(_read_into(w, r))
                    await _until(lambda: len(w.ids) == 1)
                    for i in range(3):
                        await asyncio.to_thread(append_events, writer, [gid], "pose", i)
                        await _until(lambda n=i + 2: len(w.ids) == n)
                    await asyncio.to_thread(append_events, writer, [gid], "completed", 3)
                    await asyncio.wait_for(task, 30)
                    return r.headers, w

        headers, w = asyncio.run(main())
    assert w.ids == db_event_ids(writer, gid) and len(w.ids) == 5
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-content-type-options"] == "nosniff"
    assert len(headers["x-request-id"]) >= 8
    assert headers["cache-control"] == "no-cache"
    assert "content-length" not in headers
    # Five events in at least four writes, none through the middleware: only the start and
    # the end passed it.
    assert seen == ["http.response.start:False", "http.response.body:False"], seen


async def _read_into(w: Watcher, r: httpx.Response) -> None:
    async for line in r.aiter_lines():
        if line.startswith("data:"):
            w.ids.append(int(json.loads(line[5:])["id"]))


def test_a_client_that_leaves_gives_its_stream_back_at_once(
    base: str, user_key: str, feed_app: FastAPI
) -> None:
    """No event needs to come for the server to notice: the subscription and the user's stream
    slot are released as soon as the connection closes."""
    gids = _submit(base, user_key, 2)
    feed: EventFeed = feed_app.state.event_feed
    slots: sse.StreamSlots = feed_app.state.stream_slots

    async def main() -> float:
        async with _client(base, user_key) as client:
            watchers = [Watcher(g) for g in gids for _ in range(5)]
            tasks = [asyncio.create_task(w.run(client)) for w in watchers]
            await _until(lambda: all(w.ids for w in watchers))
            await _until(lambda: feed.subscribers() == 10)
            assert sum(slots.open.values()) == 10
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        left = time.monotonic()
        await _until(lambda: feed.subscribers() == 0 and not slots.open, timeout=10)
        return time.monotonic() - left

    took = asyncio.run(main())
    assert took < 10  # not after a keep-alive (15 s) or the stream's maximum


def test_sqlite_feed_reads_only_after_a_commit(
    feed_settings: Settings, feed_engine: Engine, user_key: str, writer: Engine
) -> None:
    """Between commits the SQLite feed's looks (``PRAGMA data_version``) read no events; a
    commit by another connection is read at the next look."""
    if writer.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's feed LISTENs; data_version is SQLite's")
    app = create_app(feed_settings, feed_engine)
    # A sweep (statuses, every sweep_seconds) would be a read; keep it out of the windows.
    app.state.event_feed = EventFeed(feed_engine, 0.05, listen=False, sweep_seconds=600)
    statements: list[str] = []
    event.listen(
        feed_engine, "before_cursor_execute", lambda *a: statements.append(str(a[2]).lower())
    )

    def reads() -> int:
        return sum("from generation_events" in s for s in statements)

    def looks() -> int:
        return sum("data_version" in s for s in statements)

    with live_server(app, feed_settings) as (base, _):
        gids = _submit(base, user_key, 2)

        async def main() -> tuple[int, int, list[Watcher]]:
            async with _client(base, user_key) as client:
                watchers = [Watcher(g) for g in gids for _ in range(3)]
                tasks = [asyncio.create_task(w.run(client)) for w in watchers]
                await _until(lambda: all(w.ids for w in watchers))
                await _until(lambda: app.state.event_feed.subscribers() == 6)
                await asyncio.sleep(0.3)  # the opening reads are over
                reads0, looks0 = reads(), looks()
                await asyncio.sleep(1.0)
                quiet_reads, quiet_looks = reads() - reads0, looks() - looks0
                await asyncio.to_thread(append_events, writer, gids, "pose", 1)
                await _until(lambda: all(len(w.ids) == 2 for w in watchers))
                assert reads() > reads0  # the commit was read, by the feed's next look
                await asyncio.to_thread(append_events, writer, gids, "completed", 2)
                await asyncio.wait_for(asyncio.gather(*tasks), 30)
                return quiet_reads, quiet_looks, watchers

        quiet_reads, quiet_looks, watchers = asyncio.run(main())
    app.state.event_feed.close()
    assert quiet_reads == 0
    assert quiet_looks >= 5  # it kept looking (every 0.05 s; fewer on a slow machine)
    for w in watchers:
        assert w.ended and w.ids == db_event_ids(writer, w.gid)
