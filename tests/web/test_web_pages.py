"""The dashboard's pages over HTTP (no browser): roles, the form, the gallery, ZIP, SSE, figures."""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, csrf_of, png_bytes, run_until_idle, signed_in_client, submit_library

from posegen import generations_read, projects, queue, uploads
from posegen.config import Settings
from posegen.db.models import GenerationStatus


def _form_token(client: TestClient) -> tuple[str, str]:
    page = client.get("/ui/generations/new")
    assert page.status_code == 200
    submission = re.search(r'name="submission" value="([^"]+)"', page.text)
    assert submission
    return csrf_of(page.text), submission.group(1)


def test_operator_pages_are_for_admins_only(
    make_client: Callable[..., TestClient], people: People
) -> None:
    user = signed_in_client(make_client(), people.user.api_key)
    admin = signed_in_client(make_client(), people.admin.api_key)
    for path in ("/ui/overview", "/ui/overview.json", "/ui/top-users"):
        refused = user.get(path)
        assert refused.status_code == 403, path
        assert "operators" in refused.text
        assert admin.get(path).status_code == 200, path
    assert user.get("/ui/", follow_redirects=False).headers["location"] == "/ui/generations"
    assert admin.get("/ui/", follow_redirects=False).headers["location"] == "/ui/overview"
    assert 'href="/ui/overview"' not in user.get("/ui/generations").text


def test_another_users_generation_is_not_found_anywhere(
    make_client: Callable[..., TestClient], people: People, engine: Engine, settings: Settings
) -> None:
    gen_id = submit_library(engine, settings, people.user.account.id, [1, 2])
    run_until_idle(settings, engine)
    results = generations_read.results(engine, gen_id)
    assert len(results) == 2
    rid = results[0].id
    paths = (
        f"/ui/generations/{gen_id}",
        f"/ui/generations/{gen_id}/events",
        f"/ui/generations/{gen_id}/archive",
        f"/ui/generations/{gen_id}/results/{rid}/thumbnail",
        f"/ui/generations/{gen_id}/results/{rid}/image",
    )
    owner = signed_in_client(make_client(), people.user.api_key)
    other = signed_in_client(make_client(), people.other.api_key)
    admin = signed_in_client(make_client(), people.admin.api_key)
    for path in paths:
        assert owner.get(path).status_code == 200, path
        assert admin.get(path).status_code == 200, path
        assert other.get(path).status_code == 404, path
    assert f"#{gen_id}" not in other.get("/ui/generations").text
    assert f"#{gen_id}" in owner.get("/ui/generations").text
    token = csrf_of(other.get("/ui/generations").text)
    cancel = other.post(f"/ui/generations/{gen_id}/cancel", data={"csrf_token": token})
    assert cancel.status_code == 404


