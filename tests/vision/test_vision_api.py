"""``POST /poses/extract`` on both engines (it needs a signed-in user), the CLI's
``posegen poses extract``, and the clear 503 when the vision environment is missing."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine
from typer.testing import CliRunner
from vision_helpers import NOT_INSTALLED, drawn_figure, encode, vision_python

from posegen import accounts
from posegen.api.app import PREFIX, create_app
from posegen.cli import app as cli_app
from posegen.config import Settings
from posegen.pose import parse_pose

URL = PREFIX + "/poses/extract"


def _client(settings: Settings, engine: Engine) -> TestClient:
    return TestClient(create_app(settings, engine))


def test_extract_route_needs_a_user_and_returns_keypoints_pose_and_map(
    settings: Settings, engine: Engine, photo: bytes
) -> None:
    if vision_python() is None:
        pytest.skip(NOT_INSTALLED)
    key = accounts.create_user(engine, "Uma User", "uma@example.com").api_key
    files = {"photo": ("me.jpg", photo, "image/jpeg")}
    with _client(settings, engine) as client:
        assert client.post(URL, files=files).status_code == 401
        got = client.post(URL, files=files, headers={"Authorization": f"Bearer {key}"})
        assert got.status_code == 200, got.text
        body = got.json()
        assert (body["width"], body["height"], body["peopleSeen"]) == (512, 600, 1)
        assert len(body["keypoints"]) == 18 and body["keypoints"][8] is None
        assert body["keypoints"][0][2] > 0.5
        assert [w["kind"] for w in body["warnings"]] == ["partial-body"]
        # The pose is what a library or private pose is created from.
        pose = parse_pose(body["pose"])
        assert pose.canvas == (512.0, 600.0) and pose.people[0].body[0] is not None
        with Image.open(io.BytesIO(base64.b64decode(body["map"]["pngBase64"]))) as pose_map:
            pose_map.load()
        assert pose_map.size == (body["map"]["width"], body["map"]["height"]) == (512, 576)
        assert pose_map.getbbox() is not None  # something was drawn
        # A broken photo is a problem document, not a 500.
        bad = client.post(
            URL,
            files={"photo": ("x.jpg", photo[:2000], "image/jpeg")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert bad.status_code == 422
        assert bad.headers["content-type"].startswith("application/problem+json")
        wrong_field = client.post(
            URL,
            files={"file": ("x.jpg", photo, "image/jpeg")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert wrong_field.status_code == 422 and wrong_field.json()["kind"] == "missing-file"


def test_extract_route_without_the_environment_is_503_vision_not_installed(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    key = accounts.create_user(engine, "Uma User", "uma@example.com").api_key
    missing = settings.model_copy(update={"vision_python": tmp_path / "no" / "python"})
    with _client(missing, engine) as client:
        got = client.post(
            URL,
            files={"photo": ("f.png", encode(drawn_figure(64)), "image/png")},
            headers={"Authorization": f"Bearer {key}"},
        )
        assert got.status_code == 503
        problem = got.json()
        assert problem["type"].endswith("/vision-not-installed")
        assert "make install-vision" in problem["detail"]
        # The rest of the service is unaffected.
        assert client.get(
            PREFIX + "/uploads", headers={"Authorization": f"Bearer {key}"}
        ).is_success


def test_cli_extract_prints_json_and_writes_the_map(
    vision_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSEGEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSEGEN_VISION_PYTHON", str(vision_settings.vision_python))
    figure = tmp_path / "figure.png"
    drawn_figure().save(figure)
    out = tmp_path / "map.png"
    result = CliRunner().invoke(
        cli_app, ["poses", "extract", str(figure), "-o", str(out), "--json"]
    )
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(body["keypoints"]) == 18 and all(p is not None for p in body["keypoints"])
    assert all(len(p) == 3 for p in body["keypoints"])
    with Image.open(out) as written:
        assert written.size == (512, 512)
    blank = tmp_path / "blank.png"
    Image.new("RGB", (200, 200), (90, 90, 90)).save(blank)
    none = CliRunner().invoke(cli_app, ["poses", "extract", str(blank)])
    assert none.exit_code == 1 and "no person" in none.output


def test_extract_route_with_people_all_returns_every_person(
    settings: Settings, engine: Engine, photo: bytes
) -> None:
    if vision_python() is None:
        pytest.skip(NOT_INSTALLED)
    key = accounts.create_user(engine, "Uma User", "uma@example.com").api_key
    auth = {"Authorization": f"Bearer {key}"}
    person = Image.open(io.BytesIO(photo)).convert("RGB")
    pair = Image.new("RGB", (1024, 600), (128, 128, 128))
    pair.paste(person, (0, 0))
    pair.paste(person, (512, 0))
    with _client(settings, engine) as client:
        got = client.post(
            URL + "?people=all",
            files={"photo": ("two.png", encode(pair), "image/png")},
            headers=auth,
        )
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["peopleSeen"] == 2 and len(body["people"]) == 2
        lefts = sorted(p["box"][0] for p in body["people"])
        assert lefts[0] < 0.5 <= lefts[1]  # one person in each half
        for found in body["people"]:
            assert len(found["keypoints"]) == 18 and len(found["face"]) == 70
            assert found["keypoints"][0][2] >= 0.5
        assert body["keypoints"] == body["people"][0]["keypoints"]
        assert len(parse_pose(body["pose"]).people) == 2
        assert "several-people" not in [w["kind"] for w in body["warnings"]]
        # The default stays one person, with the warning; no people list.
        one = client.post(
            URL, files={"photo": ("two.png", encode(pair), "image/png")}, headers=auth
        )
        assert one.json()["people"] is None
        assert "several-people" in [w["kind"] for w in one.json()["warnings"]]
        # Nobody: an empty list and the warning.
        blank = encode(Image.new("RGB", (300, 200), (90, 90, 90)))
        none = client.post(
            URL + "?people=all", files={"photo": ("b.png", blank, "image/png")}, headers=auth
        )
        assert none.status_code == 200
        assert none.json()["people"] == [] and none.json()["pose"] is None
        assert [w["kind"] for w in none.json()["warnings"]] == ["no-person"]
        wrong = client.post(
            URL + "?people=some", files={"photo": ("b.png", blank, "image/png")}, headers=auth
        )
        assert wrong.status_code == 422
        assert wrong.headers["content-type"].startswith("application/problem+json")


def test_cli_extract_all(
    vision_settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POSEGEN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("POSEGEN_VISION_PYTHON", str(vision_settings.vision_python))
    figure = drawn_figure()
    pair = Image.new("RGB", (1024, 512))
    pair.paste(figure, (0, 0))
    pair.paste(figure, (512, 0))
    path = tmp_path / "pair.png"
    pair.save(path)
    result = CliRunner().invoke(cli_app, ["poses", "extract", str(path), "--all", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(body["people"]) == 2 and len(body["pose"]["people"]) == 2
    assert all(len(p["box"]) == 4 for p in body["people"])
    text = CliRunner().invoke(cli_app, ["poses", "extract", str(path), "--all"])
    assert text.exit_code == 0 and "person 2 (box" in text.output
