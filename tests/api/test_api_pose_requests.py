"""Community pose requests on both engines: the review state machine (409 with a problem type
for wrong-state moves), duplicates, votes (once each, never one's own), the requester's events,
and 40+ truly concurrent votes over real HTTP keeping vote_count equal to the vote rows (and 40+
identical new requests at once making exactly one)."""

from __future__ import annotations

import threading

import httpx
from api_helpers import Api, Keys, png, problem_of
from live_server import live_server
from sqlalchemy import Engine, func, select

from posegen import accounts
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import PoseRequest, PoseRequestVote

N = 44


def _make(api: Api, key: str, name: str = "Tree pose", **extra: object) -> dict:
    r = api("POST", "/requests", key=key, json={"name": name, **extra})
    assert r.status_code == 201, r.text
    return r.json()


def test_review_state_machine_events_and_duplicates(api: Api, keys: Keys, library: None) -> None:
    made = _make(api, keys.user, description="one leg", category="standing", useCase="yoga")
    rid = made["id"]
    assert made["status"] == "open" and made["categorySlug"] == "standing"
    dup = api("POST", "/requests", key=keys.user, json={"name": "  tree  POSE "})
    assert problem_of(dup, 409)["kind"] == "duplicate-request"
    assert api("POST", "/requests", key=keys.other, json={"name": "Tree pose"}).status_code == 201

    # Wrong-state moves are 409 with a problem type, never 400.
    wrong = api("POST", f"/admin/requests/{rid}/approve", key=keys.admin, json={})
    assert wrong.status_code == 200, wrong.text
    again = api("POST", f"/admin/requests/{rid}/approve", key=keys.admin, json={})
    assert problem_of(again, 409)["kind"] == "invalid-transition"
    problem_of(api("POST", f"/admin/requests/{rid}/reject", key=keys.admin, json={}), 422)
    started = api("POST", f"/admin/requests/{rid}/start", key=keys.admin, json={"note": "on it"})
    assert started.json()["status"] == "in_progress"
    private = api(
        "POST", "/me/poses", key=keys.admin, json={"name": "p", "keypoints": [[0.5, 0.5]] * 18}
    ).json()["id"]
    bad = api("POST", f"/admin/requests/{rid}/complete", key=keys.admin, json={"poseId": private})
    assert problem_of(bad, 422)["kind"] == "unknown-pose"  # a private pose cannot fulfil it
    done = api(
        "POST",
        f"/admin/requests/{rid}/complete",
        key=keys.admin,
        json={"poseSlug": "standing-neutral", "note": "added"},
    )
    assert done.status_code == 200, done.text
    assert done.json()["status"] == "completed"
    assert done.json()["fulfilledPoseSlug"] == "standing-neutral"
    for action in ("approve", "start", "reject"):
        late = api("POST", f"/admin/requests/{rid}/{action}", key=keys.admin, json={"note": "n"})
        assert problem_of(late, 409)["kind"] == "invalid-transition"
    problem_of(api("POST", "/admin/requests/999999/approve", key=keys.admin, json={}), 404)

    # The requester reads the changes as events; a finished name can be asked for again.
    detail = api("GET", f"/requests/{rid}", key=keys.other).json()
    assert [e["status"] for e in detail["events"]] == [
        "open",
        "approved",
        "in_progress",
        "completed",
    ]
    feed = api("GET", "/me/request-events", key=keys.user).json()["items"]
    assert [e["message"] for e in feed] == [
        "your request was completed: added",
        "work on your request has started: on it",
        "your request was approved",
    ]
    assert api("GET", "/me/request-events", key=keys.other).json()["items"] == []
    assert api("POST", "/requests", key=keys.user, json={"name": "Tree pose"}).status_code == 201

    rejected = _make(api, keys.user, "Cartwheel")["id"]
    r = api("POST", f"/admin/requests/{rejected}/reject", key=keys.admin, json={"note": "no"})
    assert r.json()["adminNote"] == "no"
    feed = api("GET", "/me/request-events", key=keys.user).json()["items"]
    assert feed[0]["message"] == "your request was rejected: no"


