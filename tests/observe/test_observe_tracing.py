"""Spans: nothing without a tracer; with the SDK's in-memory exporter, a generation's submit,
claim, run and poses form one trace through the traceparent stored on its row."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from sqlalchemy import Engine, select

from posegen import accounts, observe, projects, queue
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import GenerationType, PoseGeneration
from posegen.library import seed_library
from posegen.observe import timeline, tracing
from posegen.worker import Worker
from posegen.worker.pipeline import make_handler


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracing.install(provider)
    yield memory
    tracing.install(None)
    provider.shutdown()


def _submit(engine: Engine, settings: Settings, poses: list[int], variations: int = 2) -> int:
    user = accounts.create_user(engine, "Tess", "tess@example.com")
    project = projects.create(engine, user.account.id, "traced", None)
    req = queue.GenerationRequest(
        user_id=user.account.id,
        project_id=project.id,
        type=GenerationType.LIBRARY,
        pose_ids=poses,
        variations=variations,
        width=128,
        height=128,
    )
    return queue.submit(engine, settings, req).generation_id


def _stored_traceparent(engine: Engine, gid: int) -> str | None:
    with engine.connect() as conn:
        return conn.execute(
            select(PoseGeneration.traceparent).where(PoseGeneration.id == gid)
        ).scalar_one()


def test_without_a_tracer_nothing_is_made_and_nothing_stored(
    engine: Engine, settings: Settings
) -> None:
    assert not observe.tracing_enabled()
    with observe.span("posegen.nothing", parent="00-" + "1" * 32 + "-" + "2" * 16 + "-01") as s:
        assert s is None
        assert observe.traceparent() is None
    seed_library(engine)
    gid = _submit(engine, settings, [1])
    assert _stored_traceparent(engine, gid) is None
    assert timeline.trace_id(engine, gid) is None


def test_one_generation_is_one_trace_from_submit_to_the_last_write(
    engine: Engine, settings: Settings, exporter: InMemorySpanExporter
) -> None:
    seed_library(engine)
    with observe.span("test.request") as request_span:
        assert request_span is not None
        gid = _submit(engine, settings, [1, 2])
    stored = _stored_traceparent(engine, gid)
    trace_hex = format(request_span.get_span_context().trace_id, "032x")
    assert stored is not None and stored.split("-")[1] == trace_hex
    assert timeline.trace_id(engine, gid) == trace_hex

    Worker(settings, engine, make_handler(settings), concurrency=1, burst=True).run()

    spans: tuple[ReadableSpan, ...] = exporter.get_finished_spans()
    by_id = {s.context.span_id: s for s in spans}
    mine = [s for s in spans if format(s.context.trace_id, "032x") == trace_hex]
    names = [s.name for s in mine]
    for name in ("posegen.submit", "posegen.claim", "posegen.generation"):
        assert names.count(name) == 1, names
    assert names.count("posegen.pose") == 2
    assert names.count("posegen.pose.map") == 2
    assert names.count("posegen.pose.storage") == 4
    assert names.count("posegen.pose.write") == 4
    assert names.count("posegen.pose.backend") >= 2

    def parent(s: ReadableSpan) -> ReadableSpan:
        assert s.parent is not None
        return by_id[s.parent.span_id]

    submit = next(s for s in mine if s.name == "posegen.submit")
    assert parent(submit) is not None and parent(submit).name == "test.request"
    assert submit.attributes["posegen.generation_id"] == gid
    for s in mine:
        if s.name in ("posegen.claim", "posegen.generation"):
            assert parent(s) is submit  # continued in the worker through the row
        elif s.name == "posegen.pose":
            assert parent(s).name == "posegen.generation"
        elif s.name.startswith("posegen.pose."):
            # storage and write run on helper threads: still children of their pose
            assert parent(s).name == "posegen.pose"
    claim = next(s for s in mine if s.name == "posegen.claim")
    assert claim.attributes["lease_token"] == 1 and claim.attributes["attempt"] == 1
    run = next(s for s in mine if s.name == "posegen.generation")
    assert run.attributes["outcome"] == "completed"


def test_a_recovery_pass_is_a_span(
    engine: Engine, settings: Settings, exporter: InMemorySpanExporter
) -> None:
    queue.recover(engine, settings, "tester")
    (span,) = [s for s in exporter.get_finished_spans() if s.name == "posegen.recovery"]
    assert span.attributes["requeued"] == 0 and span.attributes["ran"] is True


def test_the_api_request_span_is_the_parent_of_submit_and_continues_a_caller_trace(
    engine: Engine, settings: Settings, exporter: InMemorySpanExporter
) -> None:
    seed_library(engine)
    user = accounts.create_user(engine, "Cal", "cal@example.com")
    caller_trace = "4bf92f3577b34da6a3ce929d0e0e4736"
    headers = {
        "Authorization": f"Bearer {user.api_key}",
        "traceparent": f"00-{caller_trace}-00f067aa0ba902b7-01",
    }
    with TestClient(create_app(settings, engine)) as client:
        pid = client.post("/api/pose-generator/projects", json={"name": "p"}, headers=headers)
        r = client.post(
            "/api/pose-generator/generations",
            json={"projectId": pid.json()["id"], "poseIds": [1]},
            headers=headers,
        )
    assert r.status_code == 202, r.text
    spans = exporter.get_finished_spans()
    request = next(s for s in spans if s.name == "POST /api/pose-generator/generations")
    submit = next(s for s in spans if s.name == "posegen.submit")
    assert format(request.context.trace_id, "032x") == caller_trace
    assert submit.parent is not None and submit.parent.span_id == request.context.span_id
    assert request.attributes["http.response.status_code"] == 202
    assert request.attributes["user_id"] == user.account.id
    assert request.attributes["http.route"] == "/api/pose-generator/generations"
    assert _stored_traceparent(engine, r.json()["id"]).split("-")[1] == caller_trace


def test_without_an_endpoint_the_sdk_is_never_loaded(cli_env: dict[str, str]) -> None:
    """A whole command (the CLI sets up tracing) runs without importing the SDK."""
    code = (
        "import sys; from posegen.cli import main\n"
        "try:\n    main(['recover', '--once'])\nexcept SystemExit as e:\n    assert not e.code\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk')]\n"
    )
    env = {k: v for k, v in cli_env.items() if not k.startswith("OTEL_")}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_spans_go_over_otlp_when_an_endpoint_is_set(cli_env: dict[str, str]) -> None:
    """A real OTLP/HTTP receiver on 127.0.0.1 gets the recovery pass of ``posegen recover``."""
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
        ExportTraceServiceRequest,
    )

    bodies: list[tuple[str, bytes]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            bodies.append((self.path, self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        env = {
            **cli_env,
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
        }
        done = subprocess.run(
            [sys.executable, "-m", "posegen", "recover", "--once"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr
    finally:
        server.shutdown()
        server.server_close()
    assert bodies and all(path == "/v1/traces" for path, _ in bodies)
    names, services = [], set()
    for _, body in bodies:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        for resource_spans in request.resource_spans:
            for attr in resource_spans.resource.attributes:
                if attr.key == "service.name":
                    services.add(attr.value.string_value)
            for scope in resource_spans.scope_spans:
                names.extend(s.name for s in scope.spans)
    assert names == ["posegen.recovery"] and services == {"posegen-recover"}
