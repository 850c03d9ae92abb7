"""OpenTelemetry spans that cost nothing until tracing is set up.

Without :func:`setup_tracing` (no ``OTEL_EXPORTER_OTLP_ENDPOINT``, no ``POSEGEN_TRACE_FILE``)
:func:`span` returns one shared null context and :func:`traceparent` returns None: no SDK is
imported and no span object is made. With it, the SDK's provider exports over OTLP/HTTP and/or
appends finished spans as JSON lines to a file (tests and debugging).

A generation's trace crosses processes through its row: submit stores the W3C ``traceparent``
of its span in ``pose_generations.traceparent``; the worker's claim, run and pose spans are its
children, so the API request, the submit and every pose form one trace.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import json
import os
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from posegen.exceptions import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter

_propagator = TraceContextTextMapPropagator()
_tracer: trace.Tracer | None = None
_NULL: contextlib.nullcontext[None] = contextlib.nullcontext()

Attr = str | int | float | bool
P = ParamSpec("P")
R = TypeVar("R")


def enabled() -> bool:
    """Is a tracer installed? Callers skip building attributes when it is not."""
    return _tracer is not None


def span(
    name: str, parent: str | None = None, **attributes: Attr | None
) -> contextlib.AbstractContextManager[trace.Span | None]:
    """A span around a block, current inside it; ``parent``: a traceparent to continue.

    Yields None when tracing is off. Exceptions are recorded on the span and re-raised.
    """
    if _tracer is None:
        return _NULL
    ctx = extract(parent) if parent else None
    attrs = {k: v for k, v in attributes.items() if v is not None}
    return _tracer.start_as_current_span(name, context=ctx, attributes=attrs)


def traced(
    name: str, result_attributes: Callable[[Any], dict[str, Attr | None]] | None = None
) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Decorator: the call runs in a span ``name``; ``result_attributes`` describe the result.

    With tracing off the wrapper costs one check and a call.
    """

    def decorate(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _tracer is None:
                return fn(*args, **kwargs)
            with _tracer.start_as_current_span(name) as s:
                result = fn(*args, **kwargs)
                if result_attributes is not None:
                    set_attributes(s, **result_attributes(result))
                return result

        return wrapper

    return decorate


def record_span(
    name: str, parent: str | None, start_ns: int, end_ns: int, **attributes: Attr | None
) -> None:
    """A finished span after the fact (a batched claim, measured once, recorded per job)."""
    if _tracer is None:
        return
    attrs = {k: v for k, v in attributes.items() if v is not None}
    ctx = extract(parent) if parent else None
    s = _tracer.start_span(name, context=ctx, attributes=attrs, start_time=start_ns)
    s.end(end_time=end_ns)


def set_attributes(s: trace.Span | None, **attributes: Attr | None) -> None:
    """Attributes on a span from :func:`span`, when there is one."""
    if s is not None:
        for key, value in attributes.items():
            if value is not None:
                s.set_attribute(key, value)


def traceparent() -> str | None:
    """The W3C traceparent of the current span, or None (tracing off, or no span)."""
    if _tracer is None:
        return None
    carrier: dict[str, str] = {}
    _propagator.inject(carrier)
    return carrier.get("traceparent")


def extract(header: str | None) -> otel_context.Context | None:
    """A parent context from a traceparent header (None when absent or malformed)."""
    if not header:
        return None
    ctx = _propagator.extract({"traceparent": header})
    return ctx if trace.get_current_span(ctx).get_span_context().is_valid else None


def current_ids() -> tuple[str, str] | None:
    """(trace id, span id) in hex of the current span, for log lines; None when off."""
    if _tracer is None:
        return None
    sc = trace.get_current_span().get_span_context()
    if not sc.is_valid:
        return None
    return format(sc.trace_id, "032x"), format(sc.span_id, "016x")


def install(provider: TracerProvider | None) -> None:
    """Use ``provider`` for posegen's spans (None: back to no tracing). Benchmarks and tests."""
    global _tracer
    _tracer = None if provider is None else provider.get_tracer("posegen")


def setup_tracing(service: str, trace_file: Path | None = None) -> bool:
    """Set up the SDK when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or ``trace_file`` asks for it.

    Returns whether tracing is on. The OTLP exporter reads the standard ``OTEL_EXPORTER_OTLP_*``
    variables itself (headers, timeout, protocol paths).
    """
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"
    )
    if (not endpoint and trace_file is None) or _env_true("OTEL_SDK_DISABLED"):
        return False
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
    except ImportError as exc:
        raise ConfigError(
            "tracing is asked for but the OpenTelemetry SDK is missing: pip install 'posegen[otel]'"
        ) from exc
    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)})
    provider = TracerProvider(resource=resource)
    if endpoint:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        except ImportError as exc:
            raise ConfigError(
                "OTEL_EXPORTER_OTLP_ENDPOINT is set but the OTLP exporter is missing: "
                "pip install 'posegen[otel]'"
            ) from exc
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if trace_file is not None:
        # Simple (synchronous) processor: a span is on disk when it ends, even if the process
        # is killed a moment later.
        provider.add_span_processor(SimpleSpanProcessor(_file_exporter(trace_file)))
    install(provider)
    atexit.register(provider.shutdown)
    return True


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() == "true"


def _file_exporter(path: Path) -> SpanExporter:
    from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

    lock = threading.Lock()

    class JsonLinesExporter(SpanExporter):
        """Appends each finished span as one JSON line (several processes may share the file)."""

        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            lines = "".join(json.dumps(_as_dict(s), separators=(",", ":")) + "\n" for s in spans)
            with lock, path.open("a", encoding="utf-8") as out:
                # One write of whole lines in append mode: processes do not interleave lines.
                out.write(lines)
            return SpanExportResult.SUCCESS

    return JsonLinesExporter()


def _as_dict(s: ReadableSpan) -> dict[str, Any]:
    ctx = s.get_span_context()
    assert ctx is not None
    return {
        "name": s.name,
        "trace_id": format(ctx.trace_id, "032x"),
        "span_id": format(ctx.span_id, "016x"),
        "parent_id": None if s.parent is None else format(s.parent.span_id, "016x"),
        "start_ns": s.start_time,
        "end_ns": s.end_time,
        "service": s.resource.attributes.get("service.name"),
        "pid": os.getpid(),
        "attributes": dict(s.attributes or {}),
        "status": s.status.status_code.name,
    }
