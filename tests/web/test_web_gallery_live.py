"""The generation page's gallery fills in as poses finish: the fragment it fetches on each pose
event, and (in Chromium) thumbnails appearing without a reload."""

from __future__ import annotations

from typing import Any

import pytest
from browser_harness import chromium, images_loaded, live_server, require_chromium
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, png_bytes, signed_in_client, submit_library

from posegen import queue
from posegen.config import Settings
from posegen.db.models import PoseStatus
from posegen.storage import make_storage


def _finish_one_pose(engine: Engine, settings: Settings, job: Any, pose_id: int) -> None:
    """What a worker does for one pose: store the image, record it through the queue (fenced)."""
    key = queue.variation_key(pose_id, 0)
    image, thumb, size = make_storage(settings).save_result(
        job.id, key, png_bytes((64, 64), "#a35")
    )
    queue.record_pose(
        engine,
        job.id,
        job.lease_token,
        queue.PoseResult(
            variation_key=key,
            pose_id=pose_id,
            variation_index=0,
            status=PoseStatus.COMPLETED,
            image_path=image,
            thumbnail_path=thumb,
            seed=1,
            duration_ms=5,
            error_kind=None,
            error_message=None,
            bytes=size,
        ),
    )


def test_gallery_fragment_shows_each_finished_pose(
    client: TestClient, engine: Engine, settings: Settings, people: People
) -> None:
    gen_id = submit_library(engine, settings, people.user.account.id, [1, 2])
    signed_in_client(client, people.user.api_key)
    page = client.get(f"/ui/generations/{gen_id}")
    assert f'data-gallery-url="/ui/generations/{gen_id}/gallery"' in page.text
    empty = client.get(f"/ui/generations/{gen_id}/gallery")
    assert empty.status_code == 200 and 'class="thumb"' not in empty.text
    assert "<html" not in empty.text  # a fragment, not a page

    [job] = queue.claim(engine, settings, "test-worker", 1)
    _finish_one_pose(engine, settings, job, 1)
    one = client.get(f"/ui/generations/{gen_id}/gallery")
    assert one.text.count('class="thumb"') == 1
    _finish_one_pose(engine, settings, job, 2)
    assert client.get(f"/ui/generations/{gen_id}/gallery").text.count('class="thumb"') == 2


def test_gallery_fragment_is_private(
    client: TestClient, engine: Engine, settings: Settings, people: People
) -> None:
    gen_id = submit_library(engine, settings, people.user.account.id, [1])
    signed_in_client(client, people.other.api_key)
    assert client.get(f"/ui/generations/{gen_id}/gallery").status_code == 404


@pytest.mark.browser
def test_thumbnails_appear_without_a_reload(
    app: FastAPI, engine: Engine, settings: Settings, people: People
) -> None:
    require_chromium()
    gen_id = submit_library(engine, settings, people.user.account.id, [1, 2])
    with live_server(app) as base, chromium() as browser:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(f"{base}/ui/sign-in")
        page.get_by_label("API key").fill(people.user.api_key)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/sign-in" not in url)
        page.goto(f"{base}/ui/generations/{gen_id}")
        assert page.locator("#results img.thumb").count() == 0
        # A reload would drop this marker: it proves the thumbnails came in place.
        page.evaluate("() => { window.sameDocument = true; }")

        [job] = queue.claim(engine, settings, "test-worker", 1)
        _finish_one_pose(engine, settings, job, 1)
        page.wait_for_function(
            "() => document.querySelectorAll('#results img.thumb').length === 1", timeout=20_000
        )
        _finish_one_pose(engine, settings, job, 2)
        page.wait_for_function(
            "() => document.querySelectorAll('#results img.thumb').length === 2", timeout=20_000
        )
        assert page.evaluate("() => window.sameDocument === true")
        assert all(w > 0 for w in images_loaded(page, "#results img.thumb"))
