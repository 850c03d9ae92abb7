"""One generation followed end to end across a real API process and a real worker process:
every log line structured and in context, no key or secret in any log, one trace from the HTTP
request to the last pose write, and the dashboard's timings and log page."""

from __future__ import annotations

import json
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import Engine, select

from posegen.db.models import GenerationLog

POSEGEN = [sys.executable, "-m", "posegen"]
REQUEST_ID = "req-follow-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([*POSEGEN, *args], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@contextmanager
def _process(env: dict[str, str], log: Path, *args: str) -> Iterator[subprocess.Popen[bytes]]:
    """``posegen ARGS`` with stderr (its log) into ``log``; SIGTERM and wait on the way out."""
    with log.open("wb") as err:
        proc = subprocess.Popen([*POSEGEN, *args], env=env, stdout=subprocess.DEVNULL, stderr=err)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _wait_ready(base: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()[-2000:]
        try:
            if httpx.get(base + "/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "API did not become ready"
        time.sleep(0.1)


def _json_lines(path: Path) -> list[dict[str, Any]]:
    """Every line of a process's log, each of which must be one JSON object."""
    out = []
    for line in path.read_text().splitlines():
        if line.strip():
            out.append(json.loads(line))  # a line that is not JSON fails the test here
    return out


def test_one_generation_is_followed_across_processes(
    cli_env: dict[str, str], engine: Engine, tmp_path: Path
) -> None:
    session_secret = "sess-" + secrets.token_hex(24)
    spans_file = tmp_path / "spans.jsonl"
    env = {
        **cli_env,
        "POSEGEN_LOG_FORMAT": "json",
        "POSEGEN_TRACE_FILE": str(spans_file),
        "POSEGEN_SESSION_SECRET": session_secret,
        "POSEGEN_BACKEND": "posemap",
    }
    _cli(env, "library", "seed")
    admin_key = json.loads(
        _cli(env, "users", "create", "Ada", "ada@example.com", "--admin", "--json")
    )["apiKey"]
    user_key = json.loads(_cli(env, "users", "create", "Uma", "uma@example.com", "--json"))[
        "apiKey"
    ]
    forged_key = "pg_" + secrets.token_urlsafe(32)
    issued = {"admin key": admin_key, "user key": user_key, "forged key": forged_key}

    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    api_log, worker_log = tmp_path / "api.log", tmp_path / "worker.log"
    with ExitStack() as stack:
        api_proc = stack.enter_context(_process(env, api_log, "serve", "--port", str(port)))
        _wait_ready(base, api_proc, api_log)
        stack.enter_context(_process(env, worker_log, "worker", "--concurrency", "1"))
        api = stack.enter_context(
            httpx.Client(
                base_url=base + "/api/pose-generator",
                headers={"Authorization": f"Bearer {user_key}"},
                timeout=15,
            )
        )
        project = api.post("/projects", json={"name": "followed"}).json()["id"]
        submitted = api.post(
            "/generations",
            json={"projectId": project, "poseIds": [1, 2], "variations": 2},
            headers={"X-Request-ID": REQUEST_ID},
        )
        assert submitted.status_code == 202, submitted.text
        assert submitted.headers["X-Request-ID"] == REQUEST_ID
        gid = submitted.json()["id"]
        # Chances for a key to leak: in a query string (the access log prints paths), as a
        # request id (refused and replaced), and as a key the API does not know.
        leak = api.get("/projects", params={"key": user_key}, headers={"X-Request-ID": user_key})
        assert leak.status_code == 200
        assert leak.headers["X-Request-ID"] != user_key and len(leak.headers["X-Request-ID"]) == 32
        refused = api.get("/projects", headers={"Authorization": f"Bearer {forged_key}"})
        assert refused.status_code == 401 and refused.headers["X-Request-ID"]

        deadline = time.monotonic() + 90
        while (g := api.get(f"/generations/{gid}").json())["status"] != "completed":
            assert g["status"] in ("pending", "processing"), g
            assert time.monotonic() < deadline, g
            time.sleep(0.2)

        # The dashboard, signed in as the operator, over the same real HTTP server.
        with httpx.Client(base_url=base, timeout=15) as browser:
            _sign_in(browser, admin_key)
            page = _poll_page(browser, f"/ui/generations/{gid}", 'id="timings"')
            assert page.count("<tr><td>p") == 4  # four poses, one timing row each
            assert 'id="trace-id"' in page and f"/ui/generations/{gid}/log" in page
            log_page = _poll_page(browser, f"/ui/generations/{gid}/log", "pose written")
            assert "generation submitted" in log_page and "generation claimed" in log_page

    api_lines, worker_lines = _json_lines(api_log), _json_lines(worker_log)
    assert api_lines and worker_lines
    stored = [json.dumps(f) for f in _stored_lines(engine, gid)]

    # No key and no secret anywhere: stderr of both processes, the stored log lines, the spans.
    everything = "\n".join(
        [api_log.read_text(), worker_log.read_text(), *stored, spans_file.read_text()]
    )
    for name, value in {**issued, "session secret": session_secret}.items():
        assert value not in everything, f"the {name} appears in the logs"
    assert "[redacted]" in api_log.read_text()  # the query-string key was there, masked

    # Lines carry their context.
    submit_line = _one(api_lines, "generation submitted")
    assert submit_line["generation_id"] == gid and submit_line["request_id"] == REQUEST_ID
    assert isinstance(submit_line["user_id"], int)
    access = [x for x in api_lines if x["logger"] == "uvicorn.access"]
    assert any(x.get("request_id") == REQUEST_ID for x in access)
    claimed = _one(worker_lines, "generation claimed")
    assert claimed["generation_id"] == gid and claimed["worker"] and claimed["lease_token"] >= 1
    assert claimed["user_id"] == submit_line["user_id"]
    written = [x for x in worker_lines if x["msg"] == "pose written"]
    assert len(written) == 4
    assert {x["pose_id"] for x in written} == {1, 2}
    for x in written:
        assert x["generation_id"] == gid and x["lease_token"] == claimed["lease_token"]
        assert all(x[k] >= 0 for k in ("map_ms", "backend_ms", "storage_ms", "write_ms"))

    # Spans: the generation's spans, from both processes, form one trace.
    spans = [json.loads(line) for line in spans_file.read_text().splitlines()]
    submit_span = next(
        s
        for s in spans
        if s["name"] == "posegen.submit" and s["attributes"].get("posegen.generation_id") == gid
    )
    trace = [s for s in spans if s["trace_id"] == submit_span["trace_id"]]
    names = {s["name"] for s in trace}
    assert {
        "POST /api/pose-generator/generations",
        "posegen.submit",
        "posegen.claim",
        "posegen.generation",
        "posegen.pose",
        "posegen.pose.map",
        "posegen.pose.backend",
        "posegen.pose.storage",
        "posegen.pose.write",
    } <= names, names
    assert {s["service"] for s in trace} == {"posegen-serve", "posegen-worker"}
    assert len({s["pid"] for s in trace}) == 2
    ids = {s["span_id"] for s in trace}
    roots = [s for s in trace if s["parent_id"] not in ids]
    assert [r["name"] for r in roots] == ["POST /api/pose-generator/generations"]
    assert roots[0]["attributes"]["request_id"] == REQUEST_ID
    assert sum(1 for s in trace if s["name"] == "posegen.pose.write") == 4
    # Nothing else of this generation went to another trace.
    tagged = [s for s in spans if s["attributes"].get("posegen.generation_id") == gid]
    assert {s["trace_id"] for s in tagged} == {submit_span["trace_id"]}


def _one(lines: list[dict[str, Any]], msg: str) -> dict[str, Any]:
    found = [x for x in lines if x["msg"] == msg]
    assert len(found) == 1, (msg, found)
    return found[0]


def _stored_lines(engine: Engine, gid: int) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(GenerationLog.message, GenerationLog.fields).where(
                GenerationLog.generation_id == gid
            )
        ).all()
    return [{"msg": r.message, **r.fields} for r in rows]


def _sign_in(client: httpx.Client, api_key: str) -> None:
    form = client.get("/ui/sign-in")
    token = form.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    done = client.post("/ui/sign-in", data={"csrf_token": token, "api_key": api_key, "next": ""})
    assert done.status_code in (200, 303), done.text[:300]


def _poll_page(client: httpx.Client, path: str, needle: str) -> str:
    """The page once it shows ``needle`` (log lines reach the database within a second)."""
    deadline = time.monotonic() + 15
    while True:
        page = client.get(path)
        assert page.status_code == 200, page.text[:300]
        if needle in page.text:
            return page.text
        assert time.monotonic() < deadline, page.text[-2000:]
        time.sleep(0.2)
