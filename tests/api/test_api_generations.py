"""Generations: submit (validation, limits, idempotency, priority), list, status, cancel, and
results with image, thumbnail and ZIP downloads."""

from __future__ import annotations

import io
import zipfile

import pytest
from api_helpers import Api, Keys, claim_one, problem_of, write_pose
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, func, select

from posegen import queue
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import PoseGeneration
from posegen.storage import make_storage


@pytest.fixture
def project(api: Api, keys: Keys, library: None) -> int:
    return int(api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"])


def _count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count(PoseGeneration.id))).scalar_one())


def test_submit_library_and_text(api: Api, keys: Keys, project: int) -> None:
    r = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": project, "poseIds": [3, 1], "variations": 2, "seed": 7},
    )
    assert r.status_code == 202, r.text
    g = r.json()
    assert r.headers["location"] == f"/api/pose-generator/generations/{g['id']}"
    assert (g["type"], g["status"], g["total"], g["poseIds"]) == ("library", "pending", 4, [3, 1])
    assert (g["percent"], g["etaSeconds"], g["seed"], g["width"]) == (0.0, None, 7, 512)
    r = api(
        "POST",
        "/generations",
        key=keys.user,
        json={
            "projectId": project,
            "textPrompt": "a dancer mid-leap",
            "variations": 3,
            "width": 640,
            "height": 384,
        },
    )
    assert r.status_code == 202, r.text
    t = r.json()
    assert (t["type"], t["total"], t["prompt"], t["width"]) == ("text", 3, "a dancer mid-leap", 640)


@pytest.mark.parametrize(
    ("payload", "kind"),
    [
        ({"poseIds": [1], "textPrompt": "both at once"}, "invalid-input"),
        ({}, "invalid-input"),
        ({"textPrompt": "hi"}, "invalid-input"),
        ({"textPrompt": "x" * 501}, "invalid-input"),
        ({"poseIds": []}, "invalid-input"),
        ({"poseIds": [1, 1]}, "invalid-input"),
        ({"poseIds": [1], "variations": 0}, "invalid-input"),
        ({"poseIds": [1], "variations": 11}, "too-many-variations"),
        ({"poseIds": [1], "width": 100}, "invalid-input"),
        ({"poseIds": [1], "seed": -1}, "invalid-input"),
        ({"poseIds": [999999]}, "unknown-pose"),
        ({"poseIds": [1], "colour": "red"}, "invalid-input"),
    ],
)
def test_invalid_requests_are_422(
    api: Api, keys: Keys, project: int, engine: Engine, payload: dict[str, object], kind: str
) -> None:
    r = api("POST", "/generations", key=keys.user, json={"projectId": project, **payload})
    assert problem_of(r, 422)["kind"] == kind
    assert _count(engine) == 0


def test_request_limits_from_settings(
    settings: Settings, engine: Engine, keys: Keys, project: int
) -> None:
    tight = settings.model_copy(update={"max_poses_per_request": 3, "max_total_poses": 6})
    with TestClient(create_app(tight, engine)) as client:
        api = Api(client)
        r = api(
            "POST",
            "/generations",
            key=keys.user,
            json={"projectId": project, "poseIds": [1, 2, 3, 4]},
        )
        assert problem_of(r, 422)["kind"] == "too-many-poses"
        r = api(
            "POST",
            "/generations",
            key=keys.user,
            json={"projectId": project, "poseIds": [1, 2, 3], "variations": 3},
        )
        assert problem_of(r, 422)["kind"] == "too-many-total-poses"
        r = api(
            "POST",
            "/generations",
            key=keys.user,
            json={"projectId": project, "textPrompt": "many images", "variations": 11},
        )
        assert problem_of(r, 422)["kind"] == "too-many-variations"


