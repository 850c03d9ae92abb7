"""Observability: structured logs with context, OpenTelemetry spans, and per-generation log lines.

Library code logs with the standard library and wraps work in :func:`span`; the CLI decides the
format (:func:`configure_logging`) and whether spans go anywhere (:func:`setup_tracing`).
"""

from posegen.observe.context import FIELDS, bind, carry, current, log_context
from posegen.observe.logs import add_secret, configure_logging, redact
from posegen.observe.tracing import enabled as tracing_enabled
from posegen.observe.tracing import record_span, set_attributes, setup_tracing, span, traceparent

__all__ = [
    "FIELDS",
    "add_secret",
    "bind",
    "carry",
    "configure_logging",
    "current",
    "log_context",
    "record_span",
    "redact",
    "set_attributes",
    "setup_tracing",
    "span",
    "traceparent",
    "tracing_enabled",
]
