"""Server-Sent Events over a real HTTP server: a client joins mid-generation, disconnects,
reconnects with Last-Event-ID and ends up with every event exactly once."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import uvicorn
from api_helpers import Keys, claim_one, write_pose
from fastapi import FastAPI
from sqlalchemy import Engine, select

from posegen import queue
from posegen.config import Settings
from posegen.db.models import GenerationEvent


@pytest.fixture
def live_url(app: FastAPI) -> Iterator[str]:
    """The app on a real uvicorn server at 127.0.0.1 (TestClient buffers streamed bodies)."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=0, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise RuntimeError("server did not start")
        threading.Event().wait(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/api/pose-generator"
    server.should_exit = True
    thread.join(10)


def _events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream into ``{"id", "event", "data"}`` dicts (comments and retry skipped)."""
    current: dict[str, Any] = {}
    for line in lines:
        if line == "":
            if "data" in current:
                yield current
            current = {}
        elif line.startswith(":"):
            continue
        else:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "data":
                current["data"] = json.loads(value)
            elif field in ("id", "event"):
                current[field] = value


def _db_events(engine: Engine, gid: int) -> list[tuple[int, str]]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(GenerationEvent.id, GenerationEvent.kind)
            .where(GenerationEvent.generation_id == gid)
            .order_by(GenerationEvent.id)
        ).all()
    return [(int(r.id), str(r.kind)) for r in rows]


def test_reconnecting_client_sees_every_event_once(
    live_url: str, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    auth = {"Authorization": f"Bearer {keys.user}"}
    with httpx.Client(base_url=live_url, headers=auth, timeout=10) as client:
        pid = client.post("/projects", json={"name": "live"}).json()["id"]
        gid = client.post(
            "/generations", json={"projectId": pid, "poseIds": [1, 2], "variations": 2}
        ).json()["id"]
        job = claim_one(engine, settings)
        write_pose(engine, settings, job, 1, 0)
        write_pose(engine, settings, job, 1, 1)

        seen: list[dict[str, Any]] = []
        # First connection, mid-generation: read three events, then hang up.
        with client.stream("GET", f"/generations/{gid}/events") as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            for event in _events(r.iter_lines()):
                seen.append(event)
                if len(seen) == 3:
                    break
        assert [e["event"] for e in seen] == ["queued", "started", "pose"]

        write_pose(engine, settings, job, 2, 0)  # happens while nobody listens
        # Reconnect where we left off; the replay comes from the database, then live events.
        headers = {"Last-Event-ID": seen[-1]["id"]}
        with client.stream("GET", f"/generations/{gid}/events", headers=headers) as r:
            stream = _events(r.iter_lines())
            for _ in range(2):  # the pose we missed while connected, and the one while away
                seen.append(next(stream))
            write_pose(engine, settings, job, 2, 1, failed=True)
            queue.finish(engine, job.id, job.lease_token)
            seen.extend(stream)  # live, until the terminal event closes the stream

    expected = _db_events(engine, gid)
    assert [(int(e["id"]), e["event"]) for e in seen] == expected
    assert [k for _, k in expected] == [
        "queued",
        "started",
        "pose",
        "pose",
        "pose",
        "pose",
        "partial",
    ]
    last = seen[-1]["data"]
    assert last["generationId"] == gid and last["kind"] == "partial"
    assert (last["data"]["completed"], last["data"]["failed"], last["data"]["total"]) == (3, 1, 4)
    assert seen[3]["data"]["data"]["variationKey"] == "p1-v1"

    with httpx.Client(base_url=live_url, headers=auth, timeout=10) as client:
        # Everything seen and the generation over: 204 tells EventSource not to reconnect.
        done = client.get(f"/generations/{gid}/events", headers={"Last-Event-ID": seen[-1]["id"]})
        assert done.status_code == 204
        # A new client after the end gets the whole history and the stream closes by itself.
        replay = client.get(f"/generations/{gid}/events")
        assert [int(e["id"]) for e in _events(iter(replay.text.splitlines()))] == [
            i for i, _ in expected
        ]
        other = client.get(
            f"/generations/{gid}/events", headers={"Authorization": f"Bearer {keys.other}"}
        )
        assert other.status_code == 404
