"""One log format for every posegen process: JSON lines for a fleet, ``key=value`` text for a
terminal, each line carrying its context (:mod:`posegen.observe.context`) and never a secret.

Only the CLI calls :func:`configure_logging`; library code just logs with ``extra={...}``.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import sys
import threading
from collections.abc import Iterable
from typing import Any, Literal, TextIO

from posegen.observe.context import FIELDS, current

LogFormat = Literal["auto", "json", "text"]

#: Attributes every LogRecord has; anything else on a record came from ``extra`` or the context.
_STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message",
    "asctime",
    "taskName",
    "color_message",  # uvicorn's ANSI-coloured copy of the message
}

# API keys (``pg_`` + 43 URL-safe characters) and bearer credentials, wherever they appear.
_KEY_PATTERN = re.compile(r"pg_[A-Za-z0-9_\-]{20,}|(?i:bearer)\s+[A-Za-z0-9._~+/=\-]{8,}")
_REDACTED = "[redacted]"
_secrets: set[str] = set()
_installed: logging.Handler | None = None
_secrets_lock = threading.Lock()


def add_secret(value: str | None) -> None:
    """Never print ``value`` (a session secret, a metrics token) in a log line."""
    if value and len(value) >= 8:
        with _secrets_lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """``text`` with API keys, bearer tokens and registered secrets replaced."""
    text = _KEY_PATTERN.sub(_REDACTED, text)
    for secret in _secrets:
        if secret in text:
            text = text.replace(secret, _REDACTED)
    return text


class ContextFilter(logging.Filter):
    """Copies the context's fields onto each record (an explicit ``extra`` wins)."""

    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in current().items():
            if key not in record.__dict__:
                setattr(record, key, value)
        return True


def record_fields(record: logging.LogRecord) -> dict[str, Any]:
    """The record's structured fields: context fields first, then the rest of ``extra``."""
    extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
    ordered = {k: extra.pop(k) for k in FIELDS if k in extra}
    ordered.update(sorted(extra.items()))
    return ordered


def _timestamp(record: logging.LogRecord) -> str:
    stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
    return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, the fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        out.update(record_fields(record))
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(out, default=str, ensure_ascii=False))


class TextFormatter(logging.Formatter):
    """``TIME LEVEL logger: message key=value ...``, for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {record.getMessage()}"
        pairs = " ".join(f"{k}={_text_value(v)}" for k, v in record_fields(record).items())
        if pairs:
            line = f"{line} {pairs}"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return redact(line)


def _text_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if not text or any(c.isspace() or c in '"=' for c in text):
        return json.dumps(text)
    return text


class _StderrHandler(logging.StreamHandler[TextIO]):
    """Writes to whatever ``sys.stderr`` is when a line is logged (it may be replaced later,
    as pytest's capture does for in-process command runs)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass


def resolve_format(fmt: LogFormat, stream: TextIO) -> Literal["json", "text"]:
    """``auto``: text on a terminal, JSON otherwise (a fleet's log collector)."""
    if fmt != "auto":
        return fmt
    isatty = getattr(stream, "isatty", None)
    return "text" if callable(isatty) and isatty() else "json"


def configure_logging(
    fmt: LogFormat = "auto",
    level: int = logging.INFO,
    stream: TextIO | None = None,
    secrets: Iterable[str | None] = (),
) -> logging.Handler:
    """Install the root logger's handler writing ``fmt`` to ``stream`` (stderr).

    Called again (one process running several commands, as tests do), it replaces the handler
    it installed before; handlers others installed (pytest's capture) stay.
    """
    global _installed
    out = stream if stream is not None else sys.stderr
    handler: logging.StreamHandler[TextIO] = (
        logging.StreamHandler(stream) if stream is not None else _StderrHandler()
    )
    handler.addFilter(ContextFilter())
    chosen = resolve_format(fmt, out)
    handler.setFormatter(JsonFormatter() if chosen == "json" else TextFormatter())
    root = logging.getLogger()
    if _installed is not None:
        root.removeHandler(_installed)
    root.addHandler(handler)
    _installed = handler
    root.setLevel(level)
    for secret in secrets:
        add_secret(secret)
    return handler
