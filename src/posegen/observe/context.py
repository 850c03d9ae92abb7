"""The log context: what a line knows about the work it belongs to, carried in a contextvar.

Fields: ``request_id``, ``user_id``, ``generation_id``, ``pose_id``, ``worker``, ``lease_token``.
:func:`log_context` adds fields for a block (nested blocks see the outer ones);
:func:`bind` adds fields to the innermost block in place, so a value learned deep in a request
(the user, once the key is checked) reaches the lines the request logs afterwards, even from a
copied context (FastAPI runs dependencies in copies). Threads do not inherit contextvars:
:func:`carry` wraps a callable so it runs in a copy of the caller's context.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

#: The fields every formatter knows by name, in the order text lines print them.
FIELDS = ("request_id", "user_id", "generation_id", "pose_id", "worker", "lease_token")

_current: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "posegen_log_context", default=None
)

P = ParamSpec("P")
R = TypeVar("R")


@contextmanager
def log_context(**fields: Any) -> Iterator[dict[str, Any]]:
    """Every line logged inside the block carries ``fields`` (None values are left out)."""
    outer = _current.get()
    inner = {**(outer or {}), **{k: v for k, v in fields.items() if v is not None}}
    token = _current.set(inner)
    try:
        yield inner
    finally:
        _current.reset(token)


def enter(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    """:func:`log_context` without a ``with`` block; end it with :func:`leave`."""
    outer = _current.get()
    return _current.set({**(outer or {}), **{k: v for k, v in fields.items() if v is not None}})


def leave(token: contextvars.Token[dict[str, Any] | None]) -> None:
    """End what :func:`enter` began (same thread)."""
    _current.reset(token)


def bind(**fields: Any) -> None:
    """Add ``fields`` to the innermost :func:`log_context` block (no-op outside any block)."""
    inner = _current.get()
    if inner is not None:
        inner.update({k: v for k, v in fields.items() if v is not None})


def current() -> Mapping[str, Any]:
    """The fields in effect here (empty outside any block)."""
    return _current.get() or {}


def carry(fn: Callable[P, R]) -> Callable[P, R]:
    """``fn`` bound to a copy of the caller's context: for thread pools and thread targets."""
    ctx = contextvars.copy_context()

    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        # A copy per call: one Context cannot be entered by two threads at once.
        return ctx.copy().run(fn, *args, **kwargs)

    return run