def test_form_creates_a_project_and_a_generation_then_the_gallery_and_zip(
    client: TestClient, people: People, engine: Engine, settings: Settings
) -> None:
    signed_in_client(client, people.user.api_key)
    csrf, _ = _form_token(client)
    created = client.post(
        "/ui/projects",
        data={"csrf_token": csrf, "name": "Avatar"},
        files={"subject": ("me.png", png_bytes(), "image/png")},
        follow_redirects=False,
    )
    assert created.status_code == 303
    project_id = int(created.headers["location"].rsplit("=", 1)[1])
    project = projects.get(engine, project_id, people.user.account.id)
    assert project.subject_image_url is None
    assert uploads.get(engine, project.subject_upload_id, people.user.account.id).width > 0

    csrf, submission = _form_token(client)
    form = {
        "csrf_token": csrf,
        "submission": submission,
        "project_id": str(project_id),
        "mode": "library",
        "pose_id": ["1", "3"],
        "variations": "2",
    }
    first = client.post("/ui/generations", data=form, follow_redirects=False)
    assert first.status_code == 303
    gen_id = int(re.search(r"/ui/generations/(\d+)", first.headers["location"]).group(1))  # type: ignore[union-attr]
    again = client.post("/ui/generations", data=form, follow_redirects=False)
    assert again.headers["location"] == first.headers["location"]  # a double submit: one job

    run_until_idle(settings, engine)
    page = client.get(f"/ui/generations/{gen_id}")
    assert page.status_code == 200
    thumbs = re.findall(r'src="(/ui/generations/\d+/results/\d+/thumbnail)"', page.text)
    maps = re.findall(r'src="(/ui/library/poses/\d+/map\.png\?size=256)"', page.text)
    assert len(thumbs) == 4 and len(maps) == 4
    assert all(alt for alt in re.findall(r'<img[^>]*alt="([^"]*)"', page.text))
    # posemap made these: the gallery says they are previews, and how to get real images
    assert len(re.findall(r'class="badge badge-preview"[^>]*>preview<', page.text)) == 4 + 1
    assert 'id="preview-note"' in page.text and "POSEGEN_BACKEND=diffusers" in page.text
    listing = client.get("/ui/generations")
    assert listing.status_code == 200 and 'class="badge badge-preview"' in listing.text
    for url in thumbs + maps:
        r = client.get(url)
        assert r.status_code == 200 and r.headers["content-type"].startswith("image/")
        assert len(r.content) > 100

    archive = client.get(f"/ui/generations/{gen_id}/archive")
    assert archive.status_code == 200
    assert archive.headers["content-type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(archive.content)) as z:
        assert z.testzip() is None
        assert sorted(z.namelist()) == ["p1-v0.png", "p1-v1.png", "p3-v0.png", "p3-v1.png"]
        assert z.read("p1-v0.png").startswith(b"\x89PNG")


def test_form_errors_are_shown_on_the_form(
    client: TestClient, people: People, engine: Engine, settings: Settings
) -> None:
    signed_in_client(client, people.user.api_key)
    mine = projects.create(engine, people.user.account.id, "mine", None)
    theirs = projects.create(engine, people.other.account.id, "theirs", None)
    cases = [
        ({"project_id": str(mine.id), "mode": "library"}, "pick at least one pose"),
        ({"project_id": str(mine.id), "pose_id": "1", "variations": "11"}, "between 1 and 10"),
        ({"project_id": str(theirs.id), "pose_id": "1"}, "pick one of your projects"),
        ({"project_id": str(mine.id), "pose_id": "99999"}, "unknown poses: 99999"),
        ({"project_id": str(mine.id), "mode": "text", "prompt": ""}, "describe the pose"),
        ({"project_id": str(mine.id), "pose_id": "x"}, "pose must be a whole number"),
    ]
    for fields, message in cases:
        csrf, submission = _form_token(client)
        r = client.post(
            "/ui/generations", data={"csrf_token": csrf, "submission": submission, **fields}
        )
        assert r.status_code == 422, (fields, r.status_code)
        assert message in r.text, (fields, re.findall(r'role="alert"[^>]*>([^<]*)', r.text))
    bad_upload = client.post(
        "/ui/projects",
        data={"csrf_token": _form_token(client)[0], "name": "x"},
        files={"subject": ("x.png", b"not an image at all", "image/png")},
    )
    assert bad_upload.status_code == 422 and "Project not created" in bad_upload.text
    assert generations_read.list_generations(engine, user_id=None).items == []


def test_events_stream_replays_and_resumes(
    client: TestClient, people: People, engine: Engine, settings: Settings
) -> None:
    gen_id = submit_library(engine, settings, people.user.account.id, [1, 2, 3])
    run_until_idle(settings, engine)
    signed_in_client(client, people.user.api_key)
    r = client.get(f"/ui/generations/{gen_id}/events")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[5:]) for line in r.text.splitlines() if line.startswith("data:")]
    kinds = [e["kind"] for e in events]
    assert kinds[0] == "queued" and kinds[-1] == "completed" and kinds.count("pose") == 3
    assert events[-1]["data"]["completed"] == 3 and events[-1]["data"]["total"] == 3
    middle = events[2]["id"]
    rest = client.get(f"/ui/generations/{gen_id}/events", headers={"Last-Event-ID": str(middle)})
    ids = [int(x[3:]) for x in rest.text.splitlines() if x.startswith("id:")]
    assert ids == [e["id"] for e in events if e["id"] > middle]
    done = client.get(
        f"/ui/generations/{gen_id}/events", headers={"Last-Event-ID": str(events[-1]["id"])}
    )
    assert done.status_code == 204  # EventSource stops reconnecting


