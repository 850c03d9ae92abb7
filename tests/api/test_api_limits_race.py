"""Per-user limits hold under concurrency: 40+ simultaneous submits over real HTTP against a
real uvicorn admit exactly the limit, on SQLite and PostgreSQL (main admitted 11 and 16 of 40
against a limit of 3). Replays of an Idempotency-Key answer 200 and count against nothing;
deleting a project does not reopen the per-minute window."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import httpx
import pytest
from api_helpers import Keys, problem_of
from live_server import live_server
from sqlalchemy import Engine, func, select

from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import PoseGeneration, UserGenerationStats

N = 48


def _project(client: httpx.Client, base: str, key: str, name: str = "p") -> int:
    r = client.post(f"{base}/projects", json={"name": name}, headers=_auth(key))
    assert r.status_code == 201, r.text
    return int(r.json()["id"])


def _auth(key: str, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}", **extra}


def _fire(base: str, key: str, bodies: list[dict[str, Any]], headers: list[dict[str, str]]):
    """Send every request at once (one connection each, released by one barrier)."""
    barrier = threading.Barrier(len(bodies))
    out: list[httpx.Response | None] = [None] * len(bodies)

    def one(i: int) -> None:
        with httpx.Client(timeout=60) as c:
            barrier.wait()
            out[i] = c.post(f"{base}/generations", json=bodies[i], headers=_auth(key, **headers[i]))

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(bodies))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert all(r is not None for r in out)
    return [r for r in out if r is not None]


def _rows(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count(PoseGeneration.id)).where(PoseGeneration.user_id == user_id)
            ).scalar_one()
        )


def _limited(settings: Settings, **values: Any) -> Settings:
    # A pool as large as the burst: the race is on the database, not on pool checkout.
    return settings.model_copy(update={"db_pool_size": 20, "db_max_overflow": 40, **values})


@pytest.mark.parametrize(
    ("limits", "kind"),
    [
        ({"max_active_generations": 3, "submissions_per_minute": 1000}, "too-many-active"),
        ({"max_active_generations": 1000, "submissions_per_minute": 3}, "too-many-submissions"),
    ],
)
def test_simultaneous_submits_admit_exactly_the_limit(
    settings: Settings, engine: Engine, keys: Keys, limits: dict[str, int], kind: str
) -> None:
    s = _limited(settings, **limits)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=60) as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer", "variations": 1}
        responses = _fire(base, keys.user, [body] * N, [{}] * N)
        statuses = Counter(r.status_code for r in responses)
        assert statuses == {202: 3, 429: N - 3}, statuses
        refused = [problem_of(r, 429) for r in responses if r.status_code == 429]
        assert {p["kind"] for p in refused} == {kind}
        assert all(int(r.headers["retry-after"]) >= 1 for r in responses if r.status_code == 429)
        assert _rows(engine, keys.user_id) == 3
        # Another user is not affected by this one's budget.
        other = _project(c, base, keys.other)
        r = c.post(
            f"{base}/generations",
            json={"projectId": other, "textPrompt": "a dancer"},
            headers=_auth(keys.other),
        )
        assert r.status_code == 202, r.text


def test_simultaneous_replays_of_one_key_create_one_generation(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = _limited(settings, max_active_generations=2, submissions_per_minute=2)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=60) as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer"}
        responses = _fire(base, keys.user, [body] * N, [{"Idempotency-Key": "order-42"}] * N)
        assert Counter(r.status_code for r in responses) == {202: 1, 200: N - 1}
        assert len({r.json()["id"] for r in responses}) == 1
        # The replays counted once: one more submit fits, the one after does not.
        assert c.post(f"{base}/generations", json=body, headers=_auth(keys.user)).status_code == 202
        r = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
        assert problem_of(r, 429)["kind"] in ("too-many-submissions", "too-many-active")
        # ...and a replay still answers with the first generation, limits or not.
        again = c.post(
            f"{base}/generations",
            json=body,
            headers=_auth(keys.user, **{"Idempotency-Key": "order-42"}),
        )
        assert again.status_code == 200
        assert again.json()["id"] == responses[0].json()["id"]
    assert _rows(engine, keys.user_id) == 2


def test_deleting_a_project_does_not_reset_the_per_minute_window(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    s = _limited(settings, max_active_generations=100, submissions_per_minute=3)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=60) as c:
        project = _project(c, base, keys.user)
        body = {"projectId": project, "textPrompt": "a dancer"}
        ids = []
        for _ in range(3):
            r = c.post(f"{base}/generations", json=body, headers=_auth(keys.user))
            assert r.status_code == 202, r.text
            ids.append(r.json()["id"])
        for gid in ids:  # pending generations end at once, so the project can go
            c.post(f"{base}/generations/{gid}/cancel", headers=_auth(keys.user))
        assert c.delete(f"{base}/projects/{project}", headers=_auth(keys.user)).status_code == 204
        assert _rows(engine, keys.user_id) == 0

        fresh = _project(c, base, keys.user, "again")
        r = c.post(
            f"{base}/generations",
            json={"projectId": fresh, "textPrompt": "a dancer"},
            headers=_auth(keys.user),
        )
        body_ = problem_of(r, 429)
        assert body_["kind"] == "too-many-submissions"
        assert 1 <= int(r.headers["retry-after"]) <= 60
    with engine.connect() as conn:
        row = conn.execute(
            select(UserGenerationStats.window_submissions).where(
                UserGenerationStats.user_id == keys.user_id
            )
        ).scalar_one()
    assert row == 3


def test_simultaneous_deletes_free_each_generations_bytes_exactly_once(
    settings: Settings, engine: Engine, keys: Keys
) -> None:
    """40 DELETEs at once, two for each of 20 finished generations: 20 answer 204 and 20 404,
    and the owner's stored bytes fall by exactly what the 20 held (to 0)."""
    from posegen import queue
    from posegen.db.models import PoseStatus

    s = _limited(settings, max_active_generations=100, submissions_per_minute=1000)
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client(timeout=60) as c:
        project = _project(c, base, keys.user)
        gids = []
        for _ in range(20):
            r = c.post(
                f"{base}/generations",
                json={"projectId": project, "textPrompt": "a dancer"},
                headers=_auth(keys.user),
            )
            assert r.status_code == 202, r.text
            gids.append(r.json()["id"])
        for i, job in enumerate(queue.claim(engine, s, "w", 20)):
            pose_id, index, key = job.variation_keys()[0]
            result = queue.PoseResult(
                variation_key=key,
                pose_id=pose_id,
                variation_index=index,
                status=PoseStatus.COMPLETED,
                image_path=f"x/{i}.png",
                bytes=1000 + i,
            )
            queue.record_pose(engine, job.id, job.lease_token, result)
            assert queue.finish(engine, job.id, job.lease_token).value == "completed"
        assert _stored(engine, keys.user_id) == sum(1000 + i for i in range(20))

        barrier = threading.Barrier(40)
        codes: list[int] = []

        def one(gid: int) -> None:
            with httpx.Client(timeout=60) as client:
                barrier.wait()
                codes.append(
                    client.delete(f"{base}/generations/{gid}", headers=_auth(keys.user)).status_code
                )

        threads = [threading.Thread(target=one, args=(g,)) for g in gids + gids]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    assert Counter(codes) == {204: 20, 404: 20}
    assert _rows(engine, keys.user_id) == 0
    assert _stored(engine, keys.user_id) == 0


def _stored(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(UserGenerationStats.result_bytes).where(
                    UserGenerationStats.user_id == user_id
                )
            ).scalar_one()
        )
