"""Projects: JSON and multipart creation, subject uploads (good and hostile), owner-only access,
pagination, and archive/delete refused while a generation is active."""

from __future__ import annotations

import io

import pytest
from api_helpers import Api, Keys, bomb_png, claim_one, png, problem_of
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine

from posegen.api.app import create_app
from posegen.config import Settings


def _upload(api: Api, key: str, data: bytes, name: str = "with subject") -> object:
    return api(
        "POST",
        "/projects",
        key=key,
        data={"name": name},
        files={"subject": ("me.png", data, "image/png")},
    )


def test_create_by_json_and_by_upload(api: Api, keys: Keys, settings: Settings) -> None:
    r = api(
        "POST",
        "/projects",
        key=keys.user,
        json={"name": "Summer shoot", "subjectImageUrl": "https://cdn.example.com/me.png"},
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["name"] == "Summer shoot"
    assert body["subjectImageUrl"] == "https://cdn.example.com/me.png"
    assert body["status"] == "active"

    r = _upload(api, keys.user, png(100, 80))
    assert r.status_code == 201, r.text
    created = r.json()
    # Stored as the user's own upload, as sent (PNG stays PNG), named by owner and content.
    assert created["subjectImageUrl"] is None
    upload = api("GET", f"/uploads/{created['subjectUploadId']}", key=keys.user).json()
    assert (upload["width"], upload["height"], upload["contentType"]) == (100, 80, "image/png")
    sha = upload["sha256"]
    stored = settings.effective_uploads_dir / str(keys.user_id) / sha[:2] / f"{sha}.png"
    with Image.open(stored) as img:
        assert img.size == (100, 80)


@pytest.mark.parametrize(
    ("data", "kind"),
    [
        (b"definitely not an image", "not-an-image"),
        (png(300, 300)[:200], "truncated"),
        (bomb_png(), "decompression-bomb"),
        (b"GIF89a" + b"\x00" * 50, "bad-format"),
        (b"", "not-an-image"),
    ],
    ids=["text", "truncated", "bomb", "gif", "empty"],
)
def test_bad_subject_uploads_are_422_and_leave_nothing(
    api: Api, keys: Keys, settings: Settings, data: bytes, kind: str
) -> None:
    body = problem_of(_upload(api, keys.user, data), 422)
    assert body["kind"] == kind
    assert api("GET", "/projects", key=keys.user).json()["items"] == []
    assert api("GET", "/uploads", key=keys.user).json()["items"] == []
    root = settings.effective_uploads_dir
    assert not root.exists() or not any(p.is_file() for p in root.rglob("*"))


def test_pixel_cap_and_upload_size_limits(settings: Settings, engine: Engine, keys: Keys) -> None:
    tight = settings.model_copy(update={"image_max_pixels": 10_000, "upload_max_bytes": 4_000})
    with TestClient(create_app(tight, engine)) as client:
        api = Api(client)
        assert problem_of(_upload(api, keys.user, png(200, 200)), 422)["kind"] == "too-many-pixels"
        noisy = io.BytesIO()
        Image.effect_noise((90, 90), 100).save(noisy, "PNG")  # incompressible: > 4000 bytes
        body = problem_of(_upload(api, keys.user, noisy.getvalue()), 422)
        assert body["kind"] == "upload-too-large"
        assert _upload(api, keys.user, png(50, 50)).status_code == 201


def test_bad_fields_and_media_types(api: Api, keys: Keys) -> None:
    cases = [
        {"name": ""},
        {"name": "x" * 201},
        {"name": "ok", "subjectImageUrl": "file:///etc/passwd"},
        {"name": "ok", "subjectImageUrl": "/uploads/../../etc/passwd"},
        {"name": "ok", "unknownField": 1},
        {},
    ]
    for payload in cases:
        problem_of(api("POST", "/projects", key=keys.user, json=payload), 422)
    r = api(
        "POST",
        "/projects",
        key=keys.user,
        content=b"name=x",
        headers={"Content-Type": "text/plain"},
    )
    assert problem_of(r, 422)["kind"] == "unsupported-media-type"
    both = api(
        "POST",
        "/projects",
        key=keys.user,
        data={"name": "two", "subjectImageUrl": "https://cdn.example.com/a.png"},
        files={"subject": ("a.png", png(), "image/png")},
    )
    assert problem_of(both, 422)["kind"] == "two-subjects"


def test_owner_only_and_pagination(api: Api, keys: Keys) -> None:
    ids = [
        api("POST", "/projects", key=keys.user, json={"name": f"p{i}"}).json()["id"]
        for i in range(5)
    ]
    seen: list[int] = []
    cursor = None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api("GET", "/projects", key=keys.user, params=params).json()
        seen += [p["id"] for p in page["items"]]
        cursor = page["nextCursor"]
        if cursor is None:
            break
    assert seen == sorted(ids, reverse=True)
    assert api("GET", "/projects", key=keys.other).json()["items"] == []
    # Someone else's project does not exist for you, even for an admin.
    for key in (keys.other, keys.admin):
        problem_of(api("GET", f"/projects/{ids[0]}", key=key), 404)
        problem_of(api("PATCH", f"/projects/{ids[0]}", key=key, json={"name": "mine"}), 404)
        problem_of(api("DELETE", f"/projects/{ids[0]}", key=key), 404)
    problem_of(api("GET", "/projects", key=keys.user, params={"cursor": "garbage!"}), 422)


def test_update_archive_and_delete(api: Api, keys: Keys, settings: Settings) -> None:
    created = _upload(api, keys.user, png()).json()
    pid, first = created["id"], created["subjectUploadId"]
    r = api("PATCH", f"/projects/{pid}", key=keys.user, json={"name": "Renamed"})
    assert r.json()["name"] == "Renamed"
    assert r.json()["subjectUploadId"] == first
    r = api(
        "PATCH",
        f"/projects/{pid}",
        key=keys.user,
        files={"subject": ("b.png", png(30, 30), "image/png")},
    )
    assert r.status_code == 200, r.text
    second = r.json()["subjectUploadId"]
    # The replaced subject was used by nothing else: its row and file are gone.
    assert second != first
    problem_of(api("GET", f"/uploads/{first}", key=keys.user), 404)
    assert api("POST", f"/projects/{pid}/archive", key=keys.user).json()["status"] == "archived"
    listed = api("GET", "/projects", key=keys.user, params={"status": "archived"}).json()
    assert [p["id"] for p in listed["items"]] == [pid]
    assert api("DELETE", f"/projects/{pid}", key=keys.user).status_code == 204
    problem_of(api("GET", f"/projects/{pid}", key=keys.user), 404)
    problem_of(api("GET", f"/uploads/{second}", key=keys.user), 404)
    assert not any(p.is_file() for p in settings.effective_uploads_dir.rglob("*"))


def test_archive_and_delete_refused_while_a_generation_is_active(
    api: Api, keys: Keys, library: None, engine: Engine, settings: Settings
) -> None:
    pid = api("POST", "/projects", key=keys.user, json={"name": "busy"}).json()["id"]
    gen = api("POST", "/generations", key=keys.user, json={"projectId": pid, "poseIds": [1]})
    assert gen.status_code == 202, gen.text
    for method, path in (("POST", f"/projects/{pid}/archive"), ("DELETE", f"/projects/{pid}")):
        assert problem_of(api(method, path, key=keys.user), 409)["kind"] == "project-busy"
    claim_one(engine, settings)  # processing is active too
    problem_of(api("DELETE", f"/projects/{pid}", key=keys.user), 409)
    gid = gen.json()["id"]
    api("POST", f"/generations/{gid}/cancel", key=keys.user)
    assert api("GET", f"/generations/{gid}", key=keys.user).json()["cancelRequested"] is True
