"""Headers every response carries, and validators on per-user images, on both engines.

- ``X-Content-Type-Options: nosniff`` on API JSON, problems (404, 405, 413, 422 from the input
  guard), the dashboard's pages, static files, images and the probes.
- Result images (API and dashboard): ``Cache-Control: private``, an ``ETag``, and ``304`` for a
  matching ``If-None-Match`` (after the ownership check: another user still gets 404).
- ``/docs`` (Swagger UI, which loads its assets from a CDN) only with ``POSEGEN_API_DOCS``.
"""

from __future__ import annotations

import re

from api_helpers import Api, Keys, claim_one, write_pose
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from posegen import queue
from posegen.api.app import create_app
from posegen.config import Settings


def _sign_in(client: TestClient, api_key: str) -> None:
    form = client.get("/ui/sign-in")
    token = re.search(r'name="csrf_token" value="([^"]+)"', form.text)
    assert token is not None
    done = client.post(
        "/ui/sign-in",
        data={"csrf_token": token.group(1), "api_key": api_key, "next": ""},
        follow_redirects=False,
    )
    assert done.status_code == 303


def _finished_generation(api: Api, keys: Keys, engine: Engine, settings: Settings) -> int:
    project = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
    made = api("POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [1]})
    job = claim_one(engine, settings)
    write_pose(engine, settings, job, 1, 0)
    queue.finish(engine, job.id, job.lease_token)
    return int(made.json()["id"])


def test_nosniff_on_every_kind_of_response(
    api: Api, keys: Keys, engine: Engine, settings: Settings, library: None, client: TestClient
) -> None:
    gen = _finished_generation(api, keys, engine, settings)
    result = api("GET", f"/generations/{gen}/results", key=keys.user).json()[0]["id"]
    responses = {
        "json": api("GET", "/projects", key=keys.user),
        "problem-401": api("GET", "/projects"),
        "problem-404": api("GET", "/projects/999", key=keys.user),
        "problem-405": api("PUT", "/projects", key=keys.user),
        "problem-413": api(
            "POST", "/projects", key=keys.user, content=b"x" * (settings.max_body_bytes + 1)
        ),
        "guard-422": api("GET", "/projects?q=%00", key=keys.user),
        "image": api("GET", f"/generations/{gen}/results/{result}/image", key=keys.user),
        "probe": api("GET", "/healthz"),
        "openapi": api("GET", "/openapi.json"),
        "page": client.get("/ui/sign-in"),
        "redirect": client.get("/", follow_redirects=False),
        "static": client.get("/ui/static/css/posegen.css"),
        "favicon": client.get("/favicon.ico"),
        "page-404": client.get("/ui/no-such-page"),
    }
    for name, response in responses.items():
        assert response.status_code < 500, (name, response.status_code)
        assert response.headers.get("x-content-type-options") == "nosniff", name
    assert responses["static"].status_code == 200


def test_result_images_have_an_etag_and_answer_304(
    api: Api, keys: Keys, engine: Engine, settings: Settings, library: None, client: TestClient
) -> None:
    gen = _finished_generation(api, keys, engine, settings)
    result = api("GET", f"/generations/{gen}/results", key=keys.user).json()[0]["id"]
    url = f"/generations/{gen}/results/{result}/thumbnail"
    first = api("GET", url, key=keys.user)
    assert first.status_code == 200 and first.content
    etag = first.headers["etag"]
    assert first.headers["cache-control"].startswith("private")
    again = api("GET", url, key=keys.user, headers={"If-None-Match": etag})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["etag"] == etag
    assert api("GET", url, key=keys.user, headers={"If-None-Match": '"other"'}).status_code == 200
    assert (
        api("GET", url, key=keys.user, headers={"If-None-Match": f'"x", W/{etag}'}).status_code
        == 304
    )
    # The validator never skips the ownership check.
    assert api("GET", url, key=keys.other, headers={"If-None-Match": etag}).status_code == 404

    _sign_in(client, keys.user)
    page_url = f"/ui/generations/{gen}/results/{result}/image"
    shown = client.get(page_url)
    assert shown.status_code == 200 and shown.headers["cache-control"].startswith("private")
    cached = client.get(page_url, headers={"If-None-Match": shown.headers["etag"]})
    assert cached.status_code == 304 and cached.content == b""


def test_docs_only_when_enabled(settings: Settings, engine: Engine) -> None:
    with TestClient(create_app(settings, engine)) as off:
        assert off.get("/docs").status_code == 404
        assert off.get("/openapi.json").status_code == 200
    enabled = settings.model_copy(update={"api_docs": True})
    with TestClient(create_app(enabled, engine)) as on:
        page = on.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
