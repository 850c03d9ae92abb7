"""Refuse hostile input shapes once, before any route runs (one place instead of per route).

Pure ASGI middleware, for the API and the dashboard alike. It answers 422 problem+json for:

- a NUL byte anywhere in the path, the query string, a JSON body (``\\u0000`` in any string or
  key) or a form body (``%00``): PostgreSQL text cannot hold NUL, so such a value would reach the
  driver and fail as a 500, and on SQLite it would be stored and cut short by C string readers;
- a path segment that is a number beyond 2^63 - 1: no row can have that id (BIGINT), and the
  dashboard's ``{id:int}`` routes would hand it to the driver, which overflows;
- a JSON body nested deeper than :data:`MAX_JSON_DEPTH`: Python's parser recurses, so a body of
  100,000 brackets ends in ``RecursionError`` (a 500); no posegen document needs more than a few.

JSON and form bodies are read here (they are already capped by ``BodySizeLimit``) and replayed to
the app unchanged; other bodies (multipart uploads, images) stream through untouched.
"""

from __future__ import annotations

import operator
import re
from itertools import accumulate, count
from urllib.parse import unquote_to_bytes

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from posegen import bounds
from posegen.api.errors import problem

#: Deepest nesting of arrays and objects a JSON body may have.
MAX_JSON_DEPTH = 32

# A JSON string (escapes included), written unrolled so a long string is one C-speed match.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
# Depth by running sum, all in C: keep only brackets, map openers to 2 and closers to 0, then
# depth after k brackets = (sum of the first k values) - k.
_NOT_BRACKETS = bytes(sorted(set(range(256)) - set(b"[]{}")))
_UP_DOWN = bytes.maketrans(b"[{]}", b"\x02\x02\x00\x00")
_CHUNK = 1 << 16
# ``\u0000`` preceded by an even number of backslashes (an odd number escapes the backslash).
_JSON_NUL = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")
_DIGITS = re.compile(r"[0-9]+")
_NUL = ("nul-byte", "text must not contain NUL characters")
_RECEIVE_KINDS = {408: "request-timeout", 413: "payload-too-large"}


def json_problem(body: bytes) -> tuple[str, str] | None:
    """``(kind, detail)`` when a JSON body is too deep or carries a NUL; None when it is fine.

    Linear and in C (a Python loop over tokens cost 0.35 s for a 1 MB string): substring tests
    first, then a regular expression for strings and a running sum over the brackets. Malformed
    JSON is left to the app's own parser (422).
    """
    if b"\x00" in body:
        return _NUL
    if b"\\u0000" in body:  # cheap test first; then only inside strings, escapes counted
        if any(_JSON_NUL.search(m.group()) for m in _JSON_STRING.finditer(body)):
            return _NUL
    if body.count(b"[") + body.count(b"{") <= MAX_JSON_DEPTH:
        return None
    shape = _JSON_STRING.sub(b"", body) if b'"' in body else body
    brackets = shape.translate(None, _NOT_BRACKETS).translate(_UP_DOWN)
    depth = 0
    # In chunks, so a hostile body stops at its first too-deep chunk rather than at its end.
    for start in range(0, len(brackets), _CHUNK):
        running = list(map(operator.sub, accumulate(brackets[start : start + _CHUNK]), count(1)))
        if depth + max(running) > MAX_JSON_DEPTH:
            return "json-too-deep", f"JSON nested deeper than {MAX_JSON_DEPTH} levels"
        depth += running[-1]
    return None


def target_problem(path: str, query: bytes) -> tuple[str, str] | None:
    """``(kind, detail)`` for a NUL or an out-of-range number in the path or query string."""
    if "\x00" in path or b"\x00" in unquote_to_bytes(query):
        return "nul-byte", "the address must not contain NUL characters"
    for segment in path.split("/"):
        if _DIGITS.fullmatch(segment) and (len(segment) > 19 or int(segment) > bounds.MAX_ID):
            return "id-out-of-range", f"ids are at most {bounds.MAX_ID}"
    return None


def _body_kind(headers: Headers) -> str | None:
    media = headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media == "application/json" or media.endswith("+json"):
        return "json"
    if media == "application/x-www-form-urlencoded":
        return "form"
    return None


class InputGuard:
    """The middleware (see the module docstring)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        found = target_problem(scope["path"], scope.get("query_string", b""))
        if found is not None:
            await problem(422, found[0], found[1])(scope, receive, send)
            return
        kind = _body_kind(Headers(scope=scope))
        if kind is None:
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            try:
                message = await receive()
            except StarletteHTTPException as exc:
                # BodySizeLimit's 413 or RequestLimits' 408 (body deadline) while reading: keep
                # each one's own kind and its Connection: close.
                kind = _RECEIVE_KINDS.get(exc.status_code, "payload-too-large")
                headers = dict(exc.headers) if exc.headers else None
                answer = problem(exc.status_code, kind, str(exc.detail), headers=headers)
                await answer(scope, receive, send)
                return
            if message["type"] != "http.request":  # the client went away
                await self.app(scope, _replay_then(message, receive), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if kind == "json":
            found = json_problem(body)
        elif b"\x00" in body or b"%00" in body:
            found = _NUL
        if found is not None:
            await problem(422, found[0], found[1])(scope, receive, send)
            return
        await self.app(scope, _replay_then({"type": "http.request", "body": body}, receive), send)


class NoSniff:
    """Pure ASGI middleware: ``X-Content-Type-Options: nosniff`` on every response (API, pages,
    static files, images, errors), so no browser runs an upload or an error body as script."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != NOSNIFF[0]]
                message = {**message, "headers": [*headers, NOSNIFF]}
            await send(message)

        await self.app(scope, receive, send_with_header)


NOSNIFF = (b"x-content-type-options", b"nosniff")


def _replay_then(first: Message, receive: Receive) -> Receive:
    """A receive that hands back ``first`` once, then reads on (disconnects, for streams)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return first
        return await receive()

    return replay
