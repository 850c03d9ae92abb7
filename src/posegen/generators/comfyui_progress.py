"""Following one ComfyUI prompt to its end: websocket messages first, ``/history`` polling after.

The websocket is opened before the prompt is queued so no message is missed. When it cannot be
opened (a proxy that drops upgrades, an old server) or closes midway, polling takes over; both
stop at the same deadline.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

from websockets.exceptions import ConnectionClosed, WebSocketException
from websockets.sync.client import ClientConnection, connect

from posegen.exceptions import GeneratorError
from posegen.generators.base import timeout_error

History = Callable[[], "dict[str, Any] | None"]
#: Whether the server still knows the prompt (queued, running or finished).
Known = Callable[[], bool]

_POLL_FIRST = 0.1
_POLL_MAX = 1.0
#: Even with a live websocket, look at the history now and then (a missed message costs this).
_WS_HISTORY_EVERY = 5.0
#: While polling, ask this often whether the server still knows the prompt: a server that
#: restarted forgot it, and its history would stay empty until the deadline.
_KNOWN_EVERY = 2.0


class Follower:
    """Context manager: ``wait(prompt_id, history)`` returns the prompt's history entry."""

    def __init__(self, ws_base: str, client_id: str, deadline: float) -> None:
        self._url = f"{ws_base}/ws?clientId={client_id}"
        self._deadline = deadline
        self._ws: ClientConnection | None = None
        self._stack = contextlib.ExitStack()
        self.used_websocket = False

    def __enter__(self) -> Follower:
        try:
            self._ws = self._stack.enter_context(
                connect(
                    self._url,
                    open_timeout=max(0.1, min(5.0, self._left())),
                    proxy=None,
                    max_size=64 * 1024 * 1024,  # previews arrive as binary frames
                    compression=None,
                )
            )
            self.used_websocket = True
        except (OSError, WebSocketException, TimeoutError):
            self._ws = None
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._ws = None
        self._stack.close()

    def wait(self, prompt_id: str, history: History, known: Known | None = None) -> dict[str, Any]:
        """Block until the prompt finished; its history entry, or a GeneratorError."""
        if self._ws is not None:
            try:
                entry = self._follow_ws(prompt_id, history)
                if entry is not None:
                    return entry
            except (ConnectionClosed, OSError):
                pass  # the server restarted or a proxy cut us off: polling still works
        return self._poll(prompt_id, history, known)

    def _follow_ws(self, prompt_id: str, history: History) -> dict[str, Any] | None:
        assert self._ws is not None
        next_look = time.monotonic() + _WS_HISTORY_EVERY
        while True:
            left = self._left()
            try:
                raw = self._ws.recv(timeout=min(left, 1.0))
            except TimeoutError:
                raw = None
            if isinstance(raw, str) and _finished(json.loads(raw), prompt_id):
                return None  # done: the entry is read by polling, which returns at once
            if time.monotonic() >= next_look:
                next_look = time.monotonic() + _WS_HISTORY_EVERY
                entry = history()
                if entry is not None:
                    return _checked(entry)

    def _poll(self, prompt_id: str, history: History, known: Known | None) -> dict[str, Any]:
        delay = _POLL_FIRST
        next_known = time.monotonic() + _KNOWN_EVERY
        while True:
            entry = history()
            if entry is not None:
                return _checked(entry)
            if known is not None and time.monotonic() >= next_known:
                next_known = time.monotonic() + _KNOWN_EVERY
                if not known():
                    raise GeneratorError(
                        f"ComfyUI no longer knows prompt {prompt_id} (the server restarted?)",
                        transient=True,
                        outage=True,
                        kind="comfyui-restarted",
                    )
            time.sleep(min(delay, self._left()))
            delay = min(delay * 2, _POLL_MAX)

    def _left(self) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise timeout_error("comfyui", 0, transient=True)
        return left


def _finished(message: Any, prompt_id: str) -> bool:
    if not isinstance(message, dict):
        return False
    kind, data = message.get("type"), message.get("data")
    if not isinstance(data, dict) or data.get("prompt_id") != prompt_id:
        return False
    if kind == "execution_error":
        raise _execution_error(data)
    if kind == "execution_interrupted":
        raise GeneratorError(
            "ComfyUI interrupted the prompt", transient=True, kind="comfyui-interrupted"
        )
    return kind == "execution_success" or (kind == "executing" and data.get("node") is None)


def _checked(entry: dict[str, Any]) -> dict[str, Any]:
    status = entry.get("status")
    if isinstance(status, dict) and status.get("status_str") == "error":
        for msg in status.get("messages", []):
            if isinstance(msg, list) and len(msg) == 2 and msg[0] == "execution_error":
                raise _execution_error(msg[1] if isinstance(msg[1], dict) else {})
        raise _execution_error({})
    return entry


def _execution_error(data: dict[str, Any]) -> GeneratorError:
    detail = data.get("exception_message") or "execution failed"
    node = data.get("node_type") or data.get("node_id")
    where = f" in node {node}" if node else ""
    return GeneratorError(
        f"ComfyUI failed{where}: {str(detail).strip()[:300]}",
        transient=False,
        kind="comfyui-execution-error",
    )
