"""Uploads are owned: the upload API, attaching by id (projects, library maps), the refused path
form, deletion by reference, the same bytes from two users, and the per-user byte quota."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest
from api_helpers import Api, Keys, png, problem_of
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, update

from posegen import projects, uploads
from posegen.api.app import create_app
from posegen.config import Settings
from posegen.db.models import PoseLibrary
from posegen.exceptions import InvalidInput, UploadQuotaExceeded, UploadsBusy
from posegen.uploads import images as upload_images


def _post(api: Api, key: str, data: bytes, name: str = "a.png", ctype: str = "image/png") -> dict:
    r = api("POST", "/uploads", key=key, files={"file": (name, data, ctype)})
    assert r.status_code == 201, r.text
    return r.json()


def _files(settings: Settings) -> list[Path]:
    root = settings.effective_uploads_dir
    return sorted(p for p in root.rglob("*") if p.is_file()) if root.exists() else []


def jpeg(width: int, height: int, quality: int = 90) -> bytes:
    buf = io.BytesIO()
    Image.effect_noise((width, height), 60).convert("RGB").save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def test_upload_store_list_read_and_dedupe(api: Api, keys: Keys, settings: Settings) -> None:
    data = png(70, 40)
    up = _post(api, keys.user, data)
    assert (up["width"], up["height"], up["bytes"], up["contentType"]) == (
        70,
        40,
        len(data),
        "image/png",
    )
    # Named by owner and content, never by anything the client sent (the file name is ignored).
    sha = up["sha256"]
    assert _files(settings) == [
        settings.effective_uploads_dir / str(keys.user_id) / sha[:2] / f"{sha}.png"
    ]
    # The same bytes again are the same upload: one row, one file.
    assert _post(api, keys.user, data, name="../../evil.png")["id"] == up["id"]
    assert len(_files(settings)) == 1
    got = api("GET", up["contentUrl"], key=keys.user)
    assert got.status_code == 200 and got.content == data
    assert got.headers["content-type"] == "image/png"
    assert got.headers["cache-control"].startswith("private")
    assert got.headers["x-content-type-options"] == "nosniff"
    assert "sandbox" in got.headers["content-security-policy"]
    again = api("GET", up["contentUrl"], key=keys.user, headers={"If-None-Match": f'"{sha}"'})
    assert again.status_code == 304
    assert [u["id"] for u in api("GET", "/uploads", key=keys.user).json()["items"]] == [up["id"]]
    assert api("GET", "/uploads", key=keys.other).json()["items"] == []
    # Another user (an admin too) finds nothing, and deleting it changes nothing.
    for key in (keys.other, keys.admin):
        for path in (f"/uploads/{up['id']}", up["contentUrl"]):
            assert problem_of(api("GET", path, key=key), 404)["kind"] == "upload-not-found"
        problem_of(api("DELETE", f"/uploads/{up['id']}", key=key), 404)
    assert len(_files(settings)) == 1
    assert api("DELETE", f"/uploads/{up['id']}", key=keys.user).status_code == 204
    assert _files(settings) == []
    problem_of(api("GET", f"/uploads/{up['id']}", key=keys.user), 404)


def test_a_jpeg_stays_a_jpeg(api: Api, keys: Keys) -> None:
    data = jpeg(1200, 900)
    up = _post(api, keys.user, data, "photo.jpg", "image/jpeg")
    assert up["contentType"] == "image/jpeg" and up["bytes"] == len(data)
    assert (up["width"], up["height"]) == (1200, 900)
    assert api("GET", up["contentUrl"], key=keys.user).content == data
    # A JPEG is decoded at reduced scale, but a cut-off one is still refused.
    body = problem_of(
        api("POST", "/uploads", key=keys.user, files={"file": ("t.jpg", data[: len(data) // 2])}),
        422,
    )
    assert body["kind"] == "truncated"


def test_bad_upload_requests(api: Api, keys: Keys, settings: Settings) -> None:
    r = api("POST", "/uploads", key=keys.user, json={"file": "x"})
    assert problem_of(r, 422)["kind"] == "unsupported-media-type"
    r = api("POST", "/uploads", key=keys.user, data={"other": "x"}, files={"nope": ("a", b"x")})
    assert problem_of(r, 422)["kind"] == "missing-file"
    r = api("POST", "/uploads", key=keys.user, files={"file": ("a.gif", b"GIF89a" + b"\0" * 40)})
    assert problem_of(r, 422)["kind"] == "bad-format"
    assert _files(settings) == []


def test_attaching_someone_elses_upload_is_refused_and_touches_nothing(
    api: Api, keys: Keys, settings: Settings
) -> None:
    victim = _post(api, keys.other, png(33, 33, (1, 2, 3)))
    before = _files(settings)
    for key in (keys.user, keys.admin):
        r = api("POST", "/projects", key=key, json={"name": "x", "subjectUploadId": victim["id"]})
        assert problem_of(r, 422)["kind"] == "unknown-upload"
        # An id that does not exist reads exactly the same.
        r = api("POST", "/projects", key=key, json={"name": "x", "subjectUploadId": 987654})
        assert problem_of(r, 422)["kind"] == "unknown-upload"
    pid = api("POST", "/projects", key=keys.user, json={"name": "mine"}).json()["id"]
    r = api("PATCH", f"/projects/{pid}", key=keys.user, json={"subjectUploadId": victim["id"]})
    assert problem_of(r, 422)["kind"] == "unknown-upload"
    # Multipart form field, too.
    form = {"name": (None, "f"), "subjectUploadId": (None, str(victim["id"]))}
    r = api("POST", "/projects", key=keys.user, files=form)
    assert problem_of(r, 422)["kind"] == "unknown-upload"
    # Library maps: even an admin may only attach their own uploads.
    pose = {"name": "stolen", "category": 1, "mapUploadId": victim["id"]}
    assert problem_of(api("POST", "/library/poses", key=keys.admin, json=pose), 422)["kind"] == (
        "unknown-upload"
    )
    problem_of(api("POST", "/library/poses", key=keys.user, json=pose), 403)
    assert api("DELETE", f"/projects/{pid}", key=keys.user).status_code == 204
    assert _files(settings) == before
    assert api("GET", victim["contentUrl"], key=keys.other).status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/uploads/subjects/project-1.png",
        "/uploads/maps/pose-1.png",
        "/uploads/2/ab/abcdef.png",
        "uploads/x.png",
        "../uploads/x.png",
    ],
)
def test_the_uploads_path_form_is_refused_everywhere(
    api: Api, keys: Keys, library: None, path: str
) -> None:
    r = api("POST", "/projects", key=keys.user, json={"name": "p", "subjectImageUrl": path})
    assert problem_of(r, 422)["kind"] == "upload-path-not-accepted"
    pid = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
    r = api("PATCH", f"/projects/{pid}", key=keys.user, json={"subjectImageUrl": path})
    assert problem_of(r, 422)["kind"] == "upload-path-not-accepted"
    r = api("PATCH", "/library/poses/1", key=keys.admin, json={"controlnetMapUrl": path})
    assert problem_of(r, 422)["kind"] == "upload-path-not-accepted"


def test_delete_is_refused_while_in_use_and_the_last_reference_removes_the_file(
    api: Api, keys: Keys, settings: Settings, library: None
) -> None:
    up = _post(api, keys.user, png(50, 50))
    one = api("POST", "/projects", key=keys.user, json={"name": "1", "subjectUploadId": up["id"]})
    two = api("POST", "/projects", key=keys.user, json={"name": "2", "subjectUploadId": up["id"]})
    assert one.json()["subjectUploadId"] == two.json()["subjectUploadId"] == up["id"]
    body = problem_of(api("DELETE", f"/uploads/{up['id']}", key=keys.user), 409)
    assert body["kind"] == "upload-in-use"
    assert api("DELETE", f"/projects/{one.json()['id']}", key=keys.user).status_code == 204
    assert len(_files(settings)) == 1  # project 2 still uses it
    # Pointing the project at a URL detaches the upload: nothing refers to it, so it goes.
    url = {"subjectImageUrl": "https://cdn.example.com/me.png"}
    r = api("PATCH", f"/projects/{two.json()['id']}", key=keys.user, json=url)
    assert (
        r.json()["subjectUploadId"] is None
        and r.json()["subjectImageUrl"] == url["subjectImageUrl"]
    )
    assert _files(settings) == []
    problem_of(api("GET", f"/uploads/{up['id']}", key=keys.user), 404)

    # A library map: the admin's upload, public as a map, removed with its last pose.
    m = _post(api, keys.admin, png(128, 128, (0, 0, 0)))
    r = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        json={"name": "Mapped", "category": 1, "mapUploadId": m["id"]},
    )
    assert r.status_code == 201, r.text
    pose = r.json()
    assert pose["mapUploadId"] == m["id"] and pose["keypoints"] is None
    got = api("GET", pose["mapUrl"], key=keys.user)
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    problem_of(api("GET", m["contentUrl"], key=keys.user), 404)  # the upload itself stays private
    problem_of(api("DELETE", f"/uploads/{m['id']}", key=keys.admin), 409)
    assert api("DELETE", f"/library/poses/{pose['id']}", key=keys.admin).status_code == 204
    assert _files(settings) == []


def test_same_bytes_from_two_users_are_two_uploads_and_two_files(
    api: Api, keys: Keys, settings: Settings
) -> None:
    data = png(44, 44)
    mine, theirs = _post(api, keys.user, data), _post(api, keys.other, data)
    assert mine["id"] != theirs["id"] and mine["sha256"] == theirs["sha256"]
    assert len(_files(settings)) == 2
    assert api("DELETE", f"/uploads/{mine['id']}", key=keys.user).status_code == 204
    assert api("GET", theirs["contentUrl"], key=keys.other).content == data


def test_the_per_user_byte_quota(settings: Settings, engine: Engine, keys: Keys) -> None:
    first, second = png(60, 60, (1, 1, 1)), png(61, 61, (2, 2, 2))
    tight = settings.model_copy(update={"user_upload_quota_bytes": len(first) + len(second) - 1})
    with TestClient(create_app(tight, engine)) as client:
        api = Api(client)
        up = _post(api, keys.user, first)
        body = problem_of(
            api("POST", "/uploads", key=keys.user, files={"file": ("b", second)}), 413
        )
        assert body["kind"] == "upload-quota-exceeded"
        # The same bytes again are not counted twice; other users have their own quota.
        assert _post(api, keys.user, first)["id"] == up["id"]
        _post(api, keys.other, second)
        r = api(
            "POST", "/projects", key=keys.user, data={"name": "p"}, files={"subject": ("b", second)}
        )
        assert problem_of(r, 413)["kind"] == "upload-quota-exceeded"
        assert api("DELETE", f"/uploads/{up['id']}", key=keys.user).status_code == 204
        _post(api, keys.user, second)


def test_quota_holds_under_40_concurrent_uploads(
    engine: Engine, settings: Settings, keys: Keys
) -> None:
    images = [png(40 + i, 40, (i, 0, 0)) for i in range(40)]
    # Room for about ten of them.
    quota = sum(sorted(len(i) for i in images)[:10])
    tight = settings.model_copy(update={"user_upload_quota_bytes": quota})
    barrier = threading.Barrier(len(images))
    outcomes: list[str] = []

    def one(data: bytes) -> None:
        barrier.wait()
        try:
            uploads.store(engine, tight, keys.user_id, data)
            outcomes.append("ok")
        except UploadQuotaExceeded:
            outcomes.append("quota")

    threads = [threading.Thread(target=one, args=(d,)) for d in images]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(outcomes) == 40 and "ok" in outcomes and "quota" in outcomes
    assert uploads.usage(engine, keys.user_id) <= quota
    stored = uploads.list_for(engine, keys.user_id, limit=200).items
    assert len(stored) == outcomes.count("ok") == len(_files(settings))


def test_40_concurrent_uploads_of_the_same_bytes_are_one_row(
    engine: Engine, settings: Settings, keys: Keys
) -> None:
    data = png(90, 90)
    barrier = threading.Barrier(40)
    ids: list[int] = []

    def one() -> None:
        barrier.wait()
        ids.append(uploads.store(engine, settings, keys.user_id, data).id)

    threads = [threading.Thread(target=one) for _ in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(ids) == 40 and len(set(ids)) == 1
    assert len(_files(settings)) == 1


def test_decodes_are_bounded_by_a_semaphore(
    settings: Settings, engine: Engine, keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_slot = settings.model_copy(update={"upload_decode_concurrency": 1})
    monkeypatch.setattr(upload_images, "DECODE_WAIT_SECONDS", 0.2)
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        with uploads.decode_slot(one_slot):
            held.set()
            release.wait(10)

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert held.wait(10)
        with pytest.raises(UploadsBusy):
            uploads.store(engine, one_slot, keys.user_id, png())
        with TestClient(create_app(one_slot, engine)) as client:
            r = Api(client)("POST", "/uploads", key=keys.user, files={"file": ("a", png())})
            assert problem_of(r, 503)["kind"] == "uploads-busy"
    finally:
        release.set()
        holder.join()
    assert uploads.store(engine, one_slot, keys.user_id, png()).width == 64


def test_release_racing_new_uploads_of_the_same_bytes_never_loses_a_file(
    engine: Engine, settings: Settings, keys: Keys
) -> None:
    """20 threads delete projects (releasing the shared upload) while 20 upload the same bytes
    and attach them to new projects: every row left has its file, every project its upload."""
    data = png(77, 77)
    first = uploads.store(engine, settings, keys.user_id, data)
    doomed = [
        projects.create(engine, keys.user_id, f"old {i}", None, first.id).id for i in range(20)
    ]
    barrier = threading.Barrier(40)
    errors: list[BaseException] = []
    attached: list[int] = []

    def delete(project_id: int) -> None:
        barrier.wait()
        try:
            view, _ = projects.remove(engine, project_id, keys.user_id)
            uploads.release(engine, settings, view.subject_upload_id)
        except BaseException as exc:
            errors.append(exc)

    def add(i: int) -> None:
        barrier.wait()
        try:
            up = uploads.store(engine, settings, keys.user_id, data)
            try:
                project = projects.create(engine, keys.user_id, f"new {i}", None, up.id)
                attached.append(project.id)
            except InvalidInput as exc:  # released between store and attach: refused cleanly
                assert exc.kind == "unknown-upload"
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=delete, args=(p,)) for p in doomed]
    threads += [threading.Thread(target=add, args=(i,)) for i in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    rows = uploads.list_for(engine, keys.user_id, limit=200).items
    for row in rows:
        assert (settings.effective_uploads_dir / row.relpath).is_file()
    for project_id in attached:
        upload_id = projects.get(engine, project_id, keys.user_id).subject_upload_id
        assert upload_id is not None and upload_id in {r.id for r in rows}
    assert len(_files(settings)) == len(rows) <= 1


def test_pose_maps_from_unreadable_or_foreign_uploads_say_nothing(
    api: Api, keys: Keys, engine: Engine, settings: Settings, library: None
) -> None:
    admin_map = _post(api, keys.admin, png(128, 128, (0, 0, 0)))
    pose = api(
        "POST",
        "/library/poses",
        key=keys.admin,
        json={"name": "Gone", "category": 1, "mapUploadId": admin_map["id"]},
    ).json()
    user_map = _post(api, keys.user, png(96, 96, (0, 0, 0)))
    # A row naming a plain user's upload, as only a bug or a hand edit could write it.
    with engine.begin() as conn:
        conn.execute(
            update(PoseLibrary).where(PoseLibrary.id == 1).values(map_upload_id=user_map["id"])
        )
        conn.execute(update(PoseLibrary).where(PoseLibrary.id == 1).values(keypoints=None))
    (
        settings.effective_uploads_dir / uploads.get(engine, admin_map["id"], keys.admin_id).relpath
    ).unlink()
    details = set()
    for pose_id, sha in ((pose["id"], admin_map["sha256"]), (1, user_map["sha256"])):
        for key in (keys.user, keys.admin):
            body = problem_of(api("GET", f"/library/poses/{pose_id}/map", key=key), 502)
            assert body["kind"] == "map-unavailable"
            assert sha not in body["detail"] and "/" not in body["detail"].split(":")[-1]
            details.add(body["detail"].replace(str(pose_id), "N"))
    assert len(details) == 1
