"""Limits at the HTTP edge: request body size and body deadline on every route, and how many
requests one process runs at once.

Per-user submission limits are checked by the queue inside the submit transaction
(:mod:`posegen.queue.quota`), where they cannot race the insert.
"""

from __future__ import annotations

import re

import anyio
from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen.api.errors import problem


class BodySizeLimit:
    """Pure ASGI middleware: refuse request bodies over ``max_bytes`` with a problem 413.

    A declared Content-Length over the limit is refused before the app runs; a body streamed
    without one is counted as it is read, and the read that crosses the limit raises
    a 413 ``HTTPException`` inside the app (FastAPI's body parsing re-raises those untouched),
    and the error handler answers it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length")
        if declared is not None:
            try:
                too_big = int(declared) > self.max_bytes
            except ValueError:
                too_big = False
            if too_big:
                await self._refuse(scope, receive, send)
                return
        seen = 0

        async def counting_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"request body larger than {self.max_bytes} bytes"

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem(
            413, "payload-too-large", self._detail(), headers={"Connection": "close"}
        )
        await response(scope, receive, send)


#: Event streams: long-lived by design, so the request cap does not count them (they have their
#: own per-user cap, ``sse_max_streams_per_user``).
STREAM_PATH = re.compile(r"/generations/[0-9]+/events$")
BUSY_RETRY_AFTER_SECONDS = 1


class RequestLimits:
    """Pure ASGI middleware: at most ``max_requests`` requests at once (event streams not
    counted; 503 ``server-busy`` beyond), and a request body must arrive within
    ``body_timeout`` seconds of its headers (408 ``request-timeout``, connection closed).

    The body deadline covers the whole body, not the gap between chunks: a client trickling
    one byte a second would pass any gap timeout. Only reads of the body are timed; once it
    is complete, waiting for a disconnect (streaming responses do) has no deadline.
    """

    def __init__(self, app: ASGIApp, max_requests: int, body_timeout: float) -> None:
        self.app = app
        self.max_requests = max_requests
        self.body_timeout = body_timeout
        # One event loop per process runs every request: a plain counter is enough.
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        deadline = anyio.current_time() + self.body_timeout
        body_done = False

        async def timed_receive() -> Message:
            nonlocal body_done
            if body_done:
                return await receive()
            try:
                with anyio.fail_after(max(0.0, deadline - anyio.current_time())):
                    message = await receive()
            except TimeoutError:
                raise HTTPException(
                    408,
                    f"request body not received within {self.body_timeout:g} s",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                body_done = True
            return message

        if STREAM_PATH.search(scope["path"]):
            await self.app(scope, timed_receive, send)
            return
        if self.in_flight >= self.max_requests:
            response = problem(
                503,
                "server-busy",
                "the server is busy; try again shortly",
                headers={"Retry-After": str(BUSY_RETRY_AFTER_SECONDS)},
            )
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, timed_receive, send)
        finally:
            self.in_flight -= 1
