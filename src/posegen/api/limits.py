"""Limits: request body size on every route, and per-user submission limits (429 + Retry-After).

The per-user counters are read from the database (the index on ``(user_id, created_at)`` serves
them), not kept in process memory, so they hold across API replicas.
"""

from __future__ import annotations

import datetime as dt
import math

from fastapi import HTTPException
from sqlalchemy import Engine
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen import generations_read
from posegen.api.errors import problem
from posegen.config import Settings
from posegen.db.types import utcnow
from posegen.exceptions import RateLimited

WINDOW = dt.timedelta(minutes=1)
#: Nothing says when an active generation ends; ask clients to come back after a short while.
ACTIVE_RETRY_AFTER_SECONDS = 5


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


def check_submission_limits(engine: Engine, settings: Settings, user_id: int) -> None:
    """Raise :class:`RateLimited` if the user may not submit another generation now."""
    now = utcnow()
    count, oldest = generations_read.submissions_since(engine, user_id, now - WINDOW)
    if count >= settings.submissions_per_minute:
        wait = WINDOW.total_seconds()
        if oldest is not None:
            wait = (oldest + WINDOW - now).total_seconds()
        raise RateLimited(
            f"at most {settings.submissions_per_minute} generations per minute",
            retry_after=max(1, math.ceil(wait)),
            kind="too-many-submissions",
        )
    active = generations_read.count_active(engine, user_id)
    if active >= settings.max_active_generations:
        raise RateLimited(
            f"at most {settings.max_active_generations} active generations at once",
            retry_after=ACTIVE_RETRY_AFTER_SECONDS,
            kind="too-many-active",
        )
