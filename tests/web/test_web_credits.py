"""The new-generation form shows the cost and the balance when generating costs credits (and
says nothing about credits when it is free); a submit the balance cannot cover is refused on
the form with the reason, and charges nothing (both engines)."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine
from web_helpers import People, csrf_of, signed_in_client

from posegen import credits, projects
from posegen.api.app import create_app
from posegen.config import Settings


def _form(client: TestClient) -> tuple[str, str, str]:
    page = client.get("/ui/generations/new")
    assert page.status_code == 200
    submission = re.search(r'name="submission" value="([^"]+)"', page.text)
    assert submission
    return page.text, csrf_of(page.text), submission.group(1)


def test_cost_on_the_form_and_a_refusal_for_want_of_credits(
    settings: Settings, engine: Engine, people: People
) -> None:
    user_id = people.user.account.id
    with TestClient(create_app(settings, engine), base_url="http://testserver") as free:
        signed_in_client(free, people.user.api_key)
        assert "credits" not in _form(free)[0]

    priced = settings.model_copy(update={"credits_per_pose": 3})
    credits.grant(engine, user_id, 10)
    project = projects.create(engine, user_id, "p", None)
    with TestClient(create_app(priced, engine), base_url="http://testserver") as client:
        signed_in_client(client, people.user.api_key)
        html, csrf, submission = _form(client)
        assert "Each pose costs 3 credits" in html and "Your balance: 10 credits" in html
        form = {
            "csrf_token": csrf,
            "submission": submission,
            "project_id": str(project.id),
            "mode": "library",
            "pose_id": ["1", "2"],
            "variations": "2",
        }
        refused = client.post("/ui/generations", data=form, follow_redirects=False)
        assert refused.status_code == 402
        assert "costs 12 credits; the balance is 10" in refused.text
        assert credits.balance(engine, user_id) == 10
        _, csrf, submission = _form(client)
        ok = client.post(
            "/ui/generations",
            data=form | {"csrf_token": csrf, "submission": submission, "variations": "1"},
            follow_redirects=False,
        )
        assert ok.status_code == 303, ok.text
        assert credits.balance(engine, user_id) == 4