def test_project_must_be_yours_and_active(api: Api, keys: Keys, project: int) -> None:
    r = api("POST", "/generations", key=keys.other, json={"projectId": project, "poseIds": [1]})
    problem_of(r, 404)
    api("POST", f"/projects/{project}/archive", key=keys.user)
    r = api("POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [1]})
    assert problem_of(r, 409)["kind"] == "project-archived"


def test_priority_is_for_admins(api: Api, keys: Keys, project: int, library: None) -> None:
    r = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": project, "poseIds": [1], "priority": 5},
    )
    assert problem_of(r, 403)["kind"] == "priority-admin-only"
    admin_project = api("POST", "/projects", key=keys.admin, json={"name": "a"}).json()["id"]
    r = api(
        "POST",
        "/generations",
        key=keys.admin,
        json={"projectId": admin_project, "poseIds": [1], "priority": 5},
    )
    assert r.status_code == 202 and r.json()["priority"] == 5


def test_idempotency_key(api: Api, keys: Keys, project: int, engine: Engine) -> None:
    body = {"projectId": project, "poseIds": [1, 2], "variations": 2}
    first = api(
        "POST", "/generations", key=keys.user, json=body, headers={"Idempotency-Key": "order-42"}
    )
    assert first.status_code == 202
    again = api(
        "POST",
        "/generations",
        key=keys.user,
        json=dict(reversed(body.items())),
        headers={"Idempotency-Key": "order-42"},
    )
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = api(
        "POST",
        "/generations",
        key=keys.user,
        json={**body, "variations": 3},
        headers={"Idempotency-Key": "order-42"},
    )
    assert problem_of(other, 409)["kind"] == "idempotency-conflict"
    assert _count(engine) == 1
    # Keys are per user: the same key from someone else is their own request.
    theirs = api("POST", "/projects", key=keys.other, json={"name": "o"}).json()["id"]
    r = api(
        "POST",
        "/generations",
        key=keys.other,
        json={**body, "projectId": theirs},
        headers={"Idempotency-Key": "order-42"},
    )
    assert r.status_code == 202 and r.json()["id"] != first.json()["id"]
    bad = api(
        "POST", "/generations", key=keys.user, json=body, headers={"Idempotency-Key": "x" * 201}
    )
    problem_of(bad, 422)


def test_submission_rate_and_active_limits(
    settings: Settings, engine: Engine, keys: Keys, project: int
) -> None:
    body = {"projectId": project, "poseIds": [1]}
    per_minute = settings.model_copy(update={"submissions_per_minute": 2})
    with TestClient(create_app(per_minute, engine)) as client:
        api = Api(client)
        assert [
            api("POST", "/generations", key=keys.user, json=body).status_code for _ in range(2)
        ] == [202, 202]
        r = api("POST", "/generations", key=keys.user, json=body)
        assert problem_of(r, 429)["kind"] == "too-many-submissions"
        assert 1 <= int(r.headers["retry-after"]) <= 60
        # Replaying an earlier request is not a new submission... but it must exist first.
        assert _count(engine) == 2

    active = settings.model_copy(update={"max_active_generations": 2})
    with TestClient(create_app(active, engine)) as client:
        api = Api(client)
        r = api("POST", "/generations", key=keys.user, json=body)
        assert problem_of(r, 429)["kind"] == "too-many-active"
        assert int(r.headers["retry-after"]) >= 1
        first = api("GET", "/generations", key=keys.user).json()["items"][0]["id"]
        api("POST", f"/generations/{first}/cancel", key=keys.user)
        assert api("POST", "/generations", key=keys.user, json=body).status_code == 202
        # Other users have their own budget.
        theirs = api("POST", "/projects", key=keys.other, json={"name": "o"}).json()["id"]
        r = api("POST", "/generations", key=keys.other, json={**body, "projectId": theirs})
        assert r.status_code == 202


