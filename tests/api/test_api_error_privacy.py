"""Users see a stable error kind and a sentence written for them; the raw failure text (a Pillow
message, the address a host resolved to, whether a port answered) is kept for admins and logs.

Failures are recorded through the queue as the worker records them (fenced writes with the raw
text), then read back through the API, the event stream and the dashboard as the owner and as
an admin, on both engines.
"""

from __future__ import annotations

import re

from api_helpers import Api, Keys, claim_one, write_pose
from fastapi.testclient import TestClient
from sqlalchemy import Engine

from posegen import failures, queue
from posegen.config import Settings
from posegen.db.models import PoseStatus

SECRET = "internal.example resolved to 10.1.2.3; port 6379 open"
PILLOW = "UnidentifiedImageError: cannot identify image file <_io.BytesIO object at 0x7f3a>"


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


def test_owner_sees_a_sentence_admin_sees_the_detail(
    api: Api, keys: Keys, engine: Engine, settings: Settings, library: None, client: TestClient
) -> None:
    project = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
    made = api("POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [1]})
    assert made.status_code == 202, made.text
    gen = made.json()["id"]
    job = claim_one(engine, settings)
    # A pose that failed on a bad image, then the generation failing on a blocked address.
    queue.record_pose(
        engine,
        job.id,
        job.lease_token,
        queue.PoseResult(
            variation_key=queue.variation_key(1, 0),
            pose_id=1,
            variation_index=0,
            status=PoseStatus.FAILED,
            error_kind="not-an-image",
            error_message=PILLOW,
        ),
    )
    queue.fail_permanent(engine, job.id, job.lease_token, "blocked-address", SECRET)

    mine = api("GET", f"/generations/{gen}", key=keys.user).json()
    assert mine["errorKind"] == "blocked-address"
    assert mine["errorMessage"] == failures.SENTENCES["blocked-address"]
    assert mine.get("errorDetail") is None
    results = api("GET", f"/generations/{gen}/results", key=keys.user).json()
    assert results[0]["errorMessage"] == failures.SENTENCES["not-an-image"]
    assert results[0].get("errorDetail") is None
    listed = api("GET", "/generations", key=keys.user).json()
    events = api("GET", f"/generations/{gen}/events", key=keys.user)
    for text in (str(mine), str(results), str(listed), events.text):
        assert "10.1.2.3" not in text and "6379" not in text and "BytesIO" not in text

    theirs = api("GET", f"/generations/{gen}", key=keys.admin).json()
    assert theirs["errorDetail"] == SECRET
    assert theirs["errorMessage"] == mine["errorMessage"]
    admin_results = api("GET", f"/generations/{gen}/results", key=keys.admin).json()
    assert admin_results[0]["errorDetail"] == PILLOW

    # The dashboard: the owner's gallery shows the sentence only; an admin's shows the detail.
    _sign_in(client, keys.user)
    page = client.get(f"/ui/generations/{gen}").text
    assert failures.SENTENCES["blocked-address"] in page
    assert "10.1.2.3" not in page and "BytesIO" not in page
    client.cookies.clear()
    _sign_in(client, keys.admin)
    page = client.get(f"/ui/generations/{gen}").text
    assert "10.1.2.3" in page and "BytesIO" in page


def test_retries_and_unknown_kinds_never_echo_the_text(
    api: Api, keys: Keys, engine: Engine, settings: Settings, library: None
) -> None:
    project = api("POST", "/projects", key=keys.user, json={"name": "p"}).json()["id"]
    gen = api(
        "POST", "/generations", key=keys.user, json={"projectId": project, "poseIds": [1]}
    ).json()["id"]
    job = claim_one(engine, settings)
    raw = 'psycopg.errors.UndefinedTable: relation "secret_table" does not exist'
    queue.fail_transient(engine, settings, job.id, job.lease_token, "internal", raw)
    view = api("GET", f"/generations/{gen}", key=keys.user).json()
    assert view["status"] == "pending" and view["errorKind"] == "internal"
    assert view["errorMessage"] == failures.SENTENCES["internal"]

    job = claim_one(engine, settings)
    write_pose(engine, settings, job, 1, 0, failed=True)  # kind "generator", raw text
    queue.fail_permanent(engine, job.id, job.lease_token, "weird-new-kind", raw)
    view = api("GET", f"/generations/{gen}", key=keys.user).json()
    assert view["errorMessage"] == failures.FALLBACK
    results = api("GET", f"/generations/{gen}/results", key=keys.user).json()
    assert results[0]["errorMessage"] == failures.SENTENCES["generator"]
    # The stream has ended, so it replays every event: the retry's sentence, never the text.
    events = api("GET", f"/generations/{gen}/events", key=keys.user).text
    assert failures.SENTENCES["internal"] in events
    assert "secret_table" not in events + str(results)
    assert failures.public_message("subject-timeout") == (
        "The project's subject image could not be used: the image could not be downloaded in time."
    )
