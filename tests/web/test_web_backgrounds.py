"""Background changes on the dashboard (over HTTP, no browser): the form beside each finished
result (CSRF-protected, owner only), the variant shown beside its original after a real worker
made it, its files served like the results'."""

from __future__ import annotations

import io
import re
from collections.abc import Callable

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from web_helpers import People, csrf_of, run_until_idle, signed_in_client

from posegen import projects, queue, uploads
from posegen.config import Settings, load_settings
from posegen.db.models import GenerationType
from posegen.vision import client as vision_client


def _photo() -> bytes:
    python = vision_client.helper_python(load_settings())
    if python is None:
        pytest.skip("vision environment not installed (run `make install-vision`)")
    for folder in sorted(python.parent.parent.glob("lib/python3*/site-packages/matplotlib")):
        found = folder / "mpl-data" / "sample_data" / "grace_hopper.jpg"
        if found.is_file():
            return found.read_bytes()
    pytest.skip("vision environment not installed: grace_hopper.jpg comes with its matplotlib")


def test_change_a_results_background_from_the_generation_page(
    make_client: Callable[..., TestClient], people: People, engine: Engine, settings: Settings
) -> None:
    photo = _photo()
    uid = people.user.account.id
    subject = uploads.store(engine, settings, uid, photo)
    project = projects.create(engine, uid, "shoot", None, subject.id)
    gid = queue.submit(
        engine,
        settings,
        queue.GenerationRequest(
            user_id=uid,
            project_id=project.id,
            type=GenerationType.LIBRARY,
            pose_ids=[1],
            variations=1,
            width=160,
            height=200,
        ),
    ).generation_id
    run_until_idle(settings, engine)
    client = signed_in_client(make_client(), people.user.api_key)
    page = client.get(f"/ui/generations/{gid}")
    forms = re.findall(rf'action="/ui/generations/{gid}/results/(\d+)/background"', page.text)
    assert len(forms) == 1
    rid = forms[0]
    url = f"/ui/generations/{gid}/results/{rid}/background"
    # Without the CSRF token: refused, nothing queued.
    refused = client.post(url, data={"mode": "solid", "color": "#00ff00"}, follow_redirects=False)
    assert refused.status_code == 403
    bad = client.post(
        url,
        data={"csrf_token": csrf_of(page.text), "mode": "solid", "color": "green"},
        follow_redirects=False,
    )
    assert bad.status_code == 422 and "#RRGGBB" in bad.text
    asked = client.post(
        url,
        data={"csrf_token": csrf_of(page.text), "mode": "solid", "color": "#00ff00"},
        follow_redirects=False,
    )
    assert asked.status_code == 303 and asked.headers["location"].endswith("notice=background")
    assert "Background change queued" in client.get(asked.headers["location"]).text
    run_until_idle(settings, engine)
    page = client.get(f"/ui/generations/{gid}")
    links = re.findall(
        rf'src="(/ui/generations/{gid}/results/{rid}/variants/\d+/thumbnail)"', page.text
    )
    assert len(links) == 1
    thumb = client.get(links[0])
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/jpeg"
    image = client.get(links[0].replace("/thumbnail", "/image"))
    with Image.open(io.BytesIO(image.content)) as im:
        assert im.convert("RGB").getpixel((2, 2)) == (0, 255, 0)
    again = client.post(
        url,
        data={"csrf_token": csrf_of(page.text), "mode": "solid", "color": "#00FF00"},
        follow_redirects=False,
    )
    assert again.headers["location"].endswith("notice=background-again")
    # Someone else sees neither the form's target nor the files.
    other = signed_in_client(make_client(), people.other.api_key)
    assert other.get(links[0]).status_code == 404
    other_page = other.get("/ui/generations/new")
    theirs = other.post(
        url,
        data={"csrf_token": csrf_of(other_page.text), "mode": "blur"},
        follow_redirects=False,
    )
    assert theirs.status_code == 404