def test_listing_visibility_and_filters(api: Api, keys: Keys, project: int) -> None:
    mine = [
        api(
            "POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [i]}
        ).json()["id"]
        for i in (1, 2, 3)
    ]
    theirs_project = api("POST", "/projects", key=keys.other, json={"name": "o"}).json()["id"]
    theirs = api(
        "POST", "/generations", key=keys.other, json={"projectId": theirs_project, "poseIds": [1]}
    ).json()["id"]
    api("POST", f"/generations/{mine[0]}/cancel", key=keys.user)

    page = api("GET", "/generations", key=keys.user, params={"limit": 2}).json()
    assert [g["id"] for g in page["items"]] == [mine[2], mine[1]]
    rest = api("GET", "/generations", key=keys.user, params={"cursor": page["nextCursor"]}).json()
    assert [g["id"] for g in rest["items"]] == [mine[0]] and rest["nextCursor"] is None
    everyone = api("GET", "/generations", key=keys.admin).json()["items"]
    assert {g["id"] for g in everyone} == {*mine, theirs}
    by_user = api("GET", "/generations", key=keys.admin, params={"userId": keys.other_id}).json()
    assert [g["id"] for g in by_user["items"]] == [theirs]
    cancelled = api("GET", "/generations", key=keys.admin, params={"status": "cancelled"}).json()
    assert [g["id"] for g in cancelled["items"]] == [mine[0]]
    problem_of(api("GET", "/generations", key=keys.user, params={"userId": keys.other_id}), 403)
    problem_of(api("GET", f"/generations/{theirs}", key=keys.user), 404)
    problem_of(api("POST", f"/generations/{theirs}/cancel", key=keys.user), 404)
    assert api("GET", f"/generations/{theirs}", key=keys.admin).status_code == 200


def test_progress_results_downloads_and_archive(
    api: Api, keys: Keys, project: int, engine: Engine, settings: Settings
) -> None:
    gid = api(
        "POST",
        "/generations",
        key=keys.user,
        json={"projectId": project, "poseIds": [1, 2], "variations": 2},
    ).json()["id"]
    job = claim_one(engine, settings)
    write_pose(engine, settings, job, 1, 0)
    g = api("GET", f"/generations/{gid}", key=keys.user).json()
    assert (g["status"], g["completed"], g["percent"]) == ("processing", 1, 25.0)
    assert g["etaSeconds"] is not None and g["etaSeconds"] >= 0
    problem_of(api("DELETE", f"/projects/{project}", key=keys.user), 409)
    write_pose(engine, settings, job, 1, 1)
    write_pose(engine, settings, job, 2, 0)
    write_pose(engine, settings, job, 2, 1, failed=True)
    assert queue.finish(engine, job.id, job.lease_token).value == "partial"

    g = api("GET", f"/generations/{gid}", key=keys.user).json()
    assert (g["status"], g["completed"], g["failed"], g["percent"]) == ("partial", 3, 1, 100.0)
    results = api("GET", f"/generations/{gid}/results", key=keys.user).json()
    assert [r["variationKey"] for r in results] == ["p1-v0", "p1-v1", "p2-v0", "p2-v1"]
    failed = results[3]
    assert failed["status"] == "failed" and failed["imageUrl"] is None
    assert failed["errorKind"] == "generator"

    store = make_storage(settings)
    image = api("GET", results[0]["imageUrl"], key=keys.user)
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == store.open(f"{gid // 1000:06d}/{gid}/p1-v0.png").read_bytes()
    thumb = api("GET", results[0]["thumbnailUrl"], key=keys.user)
    assert thumb.headers["content-type"] == "image/jpeg"
    with Image.open(io.BytesIO(thumb.content)) as img:
        assert img.format == "JPEG"
    problem_of(api("GET", results[0]["imageUrl"], key=keys.other), 404)
    assert api("GET", results[0]["imageUrl"], key=keys.admin).status_code == 200
    problem_of(api("GET", f"/generations/{gid}/results/{failed['id']}/image", key=keys.user), 404)
    problem_of(api("GET", f"/generations/{gid}/results/1/original", key=keys.user), 422)

    archive = api("GET", f"/generations/{gid}/archive", key=keys.user)
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as zf:
        assert zf.testzip() is None
        assert sorted(zf.namelist()) == ["p1-v0.png", "p1-v1.png", "p2-v0.png"]
        assert zf.read("p1-v0.png") == image.content
    problem_of(api("GET", f"/generations/{gid}/archive", key=keys.other), 404)

    r = api("POST", f"/generations/{gid}/cancel", key=keys.user)
    assert problem_of(r, 409)["kind"] == "not-cancellable"
    assert api("DELETE", f"/projects/{project}", key=keys.user).status_code == 204
    assert not (settings.effective_results_dir / f"{gid // 1000:06d}" / str(gid)).exists()
