"""Per-request context: a request id (``X-Request-ID`` in and out), the log context every line
of the request carries, and the request's span (continuing a caller's ``traceparent``)."""

from __future__ import annotations

import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen import observe

HEADER = "X-Request-ID"
# A caller's id is echoed and logged, so only a short, plain token is taken; anything else
# (log injection, a pasted secret) gets a fresh id instead.
_VALID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")


def request_id(headers: Headers) -> str:
    """The caller's ``X-Request-ID`` when it is a plain token, else a new random one."""
    given = headers.get(HEADER)
    # An id that looks like an API key is not echoed (a client pasting the wrong header).
    if given is not None and _VALID.fullmatch(given) and observe.redact(given) == given:
        return given
    return uuid.uuid4().hex


class RequestContext:
    """Pure ASGI middleware (no body buffering, so event streams pass through untouched)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        rid = request_id(headers)
        method = scope["method"]
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        with (
            observe.log_context(request_id=rid) as fields,
            observe.span(
                f"{method} {scope['path']}",
                headers.get("traceparent"),
                **{"http.request.method": method, "url.path": scope["path"], "request_id": rid},
            ) as span,
        ):
            try:
                await self.app(scope, receive, send_with_id)
            finally:
                if span is not None:
                    template = _route_template(scope)
                    if template is not None:
                        # The route template, not the path: one span name per route.
                        span.update_name(f"{method} {template}")
                        span.set_attribute("http.route", template)
                    observe.set_attributes(
                        span,
                        **{
                            "http.response.status_code": status,
                            "user_id": fields.get("user_id"),
                            "duration_ms": round((time.perf_counter() - started) * 1000, 3),
                        },
                    )


def _route_template(scope: Scope) -> str | None:
    """The matched route's full path template (``/api/pose-generator/generations/{id}``)."""
    # FastAPI includes routers lazily: the prefixed template is on its route context.
    fastapi_scope = scope.get("fastapi")
    if isinstance(fastapi_scope, dict):
        template = getattr(fastapi_scope.get("effective_route_context"), "path_format", None)
        if isinstance(template, str):
            return template
    template = getattr(scope.get("route"), "path_format", None)
    return template if isinstance(template, str) else None