def test_overview_and_top_users_show_the_figures(
    make_client: Callable[..., TestClient], people: People, engine: Engine, settings: Settings
) -> None:
    submit_library(engine, settings, people.user.account.id, [1, 2])
    gen_b = submit_library(engine, settings, people.other.account.id, [1])
    admin = signed_in_client(make_client(), people.admin.api_key)
    token = csrf_of(admin.get(f"/ui/generations/{gen_b}").text)
    assert (
        admin.post(f"/ui/generations/{gen_b}/cancel", data={"csrf_token": token}).status_code == 200
    )
    run_until_idle(settings, engine)
    # The map previews go through this process's map cache: one miss, then a hit.
    assert admin.get("/ui/library/poses/1/map.png?size=128").status_code == 200
    assert admin.get("/ui/library/poses/1/map.png?size=128").status_code == 200
    data = admin.get("/ui/overview.json?period=1h").json()
    assert data["queue"]["pending"] == 0
    assert data["perMinute"]["total"] == 2
    assert sum(data["perMinute"]["series"]["completed"]) == 1
    assert sum(data["perMinute"]["series"]["cancelled"]) == 1
    assert data["successRate"] == 1.0 and data["finished"] == 1
    assert data["mapCache"]["hits"] >= 1 and data["mapCache"]["lookups"] >= 2
    assert data["stuck"] == 0
    assert data["workers"]["live"] == 0  # the burst worker has stopped, and says so
    assert [w["state"] for w in data["workerList"]] == ["stopped"]
    page = admin.get("/ui/overview?period=1h")
    assert page.status_code == 200 and 'id="per-minute-chart"' in page.text
    assert "/ui/static/vendor/chart.umd.min.js" in page.text
    top = admin.get("/ui/top-users?limit=5")
    assert top.status_code == 200
    rows = re.findall(r"<tr><td class=\"num\">(\d+)</td><td>([^<]+)</td>", top.text)
    assert [name for _, name in rows] == ["Uma User", "Olaf Other"]
    assert admin.get("/ui/top-users?limit=0").status_code == 422
    assert admin.get("/ui/overview?period=1y").status_code == 422


def test_static_assets_ship_in_the_package(client: TestClient) -> None:
    chart = client.get("/ui/static/vendor/chart.umd.min.js")
    assert chart.status_code == 200 and b"Chart.js v4" in chart.content[:200]
    assert client.get("/ui/static/css/posegen.css").status_code == 200
    assert client.get("/ui/static/js/progress.js").status_code == 200
    assert client.get("/ui/static/vendor/chart.js-LICENSE.md").status_code == 200


def test_library_page_filters_and_hides_private_poses(
    make_client: Callable[..., TestClient], people: People, engine: Engine
) -> None:
    from posegen import catalog

    pose = catalog.get_pose(engine, 1, include_private=True)
    catalog.update_pose(engine, pose.id, is_public=False)
    user = signed_in_client(make_client(), people.user.api_key)
    admin = signed_in_client(make_client(), people.admin.api_key)
    # Searched by name: the library has more poses than one page shows.
    named = {"q": pose.name}
    assert f"/ui/library/poses/{pose.id}/map.png" not in user.get("/ui/library", params=named).text
    assert f"/ui/library/poses/{pose.id}/map.png" in admin.get("/ui/library", params=named).text
    assert user.get(f"/ui/library/poses/{pose.id}/map.png").status_code == 404
    found = user.get("/ui/library", params={"q": "zzz-no-such-pose"})
    assert found.status_code == 200 and "No pose matches" in found.text


def test_cancelling_a_running_generation_asks_its_worker_to_stop(
    client: TestClient, people: People, engine: Engine, settings: Settings
) -> None:
    gen_id = submit_library(engine, settings, people.user.account.id, [1, 2])
    (job,) = queue.claim(engine, settings, "test-claimer", 1)  # now it is processing
    signed_in_client(client, people.user.api_key)
    page = client.get(f"/ui/generations/{gen_id}")
    assert "data-live-generation" in page.text and ">Cancel<" in page.text
    r = client.post(f"/ui/generations/{gen_id}/cancel", data={"csrf_token": csrf_of(page.text)})
    assert r.status_code == 200 and "worker stops before its next pose" in r.text
    assert "Cancelling…" in r.text
    view = generations_read.get_visible(engine, gen_id, None)
    assert view.status == GenerationStatus.PROCESSING and view.cancel_requested
    assert queue.heartbeat(engine, settings, job.id, job.lease_token)  # the worker learns it
