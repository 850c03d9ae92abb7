"""Jinja filters for the dashboard's templates: times, percentages, durations."""

from __future__ import annotations

import datetime as dt

from jinja2 import Environment

from posegen.db.types import utcnow


def when(value: dt.datetime | None) -> str:
    """An absolute UTC timestamp, minute precision (``2025-01-31 14:05 UTC``)."""
    if value is None:
        return "—"
    return value.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def ago(value: dt.datetime | None, now: dt.datetime | None = None) -> str:
    """How long ago, coarse (``just now``, ``5 min ago``, ``3 h ago``, ``2 d ago``)."""
    if value is None:
        return "—"
    seconds = ((now or utcnow()) - value).total_seconds()
    if seconds < 45:
        return "just now"
    if seconds < 3600:
        return f"{round(seconds / 60)} min ago"
    if seconds < 86400:
        return f"{round(seconds / 3600)} h ago"
    return f"{round(seconds / 86400)} d ago"


def seconds(value: float | None) -> str:
    """A duration in the largest sensible unit (``850 ms``, ``12.5 s``, ``4 min``)."""
    if value is None:
        return "—"
    if value < 1:
        return f"{round(value * 1000)} ms"
    if value < 120:
        return f"{value:.1f} s"
    if value < 7200:
        return f"{round(value / 60)} min"
    return f"{value / 3600:.1f} h"


def percent(value: float | None) -> str:
    """A 0..1 ratio as a percentage (``87 %``); ``—`` when there is nothing to divide."""
    if value is None:
        return "—"
    return f"{value * 100:.0f} %"


def install_filters(env: Environment) -> None:
    """Register the filters on the templates' environment."""
    env.filters["when"] = when
    env.filters["ago"] = ago
    env.filters["seconds"] = seconds
    env.filters["percent"] = percent
