"""Exports on the dashboard (over HTTP, no browser): formats on the new-generation form, each
result's export buttons, a ZIP per format, and the form that asks for more after the end."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, csrf_of, run_until_idle, signed_in_client

from posegen import exporting, projects
from posegen.config import Settings


def test_formats_on_the_form_buttons_per_result_zip_per_format_and_more_later(
    make_client: Callable[..., TestClient], people: People, engine: Engine, settings: Settings
) -> None:
    first, second = sorted(exporting.formats(settings))[:2]
    client = signed_in_client(make_client(), people.user.api_key)
    project = projects.create(engine, people.user.account.id, "shoot", None)
    page = client.get("/ui/generations/new")
    assert f'name="export_format" value="{first}"' in page.text
    submission = re.search(r'name="submission" value="([^"]+)"', page.text)
    assert submission
    made = client.post(
        "/ui/generations",
        data={
            "csrf_token": csrf_of(page.text),
            "submission": submission.group(1),
            "project_id": str(project.id),
            "mode": "library",
            "pose_id": ["1", "2"],
            "variations": "1",
            "export_format": [first],
        },
        follow_redirects=False,
    )
    assert made.status_code == 303
    gid = int(re.search(r"/ui/generations/(\d+)", made.headers["location"]).group(1))  # type: ignore[union-attr]
    run_until_idle(settings, engine)

    page = client.get(f"/ui/generations/{gid}")
    buttons = re.findall(rf'href="(/ui/generations/{gid}/results/\d+/exports/{first})"', page.text)
    assert len(buttons) == 2
    for url in buttons:
        got = client.get(url)
        assert got.status_code == 200 and got.headers["content-type"].startswith("image/")
    zip_url = f"/ui/generations/{gid}/archive?formats={first}"
    assert zip_url in page.text.replace("&amp;", "&")
    with zipfile.ZipFile(io.BytesIO(client.get(zip_url).content)) as z:
        assert len(z.namelist()) == 2 and all(n.startswith(f"{first}/") for n in z.namelist())
    assert client.get(f"/ui/generations/{gid}/archive?formats={second}").status_code == 404

    # More formats after the end: queued from the page, made by the workers, shown after.
    asked = client.post(
        f"/ui/generations/{gid}/exports",
        data={"csrf_token": csrf_of(page.text), "format": [first, second]},
        follow_redirects=False,
    )
    assert asked.status_code == 303 and asked.headers["location"].endswith("notice=exports")
    waiting = client.get(asked.headers["location"])
    assert "Exports queued" in waiting.text and 'data-live-tasks="' in waiting.text
    run_until_idle(settings, engine)
    page = client.get(f"/ui/generations/{gid}")
    assert 'data-live-tasks="' not in page.text
    assert len(re.findall(rf"/results/\d+/exports/{second}\"", page.text)) == 2
    again = client.post(
        f"/ui/generations/{gid}/exports",
        data={"csrf_token": csrf_of(page.text), "format": [second]},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith("notice=exports-none")

    # Someone else finds none of it.
    other = signed_in_client(make_client(), people.other.api_key)
    for url in (buttons[0], zip_url):
        assert other.get(url).status_code == 404
    refused = other.post(
        f"/ui/generations/{gid}/exports",
        data={"csrf_token": csrf_of(other.get("/ui/generations").text), "format": [second]},
    )
    assert refused.status_code == 404
