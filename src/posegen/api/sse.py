"""Server-Sent Events for one generation, replayed from the ``generation_events`` table.

Streams are fed by the process's :class:`~posegen.api.event_feed.EventFeed` (no query per
stream); ``POSEGEN_SSE_FEED=poll`` brings back one polling loop per stream (:func:`stream`).

Each event's ``id`` is its row id, so a client that reconnects with ``Last-Event-ID`` resumes
exactly after the last event it saw: nothing missed, nothing twice, whichever API replica it
reaches. The stream ends after a terminal event (completed, partial, failed, cancelled, and
``tasks_settled`` once follow-up tasks are done); a later ``task_queued`` (exports asked for
after the end) reopens it: a client reconnecting with ``Last-Event-ID`` gets the new events.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Mapping

import anyio
from fastapi.sse import format_sse_event
from sqlalchemy import Engine
from starlette.datastructures import State
from starlette.responses import Response, StreamingResponse
from starlette.types import Message, Receive, Scope, Send

from posegen import generations_read
from posegen.api.event_feed import EventFeed, event_bytes
from posegen.db.models import TERMINAL_STATUSES
from posegen.exceptions import RateLimited
from posegen.queue.events import KINDS

log = logging.getLogger(__name__)

#: Comment line sent when nothing happened for a while, so proxies keep the connection open.
KEEPALIVE_SECONDS = 15.0
#: Tells EventSource clients how long to wait before reconnecting (milliseconds).
RETRY_MS = 2000

#: One event on the wire (OpenAPI 3.2 style): ``data`` is the JSON of :class:`EventOut`.
EVENT_SCHEMA = {
    "type": "object",
    "properties": {
        "id": {"type": "string", "pattern": "^[0-9]+$", "description": "Event id."},
        "event": {"type": "string", "enum": list(KINDS)},
        "data": {"type": "string", "contentMediaType": "application/json"},
        "retry": {"type": "integer", "minimum": 0},
    },
}


#: Routes that open an event stream: their API key lookup (on a cache miss) also runs on the
#: threads reserved for opening streams.
STREAM_ROUTES = frozenset({"generation_events"})

#: Retry-After of a refused stream: an open one may end (or time out) soon.
STREAMS_RETRY_AFTER_SECONDS = 5


class StreamSlots:
    """Event streams each user holds open in this process, capped per user.

    Streams are long-lived, so the server's request cap leaves them out; this cap keeps one
    user from holding every connection. The count is per API process (every request of a
    process runs on its one event loop, so no lock is needed).
    """

    def __init__(self, per_user: int) -> None:
        self.per_user = per_user
        self.open: Counter[int] = Counter()

    def guard(self, user_id: int, response: Response) -> Response:
        """``response`` holding one of the user's slots until it has been sent (or the client
        went away); RateLimited (``too-many-streams``) when the user has none left."""
        if self.open[user_id] >= self.per_user:
            raise RateLimited(
                f"at most {self.per_user} open event streams per user",
                retry_after=STREAMS_RETRY_AFTER_SECONDS,
                kind="too-many-streams",
            )
        self.open[user_id] += 1
        return _Releasing(response, lambda: self._release(user_id))

    def _release(self, user_id: int) -> None:
        self.open[user_id] -= 1
        if self.open[user_id] <= 0:
            del self.open[user_id]


class _Releasing(Response):
    """Sends ``inner`` and then releases its slot, however the sending ends."""

    def __init__(self, inner: Response, release: Callable[[], None]) -> None:
        super().__init__(status_code=inner.status_code)
        self.inner = inner
        self.release = release

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.inner(scope, receive, send)
        finally:
            self.release()


def nothing_left(engine: Engine, generation_id: int, after_id: int) -> bool:
    """True when the generation has ended and the client has every event (answer 204)."""
    events, status = generations_read.events_after(engine, generation_id, after_id, limit=1)
    return not events and (status is None or status in TERMINAL_STATUSES)


async def stream(
    engine: Engine, generation_id: int, after_id: int, poll_seconds: float, max_seconds: float
) -> AsyncIterator[bytes]:
    """Yield SSE frames: replay after ``after_id``, then follow new events until a terminal one.

    After ``max_seconds`` the stream ends anyway (connections do not pin a replica forever);
    the client reconnects with ``Last-Event-ID`` and misses nothing.
    """
    yield format_sse_event(retry=RETRY_MS)
    last = after_id
    started = quiet_since = time.monotonic()
    while time.monotonic() - started < max_seconds:
        events, status = await anyio.to_thread.run_sync(
            generations_read.events_after, engine, generation_id, last
        )
        for event in events:
            yield event_bytes(event, generation_id)
            last = event.id
            if event.kind in generations_read.TERMINAL_EVENT_KINDS:
                return
        if events:
            quiet_since = time.monotonic()
            continue
        if status is None or status in TERMINAL_STATUSES:
            # Deleted, or ended without a terminal event after ``last`` (the client saw it already).
            return
        if time.monotonic() - quiet_since >= KEEPALIVE_SECONDS:
            yield format_sse_event(comment="keep-alive")
            quiet_since = time.monotonic()
        await anyio.sleep(poll_seconds)


#: Where :class:`posegen.api.app.PosegenAPI` puts the server's own ``send`` in each request's
#: scope: an event stream's frames go straight to it (see :class:`FeedResponse`).
SERVER_SEND = "posegen.server_send"


class FeedResponse(Response):
    """The shared feed's stream for one generation: replay after ``after_id``, then live until a
    terminal event, a deleted generation, ``max_seconds`` or the client leaving.

    Not a StreamingResponse over an async generator. At thousands of streams, every delivery
    there also cost a generator step, the response's own loop and one ``send`` wrapper per
    middleware, which only ever look at the response's start. Here the start (status and
    headers) goes through every middleware, so they add and record what they do; the frames go
    straight to the server's ``send`` (:data:`SERVER_SEND`); the closing message goes through
    the middleware again. A disconnect wakes the stream at once (it no longer waits for its next
    write to notice).

    Keep-alives and the end after ``max_seconds`` come from one timer per stream, armed again
    only when it fires (at most once a keep-alive interval), not a timeout per wait: a delivery
    costs one future and one write.
    """

    media_type = "text/event-stream"

    def __init__(
        self,
        feed: EventFeed,
        generation_id: int,
        after_id: int,
        max_seconds: float,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        # No body: no Content-Length (Response.__init__ would set one of 0).
        self.status_code = 200
        self.background = None
        self.init_headers(headers)
        self.feed = feed
        self.generation_id = generation_id
        self.after_id = after_id
        self.max_seconds = max_seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        server_send: Send = scope.get(SERVER_SEND, send)
        loop = asyncio.get_running_loop()
        sub = self.feed.subscribe(self.generation_id, self.after_id)
        gone = loop.create_task(_disconnect(receive))
        gone.add_done_callback(lambda _: sub.wake())
        deadline = loop.time() + self.max_seconds
        quiet_since = loop.time()
        rang = False

        def ring() -> None:
            nonlocal rang
            rang = True
            sub.wake()

        timer = loop.call_at(min(deadline, quiet_since + KEEPALIVE_SECONDS), ring)
        try:
            await send({"type": "http.response.start", "status": 200, "headers": self.raw_headers})
            await server_send(_frame(format_sse_event(retry=RETRY_MS)))
            while not gone.done():
                batches = await sub.wait()
                if gone.done():
                    return
                frames = b"".join(b.frames for b in batches)
                if frames:
                    # One write for everything delivered since the last one.
                    await server_send(_frame(frames))
                    quiet_since = loop.time()
                now = loop.time()
                if now >= deadline or any(b.ended for b in batches):
                    break
                if rang:
                    rang = False
                    if now - quiet_since >= KEEPALIVE_SECONDS:
                        await server_send(_frame(format_sse_event(comment="keep-alive")))
                        quiet_since = loop.time()
                    timer = loop.call_at(min(deadline, quiet_since + KEEPALIVE_SECONDS), ring)
            else:
                return  # the client left: nothing more to send
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            gone.cancel()
            timer.cancel()
            self.feed.unsubscribe(sub)


def _frame(body: bytes) -> Message:
    return {"type": "http.response.body", "body": body, "more_body": True}


async def _disconnect(receive: Receive) -> None:
    """Return when the client has gone (what comes before, a GET's empty body, is skipped)."""
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a receive that fails: the connection is no use either
        log.debug("event stream receive failed", exc_info=True)


def open_limiter(state: State) -> anyio.CapacityLimiter:
    """The threads reserved for opening streams (made on first use, on the server's loop)."""
    limiter: anyio.CapacityLimiter | None = getattr(state, "sse_open_limiter", None)
    if limiter is None:
        limiter = anyio.CapacityLimiter(state.settings.sse_open_threads)
        state.sse_open_limiter = limiter
    return limiter


def _opening(engine: Engine, generation_id: int, user_id: int | None, after_id: int) -> bool:
    generations_read.get_visible(engine, generation_id, user_id)  # NotFound otherwise
    return nothing_left(engine, generation_id, after_id)


async def check_open(
    state: State, engine: Engine, generation_id: int, user_id: int | None, after_id: int
) -> bool:
    """Before a stream opens: NotFound unless ``user_id`` may see the generation (None: an
    admin); True when it has ended and the client has every event (answer 204).

    Runs on the threads ``POSEGEN_SSE_OPEN_THREADS`` reserves, not the routes' pool: a thousand
    streams opening at once wait for each other there, never in front of other requests.
    """
    return await anyio.to_thread.run_sync(
        _opening, engine, generation_id, user_id, after_id, limiter=open_limiter(state)
    )


def stream_response(
    state: State,
    engine: Engine,
    generation_id: int,
    after_id: int,
    headers: Mapping[str, str],
) -> Response:
    """The stream ``POSEGEN_SSE_FEED`` asks for; ``state`` is the app's ``state``."""
    settings = state.settings
    if settings.sse_feed == "poll":
        poll = min(settings.poll_interval_seconds, 1.0)
        frames = stream(engine, generation_id, after_id, poll, settings.sse_max_seconds)
        return StreamingResponse(frames, media_type="text/event-stream", headers=headers)
    feed: EventFeed = state.event_feed
    return FeedResponse(feed, generation_id, after_id, settings.sse_max_seconds, headers)
