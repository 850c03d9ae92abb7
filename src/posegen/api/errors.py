"""Every error a client sees is ``application/problem+json`` (RFC 9457) with a stable ``type``.

One handler maps :class:`~posegen.exceptions.PosegenError` (by its ``http_status`` and ``kind``),
Starlette's HTTP errors (404, 405...), request validation errors and anything unexpected. Stack
traces and SQL never reach a client: unexpected errors are logged and answered with a bare 500.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from posegen.exceptions import (
    DailyQuotaExceeded,
    InsufficientCredits,
    PosegenError,
    RateLimited,
    Unauthorized,
)

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_BASE = "https://posegen.dev/problems/"

#: Kinds for the HTTP errors Starlette raises itself (routing, body limits).
_HTTP_KINDS = {
    400: "bad-request",
    401: "unauthorized",
    403: "forbidden",
    404: "not-found",
    405: "method-not-allowed",
    406: "not-acceptable",
    408: "request-timeout",
    409: "conflict",
    413: "payload-too-large",
    415: "unsupported-media-type",
    422: "invalid-input",
    429: "rate-limited",
}


class ProblemResponse(JSONResponse):
    media_type = PROBLEM_MEDIA_TYPE

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Also here: a 500 from the outermost error handler never passes the NoSniff middleware.
        self.headers.setdefault("X-Content-Type-Options", "nosniff")


def problem(
    status: int,
    kind: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    extra: dict[str, Any] | None = None,
) -> ProblemResponse:
    """Build one problem response; ``kind`` becomes the last segment of ``type``."""
    body: dict[str, Any] = {
        "type": TYPE_BASE + kind,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "kind": kind,
    }
    if extra:
        body.update(extra)
    return ProblemResponse(body, status_code=status, headers=headers)


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def _validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Only where and what: ``input``/``ctx`` would echo arbitrary (possibly huge) client data.
    out = []
    for err in exc.errors():
        out.append(
            {
                "loc": [str(p) for p in err.get("loc", ())],
                "msg": str(err.get("msg", "")),
                "type": str(err.get("type", "")),
            }
        )
    return out


async def handle(request: Request, exc: Exception) -> ProblemResponse:
    """The one exception handler of the API (registered for every exception class)."""
    if isinstance(exc, PosegenError):
        headers: dict[str, str] = {}
        if isinstance(exc, RateLimited):
            headers["Retry-After"] = str(max(1, exc.retry_after))
        if isinstance(exc, Unauthorized):
            headers["WWW-Authenticate"] = "Bearer"
        status = exc.http_status
        if status >= 500:
            # Core messages for server-side failures may name hosts, paths or SQL.
            log.error(
                "request failed",
                exc_info=exc,
                extra={"path": request.url.path, "kind": exc.kind},
            )
            detail = _title(status)
            if status == 503:
                detail = "service temporarily unavailable"
            # A sentence written for clients (no paths or hosts), where the error has one.
            detail = getattr(exc, "public_detail", None) or detail
            return problem(status, exc.kind, detail, headers=headers or None)
        extra: dict[str, Any] | None = None
        if isinstance(exc, InsufficientCredits):
            extra = {"required": exc.required, "balance": exc.balance}
        if isinstance(exc, DailyQuotaExceeded):
            extra = {
                "resetsAt": exc.resets_at,
                "quotaPerDay": exc.daily,
                "quotaLeftToday": exc.left,
            }
        return problem(status, exc.kind, exc.message, headers=headers or None, extra=extra)
    if isinstance(exc, RequestValidationError):
        return problem(
            422,
            "invalid-input",
            "the request is not valid",
            extra={"errors": _validation_errors(exc)},
        )
    if isinstance(exc, StarletteHTTPException):
        kind = _HTTP_KINDS.get(exc.status_code, f"http-{exc.status_code}")
        detail = exc.detail if isinstance(exc.detail, str) else _title(exc.status_code)
        return problem(exc.status_code, kind, detail, headers=dict(exc.headers or {}) or None)
    log.error("unhandled error", exc_info=exc, extra={"path": request.url.path})
    return problem(500, "internal", "internal server error")


def install(app: FastAPI) -> None:
    """Register :func:`handle` for every class of error the app can raise."""
    for cls in (PosegenError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, handle)
