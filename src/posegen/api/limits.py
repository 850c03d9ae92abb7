"""Limits at the HTTP edge: request body size on every route.

Per-user submission limits are checked by the queue inside the submit transaction
(:mod:`posegen.queue.quota`), where they cannot race the insert.
"""

from __future__ import annotations

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
