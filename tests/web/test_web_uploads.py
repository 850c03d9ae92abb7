"""The dashboard's project form stores the subject as the signed-in user's own upload; it takes
no upload id or path from the form, and the upload quota answers with the form, not a trace."""

from __future__ import annotations

import httpx
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, csrf_of, png_bytes, signed_in_client

from posegen import projects, uploads
from posegen.api.app import create_app
from posegen.config import Settings


def _create(client: TestClient, **extra: str) -> httpx.Response:
    csrf = csrf_of(client.get("/ui/generations/new").text)
    return client.post(
        "/ui/projects",
        data={"csrf_token": csrf, "name": "Avatar", **extra},
        files={"subject": ("me.png", png_bytes(), "image/png")},
        follow_redirects=False,
    )


def test_dashboard_subject_is_the_users_upload_and_names_nothing_else(
    client: TestClient, people: People, engine: Engine, settings: Settings
) -> None:
    theirs = uploads.store(engine, settings, people.other.account.id, png_bytes())
    signed_in_client(client, people.user.api_key)
    # Fields the form does not have are ignored: no way to name another upload or a path.
    created = _create(
        client,
        subject_upload_id=str(theirs.id),
        subjectUploadId=str(theirs.id),
        subject_image_url="/uploads/subjects/project-1.png",
    )
    assert created.status_code == 303
    location = created.headers["location"]
    project = projects.get(engine, int(location.rsplit("=", 1)[1]), people.user.account.id)
    assert project.subject_image_url is None
    mine = uploads.get(engine, project.subject_upload_id, people.user.account.id)
    assert mine.id != theirs.id and mine.user_id == people.user.account.id
    assert (settings.effective_uploads_dir / theirs.relpath).is_file()


def test_dashboard_upload_over_the_quota_redraws_the_form(
    people: People, engine: Engine, settings: Settings
) -> None:
    tight = settings.model_copy(update={"user_upload_quota_bytes": 10})
    with TestClient(create_app(tight, engine), base_url="http://testserver") as client:
        signed_in_client(client, people.user.api_key)
        page = _create(client)
    assert page.status_code == 413
    assert "quota" in page.text and "Traceback" not in page.text
    assert uploads.list_for(engine, people.user.account.id).items == []
