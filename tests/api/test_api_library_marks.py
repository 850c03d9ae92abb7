"""Favourites and ratings over real HTTP: the shapes, and exact aggregates when 48 requests
land at once (one barrier, one connection each) on a real uvicorn, on SQLite and PostgreSQL:
``favorite_count`` / ``rating_count`` / ``rating_sum`` equal the COUNT and SUM of the rows, and
the values the requests' final state implies."""

from __future__ import annotations

import threading
from typing import Any

import httpx
from api_helpers import Api, Keys, problem_of
from live_server import live_server
from sqlalchemy import Engine, func, select

from posegen import accounts
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import PoseFavorite, PoseLibrary, PoseRating
from posegen.library import seed_library

USERS = 24
POSE = 3


def _fire(base: str, calls: list[tuple[str, str, str, dict[str, Any] | None]]) -> list[int]:
    """Send every (method, path, key, json) at once; the statuses in order."""
    barrier = threading.Barrier(len(calls))
    out = [0] * len(calls)

    def one(i: int) -> None:
        method, path, key, body = calls[i]
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            r = c.request(
                method, base + path, json=body, headers={"Authorization": f"Bearer {key}"}
            )
            out[i] = r.status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


def _truth(engine: Engine) -> tuple[tuple[int, int, int, int, int], tuple[int, int, int]]:
    """(aggregates on the pose row), (the same counted from the rows)."""
    with engine.connect() as conn:
        row = conn.execute(
            select(
                PoseLibrary.favorite_count,
                PoseLibrary.rating_count,
                PoseLibrary.rating_sum,
                PoseLibrary.popularity,
                PoseLibrary.use_count,
            ).where(PoseLibrary.id == POSE)
        ).one()
        favs = conn.execute(select(func.count()).where(PoseFavorite.pose_id == POSE)).scalar_one()
        count, total = conn.execute(
            select(func.count(), func.coalesce(func.sum(PoseRating.stars), 0)).where(
                PoseRating.pose_id == POSE
            )
        ).one()
    return tuple(int(v) for v in row), (int(favs), int(count), int(total))  # type: ignore[return-value]


