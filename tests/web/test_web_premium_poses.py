"""Premium poses on the dashboard (both engines): the library page and the form mark them
"Premium"; a pay-as-you-go user who submits the form with one sees the same message as the API
(403, nothing queued); on a quota plan the same form is accepted."""

from __future__ import annotations

import datetime as dt
import html
import re

from fastapi.testclient import TestClient
from sqlalchemy import Engine, func, select
from web_helpers import People, csrf_of, signed_in_client

from posegen import credits
from posegen.db.models import PoseGeneration, PoseLibrary


def _generations(engine: Engine, user_id: int) -> int:
    with engine.connect() as conn:
        return int(
            conn.execute(
                select(func.count(PoseGeneration.id)).where(PoseGeneration.user_id == user_id)
            ).scalar_one()
        )


def _submit(c: TestClient, token: str, project: str, pose_id: int) -> tuple[int, str]:
    form = c.get(f"/ui/generations/new?project={project}")
    submission = re.search(r'name="submission" value="([^"]+)"', form.text)
    assert submission is not None
    r = c.post(
        "/ui/generations",
        data={
            "csrf_token": token,
            "submission": submission.group(1),
            "project_id": project,
            "mode": "library",
            "pose_id": str(pose_id),
            "variations": "1",
        },
        follow_redirects=False,
    )
    return r.status_code, html.unescape(r.text)


def test_form_refuses_a_premium_pose_off_a_quota_plan(
    client: TestClient, people: People, engine: Engine
) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            select(PoseLibrary.id, PoseLibrary.name)
            .where(PoseLibrary.premium.is_(True), PoseLibrary.is_public.is_(True))
            .order_by(PoseLibrary.id)
        ).first()
    assert row is not None  # the built-in library has premium poses
    pid, name = int(row[0]), str(row[1])
    user = people.user.account
    c = signed_in_client(client, people.user.api_key)
    found = c.get("/ui/library", params={"q": name})
    card = re.search(rf'data-pose-id="{pid}".*?</li>', found.text, re.S)
    assert card is not None and '<span class="badge premium"' in card.group(0)

    token = csrf_of(c.get("/ui/generations/new").text)
    made = c.post("/ui/projects", data={"csrf_token": token, "name": "P"}, follow_redirects=False)
    project = made.headers["location"].rsplit("=", 1)[1]
    status, page = _submit(c, token, project, pid)
    assert status == 403
    assert f"{name!r} (id {pid}) is a premium pose, included in the quota plan only" in page
    assert "you are on pay as you go" in page
    assert _generations(engine, user.id) == 0

    until = dt.datetime.now(dt.UTC).date() + dt.timedelta(days=2)
    credits.plans.set_plan(engine, user.id, daily_poses=5, valid_until=until)
    status, _ = _submit(c, token, project, pid)
    assert status == 303
    assert _generations(engine, user.id) == 1
