"""A private pose from a photo, in one request (both engines): ``POST /me/poses`` with a
multipart ``photo`` extracts the pose and saves it (the owner's alone, usable in their
generations); a photo without a person is 422 ``no-person-found`` and saves nothing; the
dashboard's "My poses" form does the same; without the vision environment, 503. And
``posegen poses extract PHOTO --save NAME --user EMAIL``."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from vision_helpers import NOT_INSTALLED, encode, photo_path, vision_python

from posegen import accounts, library
from posegen.api.app import PREFIX, create_app
from posegen.config import Settings
from posegen.pose import parse_pose

CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


@pytest.fixture
def client(settings: Settings, engine: Engine) -> Iterator[TestClient]:
    library.seed_library(engine)
    with TestClient(create_app(settings, engine)) as c:
        yield c


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _sign_in(client: TestClient, api_key: str) -> str:
    """Sign in through the dashboard's form; the CSRF token of the "My poses" page."""
    form = CSRF.search(client.get("/ui/sign-in").text)
    assert form is not None
    signed = client.post(
        "/ui/sign-in",
        data={"csrf_token": form.group(1), "api_key": api_key, "next": ""},
        follow_redirects=False,
    )
    assert signed.status_code == 303
    page = client.get("/ui/me/poses")
    assert 'name="photo" type="file"' in page.text
    token = CSRF.search(page.text)
    assert token is not None
    return token.group(1)


def _need_vision() -> None:
    if vision_python() is None:
        pytest.skip(NOT_INSTALLED)


def test_a_photo_becomes_the_owners_private_pose(
    client: TestClient, engine: Engine, photo: bytes
) -> None:
    _need_vision()
    owner = accounts.create_user(engine, "Uma User", "uma@example.com")
    other = accounts.create_user(engine, "Olaf Other", "olaf@example.com")
    made = client.post(
        PREFIX + "/me/poses",
        data={"name": "Grace", "description": "from a photo", "tags": '["portrait"]'},
        files={"photo": ("grace.jpg", photo, "image/jpeg")},
        headers=_auth(owner.api_key),
    )
    assert made.status_code == 201, made.text
    pose = made.json()
    assert pose["name"] == "Grace" and pose["isPublic"] is False and pose["tags"] == ["portrait"]
    assert [w["kind"] for w in pose["warnings"]] == ["partial-body"]  # a head-and-shoulders photo
    saved = parse_pose(pose["keypoints"])
    assert saved.canvas == (512.0, 600.0) and saved.people[0].body[0] is not None  # the nose

    pid = pose["id"]
    mine = client.get(f"{PREFIX}/me/poses/{pid}", headers=_auth(owner.api_key))
    assert mine.status_code == 200 and mine.json()["keypoints"] == pose["keypoints"]
    theirs = client.get(f"{PREFIX}/me/poses/{pid}", headers=_auth(other.api_key))
    assert theirs.status_code == 404
    assert client.get(PREFIX + "/me/poses", headers=_auth(other.api_key)).json()["items"] == []

    # Usable in the owner's generation; for anyone else it is a pose that does not exist.
    for key, status in ((owner.api_key, 202), (other.api_key, 422)):
        project = client.post(PREFIX + "/projects", json={"name": "p"}, headers=_auth(key))
        submit = client.post(
            PREFIX + "/generations",
            json={"projectId": project.json()["id"], "poseIds": [pid]},
            headers=_auth(key),
        )
        assert submit.status_code == status, submit.text

    # One source only: a photo with keypoints is refused, nothing saved.
    both = client.post(
        PREFIX + "/me/poses",
        data={"name": "Two", "keypoints": "[[0.5, 0.5]]"},
        files={"photo": ("grace.jpg", photo, "image/jpeg")},
        headers=_auth(owner.api_key),
    )
    assert both.status_code == 422 and both.json()["kind"] == "two-maps"
    assert len(library.list_private_poses(engine, owner.account.id).items) == 1