def test_votes_lists_and_reference(api: Api, keys: Keys, library: None) -> None:
    upload = api(
        "POST", "/uploads", key=keys.user, files={"file": ("r.png", png(), "image/png")}
    ).json()["id"]
    a = _make(api, keys.user, "A", referenceUploadId=upload)["id"]
    b = _make(api, keys.other, "B")["id"]
    theirs = api(
        "POST", "/requests", key=keys.other, json={"name": "C", "referenceUploadId": upload}
    )
    assert problem_of(theirs, 422)["kind"] == "unknown-upload"
    ref = api("GET", f"/requests/{a}/reference", key=keys.other)
    assert ref.status_code == 200 and ref.content == png()
    problem_of(api("GET", f"/requests/{b}/reference", key=keys.other), 404)

    own = api("POST", f"/requests/{a}/vote", key=keys.user)
    assert problem_of(own, 409)["kind"] == "own-request"
    for _ in range(2):  # voting twice counts once
        v = api("POST", f"/requests/{a}/vote", key=keys.other)
        assert v.json() == {"requestId": a, "voteCount": 1, "voted": True}
    api("POST", f"/requests/{a}/vote", key=keys.admin)
    listed = api("GET", "/requests", key=keys.other, params={"sort": "votes"}).json()["items"]
    assert [(r["id"], r["voteCount"], r["voted"]) for r in listed] == [(a, 2, True), (b, 0, False)]
    newest = api("GET", "/requests", key=keys.other, params={"sort": "newest", "limit": 1}).json()
    assert [r["id"] for r in newest["items"]] == [b]
    rest = api(
        "GET",
        "/requests",
        key=keys.other,
        params={"sort": "newest", "cursor": newest["nextCursor"]},
    ).json()
    assert [r["id"] for r in rest["items"]] == [a] and rest["nextCursor"] is None
    mine = api("GET", "/requests", key=keys.user, params={"mine": "true"}).json()["items"]
    assert [r["id"] for r in mine] == [a]
    assert api("DELETE", f"/requests/{a}/vote", key=keys.other).json()["voteCount"] == 1
    assert api("DELETE", f"/requests/{a}/vote", key=keys.other).json()["voteCount"] == 1

    api("POST", f"/admin/requests/{a}/reject", key=keys.admin, json={"note": "dup"})
    closed = api("POST", f"/requests/{a}/vote", key=keys.other)
    assert problem_of(closed, 409)["kind"] == "request-closed"
    status = api("GET", "/requests", key=keys.other, params={"status": "rejected"}).json()
    assert [r["id"] for r in status["items"]] == [a]
    problem_of(api("POST", "/requests/999999/vote", key=keys.other), 404)


def _counts(engine: Engine, request_id: int) -> tuple[int, int]:
    with engine.connect() as conn:
        stored = conn.execute(
            select(PoseRequest.vote_count).where(PoseRequest.id == request_id)
        ).scalar_one()
        rows = conn.execute(
            select(func.count()).where(PoseRequestVote.request_id == request_id)
        ).scalar_one()
    return int(stored), int(rows)


def _fire(
    base: str, calls: list[tuple[str, str]], path: str, body: dict | None = None
) -> list[int]:
    """Every call at once over its own connection (one barrier): (method, key)."""
    barrier = threading.Barrier(len(calls))
    out: list[int] = [0] * len(calls)

    def one(i: int) -> None:
        method, key = calls[i]
        with httpx.Client(timeout=120) as c:
            barrier.wait()
            headers = {"Authorization": f"Bearer {key}"}
            r = c.request(method, base + path, headers=headers, json=body)
            out[i] = r.status_code

    threads = [threading.Thread(target=one, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(180)
    return out


def test_concurrent_votes_keep_the_count_exact(
    settings: Settings, engine: Engine, keys: Keys, api: Api
) -> None:
    rid = _make(api, keys.user, "Handstand")["id"]
    voters = [accounts.create_user(engine, f"V{i}", f"v{i}@example.com").api_key for i in range(N)]
    s = settings.model_copy(update={"db_pool_size": 20, "db_max_overflow": 40})
    with live_server(create_app(s, engine), s) as (base, _):
        path = f"/requests/{rid}/vote"
        # Every voter twice at once, and the requester too: each counts once, theirs never.
        calls = [("POST", k) for k in voters for _ in range(2)] + [("POST", keys.user)] * 4
        statuses = _fire(base, calls, path)
        assert statuses.count(200) == 2 * N and statuses.count(409) == 4, statuses
        assert _counts(engine, rid) == (N, N)
        # Half take their vote back while the other half vote again, all at once.
        half = N // 2
        calls = [("DELETE", k) for k in voters[:half]] + [("POST", k) for k in voters[half:]]
        assert set(_fire(base, calls, path)) == {200}
        assert _counts(engine, rid) == (N - half, N - half)
        # The same new request sent N times at once: one is made, the rest are duplicates.
        same = _fire(base, [("POST", keys.other)] * N, "/requests", {"name": "Same wish"})
        assert sorted(set(same)) == [201, 409] and same.count(201) == 1, same