def test_concurrent_favourites_and_ratings_keep_exact_counts(
    settings: Settings, engine: Engine
) -> None:
    seed_library(engine)
    keys = [
        accounts.create_user(engine, f"U{i}", f"u{i}@example.com").api_key for i in range(USERS)
    ]
    s = settings.model_copy(update={"db_pool_size": 20, "db_max_overflow": 40})
    stars = [1 + i % 5 for i in range(USERS)]
    fav, rating = f"/library/poses/{POSE}/favorite", f"/library/poses/{POSE}/rating"
    with live_server(create_app(s, engine), s) as (base, _):
        # Wave 1: every user favourites the pose and rates it, at once (48 requests).
        wave1 = [("PUT", fav, k, None) for k in keys]
        wave1 += [("PUT", rating, k, {"stars": n}) for k, n in zip(keys, stars, strict=True)]
        assert set(_fire(base, wave1)) == {200}
        (favs, count, total, popularity, uses), rows = _truth(engine)
        assert (favs, count, total) == rows == (USERS, USERS, sum(stars))
        assert popularity == uses + favs

        # Wave 2 (60 requests): even users unfavourite while odd users favourite again, twice
        # each (no-ops); the first 12 withdraw their rating, the others re-rate 5 stars. Each
        # user's requests agree with each other, so the final state is known exactly.
        wave2 = [("DELETE" if i % 2 == 0 else "PUT", fav, k, None) for i, k in enumerate(keys)]
        wave2 += [
            ("DELETE", rating, k, None) if i < 12 else ("PUT", rating, k, {"stars": 5})
            for i, k in enumerate(keys)
        ]
        wave2 += [("PUT", fav, k, None) for k in keys[1::2]]  # odd users again: still one row
        assert len(wave2) >= 40 and set(_fire(base, wave2)) == {200}
        (favs, count, total, popularity, uses), rows = _truth(engine)
        assert (favs, count, total) == rows == (USERS // 2, USERS - 12, 5 * (USERS - 12))
        assert popularity == uses + favs


def test_marks_show_on_the_pose_for_the_caller(api: Api, keys: Keys, library: None) -> None:
    r = api("PUT", f"/library/poses/{POSE}/favorite", key=keys.user)
    assert r.json() == {"poseId": POSE, "isFavorite": True, "favoriteCount": 1, "popularity": 1}
    assert api("PUT", f"/library/poses/{POSE}/favorite", key=keys.user).json()["favoriteCount"] == 1
    r = api("PUT", f"/library/poses/{POSE}/rating", key=keys.user, json={"stars": 4})
    assert r.json() == {"poseId": POSE, "stars": 4, "ratingAverage": 4.0, "ratingCount": 1}
    r = api("PUT", f"/library/poses/{POSE}/rating", key=keys.other, json={"stars": 1})
    assert r.json()["ratingAverage"] == 2.5 and r.json()["ratingCount"] == 2

    mine = api("GET", f"/library/poses/{POSE}", key=keys.user).json()
    assert (mine["isFavorite"], mine["myRating"], mine["favoriteCount"]) == (True, 4, 1)
    assert (mine["ratingAverage"], mine["ratingCount"], mine["popularity"]) == (2.5, 2, 1)
    theirs = api("GET", f"/library/poses/{POSE}", key=keys.other).json()
    assert (theirs["isFavorite"], theirs["myRating"]) == (False, 1)
    listed = api("GET", "/library/poses", key=keys.user, params={"favorites": "true"}).json()
    assert [p["id"] for p in listed["items"]] == [POSE]
    assert (
        api("GET", "/library/poses", key=keys.other, params={"favorites": True}).json()["items"]
        == []
    )
    first = api("GET", "/library/poses", key=keys.other, params={"sort": "popular"}).json()
    assert first["items"][0]["id"] == POSE  # the one favourite made it the most popular

    r = api("DELETE", f"/library/poses/{POSE}/rating", key=keys.user)
    assert r.json() == {"poseId": POSE, "stars": None, "ratingAverage": 1.0, "ratingCount": 1}
    r = api("DELETE", f"/library/poses/{POSE}/favorite", key=keys.user)
    assert r.json()["isFavorite"] is False and r.json()["favoriteCount"] == 0

    for stars in (0, 6, 2.5, "4"):
        r = api("PUT", f"/library/poses/{POSE}/rating", key=keys.user, json={"stars": stars})
        problem_of(r, 422)
    assert problem_of(api("PUT", "/library/poses/999999/favorite", key=keys.user), 404)
    bad = api("GET", "/library/poses", key=keys.user, params={"sort": "relevance"})
    assert problem_of(bad, 422)["kind"] == "invalid-input"
    assert (
        problem_of(
            api("GET", "/library/poses", key=keys.user, params={"cursor": "bm90IGEgY3Vyc29y"}), 422
        )["kind"]
        == "bad-cursor"
    )


def test_concurrent_submits_and_favourites_count_every_use_once(
    settings: Settings, engine: Engine
) -> None:
    """48 requests at once: 24 library submits naming overlapping poses in different orders
    (pose rows are locked in id order: no deadlock) and 24 favourites of the same poses."""
    seed_library(engine)
    users = [accounts.create_user(engine, f"S{i}", f"s{i}@example.com") for i in range(8)]
    s = settings.model_copy(update={"db_pool_size": 20, "db_max_overflow": 40})
    orders = ([1, 2, 3], [3, 2, 1], [2, 3, 1], [3, 1])
    with live_server(create_app(s, engine), s) as (base, _), httpx.Client() as c:
        projects = []
        for u in users:
            r = c.post(
                f"{base}/projects",
                json={"name": "p"},
                headers={"Authorization": f"Bearer {u.api_key}"},
            )
            projects.append(int(r.json()["id"]))
        calls: list[tuple[str, str, str, dict[str, Any] | None]] = []
        for i in range(24):
            u, project = users[i % 8], projects[i % 8]
            body = {"projectId": project, "poseIds": orders[i % 4], "variations": 2}
            calls.append(("POST", "/generations", u.api_key, body))
        for i in range(24):
            calls.append(
                ("PUT", f"/library/poses/{1 + i % 3}/favorite", users[i % 8].api_key, None)
            )
        statuses = _fire(base, calls)
    assert statuses[:24] == [202] * 24 and set(statuses[24:]) == {200}
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                PoseLibrary.id,
                PoseLibrary.use_count,
                PoseLibrary.favorite_count,
                PoseLibrary.popularity,
            ).where(PoseLibrary.id.in_([1, 2, 3]))
        ).all()
    uses = {p: sum(p in orders[i % 4] for i in range(24)) for p in (1, 2, 3)}
    for pose_id, use_count, favs, popularity in rows:
        assert use_count == uses[pose_id]
        assert favs == 8  # each pose: 8 requests from 8 distinct users
        assert popularity == use_count + favs