def test_a_photo_without_a_person_saves_nothing(client: TestClient, engine: Engine) -> None:
    _need_vision()
    owner = accounts.create_user(engine, "Uma User", "uma@example.com")
    blank = encode(Image.new("RGB", (200, 200), (90, 90, 90)))
    got = client.post(
        PREFIX + "/me/poses",
        data={"name": "Nobody"},
        files={"photo": ("blank.png", blank, "image/png")},
        headers=_auth(owner.api_key),
    )
    assert got.status_code == 422, got.text
    assert got.headers["content-type"].startswith("application/problem+json")
    assert got.json()["type"].endswith("/no-person-found")
    broken = client.post(
        PREFIX + "/me/poses",
        data={"name": "Broken"},
        files={"photo": ("x.png", blank[:100], "image/png")},
        headers=_auth(owner.api_key),
    )
    assert broken.status_code == 422 and broken.headers["content-type"].startswith(
        "application/problem+json"
    )
    assert library.list_private_poses(engine, owner.account.id).items == []


def test_the_dashboard_form_saves_a_pose_from_a_photo(
    client: TestClient, engine: Engine, photo: bytes
) -> None:
    _need_vision()
    owner = accounts.create_user(engine, "Uma User", "uma@example.com")
    csrf = _sign_in(client, owner.api_key)
    empty_map = ("", b"", "application/octet-stream")  # what a browser sends for an empty input
    refused = client.post(
        "/ui/me/poses",
        data={"name": "No token", "keypoints": ""},
        files={"map": empty_map, "photo": ("g.jpg", photo, "image/jpeg")},
    )
    assert refused.status_code == 403
    nobody = client.post(
        "/ui/me/poses",
        data={"csrf_token": csrf, "name": "Nobody", "keypoints": ""},
        files={
            "map": empty_map,
            "photo": ("b.png", encode(Image.new("RGB", (200, 200), (90, 90, 90))), "image/png"),
        },
    )
    assert nobody.status_code == 422 and "no person was found" in nobody.text
    made = client.post(
        "/ui/me/poses",
        data={"csrf_token": csrf, "name": "Grace from the form", "keypoints": ""},
        files={"map": empty_map, "photo": ("g.jpg", photo, "image/jpeg")},
        follow_redirects=False,
    )
    assert made.status_code == 303, made.text[:500]
    listing = client.get("/ui/me/poses").text
    assert "Grace from the form" in listing and "Nobody" not in listing
    (saved,) = library.list_private_poses(engine, owner.account.id).items
    assert saved.name == "Grace from the form"
    assert client.get(f"/ui/library/poses/{saved.id}/map.png").status_code == 200


def test_without_the_environment_it_is_503_and_saves_nothing(
    client: TestClient, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    owner = accounts.create_user(engine, "Uma User", "uma@example.com")
    missing = settings.model_copy(update={"vision_python": tmp_path / "no" / "python"})
    picture = encode(Image.new("RGB", (64, 64)))
    with TestClient(create_app(missing, engine)) as bare:
        got = bare.post(
            PREFIX + "/me/poses",
            data={"name": "x"},
            files={"photo": ("f.png", picture, "image/png")},
            headers=_auth(owner.api_key),
        )
        assert got.status_code == 503 and got.json()["type"].endswith("/vision-not-installed")
        token = _sign_in(bare, owner.api_key)
        page = bare.post(
            "/ui/me/poses",
            data={"csrf_token": token, "name": "x", "keypoints": ""},
            files={"photo": ("f.png", picture, "image/png")},
        )
        assert page.status_code == 503 and "make install-vision" in page.text
        assert "Traceback" not in page.text
    assert library.list_private_poses(engine, owner.account.id).items == []


def test_cli_extract_saves_a_private_pose(
    engine: Engine, cli_env: dict[str, str], tmp_path: Path
) -> None:
    python, path = vision_python(), photo_path()
    if python is None or path is None:
        pytest.skip(NOT_INSTALLED)
    library.seed_library(engine)
    owner = accounts.create_user(engine, "Uma User", "uma@example.com").account
    env = {**cli_env, "POSEGEN_VISION_PYTHON": str(python)}

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "posegen", "poses", "extract", *args]
        return subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=120, check=False
        )

    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    nobody = run(str(blank), "--save", "Nobody", "--user", "uma@example.com")
    assert nobody.returncode == 1 and "no person" in nobody.stderr + nobody.stdout
    assert run(str(path), "--save", "Grace").returncode != 0  # --user is needed
    saved = run(str(path), "--save", "Grace CLI", "--user", "uma@example.com")
    assert saved.returncode == 0, saved.stderr
    (pose,) = library.list_private_poses(engine, owner.id).items
    assert pose.name == "Grace CLI" and f"saved as private pose {pose.id}" in saved.stdout
