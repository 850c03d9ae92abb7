"""Per-user caps on stored things: projects (429 too-many-projects, exact under 40+ simultaneous
creates over real HTTP) and result bytes (413, checked at submit from a size estimate)."""

from __future__ import annotations

import threading
from collections import Counter

import httpx
from api_helpers import Api, Keys, problem_of
from fastapi.testclient import TestClient
from live_server import live_server
from sqlalchemy import Engine, func, select

from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import Project
from posegen.queue import estimate_result_bytes

N = 44


def test_project_cap_is_exact_under_simultaneous_creates(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = settings.model_copy(
        update={"max_projects_per_user": 3, "db_pool_size": 20, "db_max_overflow": 40}
    )
    barrier = threading.Barrier(N)
    out: list[httpx.Response] = []
    lock = threading.Lock()
    with live_server(create_app(s, engine), s) as (base, _):

        def one(i: int) -> None:
            with httpx.Client(timeout=60) as c:
                barrier.wait()
                r = c.post(
                    f"{base}/projects",
                    json={"name": f"p{i}"},
                    headers={"Authorization": f"Bearer {keys.user}"},
                )
            with lock:
                out.append(r)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(N)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert Counter(r.status_code for r in out) == {201: 3, 429: N - 3}
        assert {problem_of(r, 429)["kind"] for r in out if r.status_code == 429} == {
            "too-many-projects"
        }
        # Another user has their own allowance.
        with httpx.Client() as c:
            r = c.post(
                f"{base}/projects",
                json={"name": "mine"},
                headers={"Authorization": f"Bearer {keys.other}"},
            )
            assert r.status_code == 201
    with engine.connect() as conn:
        count = conn.execute(
            select(func.count(Project.id)).where(Project.user_id == keys.user_id)
        ).scalar_one()
    assert count == 3


def test_generation_over_the_result_quota_is_413(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    one = estimate_result_bytes(settings, 1, 512, 512)
    s = settings.model_copy(update={"max_result_bytes_per_user": one + 1})
    with TestClient(create_app(s, engine)) as client:
        api = Api(client)
        project = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
        body = {"projectId": project, "textPrompt": "a dancer"}
        too_big = api("POST", "/generations", key=keys.user, json={**body, "variations": 2})
        assert "about" in problem_of(too_big, 413)["detail"]
        assert too_big.json()["kind"] == "generation-too-large"
        assert api("POST", "/generations", key=keys.user, json=body).status_code == 202
        full = api("POST", "/generations", key=keys.user, json=body)
        assert problem_of(full, 413)["kind"] == "result-quota-exceeded"
