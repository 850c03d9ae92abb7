"""Dashboard pages of the community (both engines): "My poses" from keypoints JSON text and a map
image, delete, never shown to others; forms refuse a missing CSRF token; the review queue is for
admins. Then the browser flow in Chromium: A asks for a pose, B votes, an admin completes it with
a library pose, A reads the status event."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from browser_harness import ConsoleErrors, chromium, live_server, require_chromium
from fastapi import FastAPI
from fastapi.testclient import TestClient
from web_helpers import People, csrf_of, png_bytes, signed_in_client

POINTS = [[0.5, 0.1 + i * 0.04] for i in range(18)]


def test_my_poses_page(client: TestClient, make_client: Any, people: People) -> None:
    user = signed_in_client(client, people.user.api_key)
    page = user.get("/ui/me/poses")
    assert page.status_code == 200 and "No poses of your own yet" in page.text
    token = csrf_of(page.text)
    refused = user.post("/ui/me/poses", data={"name": "x", "keypoints": json.dumps(POINTS)})
    assert refused.status_code == 403
    bad = user.post("/ui/me/poses", data={"csrf_token": token, "name": "x", "keypoints": "[1,"})
    assert bad.status_code == 422 and "not valid JSON" in bad.text
    made = user.post(
        "/ui/me/poses",
        data={"csrf_token": token, "name": "Text lunge", "keypoints": json.dumps(POINTS)},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text[:300]
    mapped = user.post(
        "/ui/me/poses",
        data={"csrf_token": token, "name": "Map pose", "keypoints": ""},
        files={"map": ("m.png", png_bytes(), "image/png")},
        follow_redirects=False,
    )
    assert mapped.status_code == 303, mapped.text[:300]
    listing = user.get("/ui/me/poses").text
    assert "Text lunge" in listing and "Map pose" in listing
    ids = sorted(int(x) for x in re.findall(r'data-pose-id="(\d+)"', listing))
    assert len(ids) == 2  # ids[0]: the text pose, made first
    for pid in ids:
        assert user.get(f"/ui/library/poses/{pid}/map.png").status_code == 200

    # The new-generation form offers them, and a generation with one is accepted.
    form = user.get("/ui/generations/new")
    assert 'id="my-poses-pick"' in form.text and f'value="{ids[0]}"' in form.text
    made_project = user.post(
        "/ui/projects", data={"csrf_token": token, "name": "P"}, follow_redirects=False
    )
    project = made_project.headers["location"].rsplit("=", 1)[1]
    submission = re.search(r'name="submission" value="([^"]+)"', form.text)
    assert submission is not None
    generation = user.post(
        "/ui/generations",
        data={
            "csrf_token": token,
            "submission": submission.group(1),
            "project_id": project,
            "mode": "library",
            "pose_id": str(ids[0]),
            "variations": "1",
        },
        follow_redirects=False,
    )
    assert generation.status_code == 303, generation.text[:500]

    other = signed_in_client(make_client(), people.other.api_key)
    admin = signed_in_client(make_client(), people.admin.api_key)
    for viewer in (other, admin):
        assert "Text lunge" not in viewer.get("/ui/me/poses").text
        assert "Text lunge" not in viewer.get("/ui/library").text
        assert viewer.get(f"/ui/library/poses/{ids[0]}/map.png").status_code == 404
        gone = viewer.post(
            f"/ui/me/poses/{ids[0]}/delete",
            data={"csrf_token": csrf_of(viewer.get("/ui/me/poses").text)},
        )
        assert gone.status_code == 404
    assert other.get("/ui/admin/requests").status_code == 403
    deleted = user.post(f"/ui/me/poses/{ids[0]}/delete", data={"csrf_token": token})
    assert deleted.status_code == 200 and "Pose deleted." in deleted.text
    assert "Text lunge" not in deleted.text


def _sign_in(page: Any, base: str, key: str) -> None:
    page.goto(f"{base}/ui/")
    page.get_by_label("API key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(lambda url: "/sign-in" not in url)


@pytest.mark.browser
def test_request_vote_complete_in_chromium(app: FastAPI, people: People) -> None:
    require_chromium()
    with live_server(app) as base, chromium() as browser:
        pages = {}
        for who, key in (
            ("a", people.user.api_key),
            ("b", people.other.api_key),
            ("admin", people.admin.api_key),
        ):
            context = browser.new_context()
            pages[who] = page = context.new_page()
            pages[who + "-errors"] = ConsoleErrors(page)
            _sign_in(page, base, key)

        a = pages["a"]
        a.goto(f"{base}/ui/requests")
        a.get_by_label("Pose name").fill("Tree pose")
        a.get_by_label("Description").fill("Standing on one leg")
        a.get_by_label("Category").select_option("standing")
        a.get_by_label("Use case").fill("yoga posters")
        a.get_by_label("Reference image (optional)").set_input_files(
            {"name": "ref.png", "mimeType": "image/png", "buffer": png_bytes()}
        )
        a.get_by_role("button", name="Send request").click()
        a.wait_for_url(lambda url: "notice=request-made" in url)
        assert a.locator("#history [data-role=event]").all_inner_texts() == [
            "your request was made"
        ]
        assert a.get_by_role("button", name="Vote").count() == 0  # not on one's own

        b = pages["b"]
        b.goto(f"{base}/ui/requests")
        b.get_by_role("button", name="Vote for Tree pose").click()
        b.wait_for_url(lambda url: "notice=voted" in url)
        card = b.locator("#requests li", has_text="Tree pose")
        assert card.locator("[data-role=votes]").inner_text() == "1"
        assert card.get_by_role("button", name="Take back vote for Tree pose").is_visible()

        admin = pages["admin"]
        admin.goto(f"{base}/ui/admin/requests")
        item = admin.locator("#review-queue li", has_text="Tree pose")
        item.get_by_label("Library pose (slug or id)").fill("standing-neutral")
        complete = item.locator("form", has=admin.get_by_role("button", name="Complete Tree pose"))
        complete.get_by_label("Note (optional)").fill("added to the library")
        complete.get_by_role("button", name="Complete Tree pose").click()
        admin.wait_for_url(lambda url: "notice=reviewed" in url)
        assert admin.locator("#review-queue li", has_text="Tree pose").count() == 0

        a.goto(f"{base}/ui/requests")
        updates = a.locator("#my-updates [data-role=event]").all_inner_texts()
        assert updates == ["your request was completed: added to the library"]
        a.locator("#requests").get_by_role("link", name="Tree pose").click()
        assert "standing-neutral" in a.locator("main").inner_text()
        for who in ("a", "b", "admin"):
            assert pages[who + "-errors"].errors == [], pages[who + "-errors"].errors
