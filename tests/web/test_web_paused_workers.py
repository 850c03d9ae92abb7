"""A worker paused by its circuit breaker (backend unavailable) is visible to operators: the
admin API, the dashboard's Workers panel and its live-workers tile."""

from __future__ import annotations

from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, signed_in_client

from posegen.worker import registry


def test_a_paused_worker_shows_its_reason(
    make_client: Callable[..., TestClient], people: People, engine: Engine
) -> None:
    registry.register(engine, "host:1:aaaa", 2)
    registry.register(engine, "host:2:bbbb", 2)
    reason = "comfyui-unreachable: cannot reach ComfyUI at http://gpu-1:8188: connection refused"
    registry.set_paused(engine, "host:2:bbbb", reason)
    admin = signed_in_client(make_client(), people.admin.api_key)
    auth = {"Authorization": f"Bearer {people.admin.api_key}"}
    first = admin.get("/api/pose-generator/admin/workers", headers=auth).json()
    since = next(w["pausedAt"] for w in first if w["id"] == "host:2:bbbb")
    registry.set_paused(engine, "host:2:bbbb", reason + " (probe 2)")

    workers = {
        w["id"]: w for w in admin.get("/api/pose-generator/admin/workers", headers=auth).json()
    }
    assert workers["host:1:aaaa"]["paused"] is False
    assert workers["host:1:aaaa"]["pausedReason"] is None
    paused = workers["host:2:bbbb"]
    assert paused["paused"] is True and paused["alive"] is True
    assert paused["pausedReason"] == reason + " (probe 2)"
    assert paused["pausedAt"] == since  # the start of the outage, not of the last probe

    data = admin.get("/ui/overview.json?period=1h").json()
    assert data["workers"]["live"] == 2 and data["workers"]["paused"] == 1
    states = {w["id"]: (w["state"], w["pausedReason"]) for w in data["workerList"]}
    assert states == {
        "host:1:aaaa": ("alive", None),
        "host:2:bbbb": ("paused", reason + " (probe 2)"),
    }
    page = admin.get("/ui/overview?period=1h").text
    assert 'status-partial">paused</span>' in page and "connection refused (probe 2)" in page

    registry.set_paused(engine, "host:2:bbbb", None)  # the probe passed: claiming again
    workers = {
        w["id"]: w for w in admin.get("/api/pose-generator/admin/workers", headers=auth).json()
    }
    assert workers["host:2:bbbb"]["paused"] is False and workers["host:2:bbbb"]["pausedAt"] is None
