"""A project's subject is detected once, after the upload is answered, and kept with the upload
(both engines): pose, box and mask; read by its owner only; removed with the upload; skipped
cleanly without the vision environment."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from sqlalchemy import Engine, func, select
from vision_helpers import NOT_INSTALLED, drawn_figure, encode, vision_python

from posegen import accounts
from posegen.api.app import PREFIX, create_app
from posegen.config import Settings
from posegen.db.engine import read_connection
from posegen.db.models import UploadDetection
from posegen.pose import parse_pose
from posegen.vision import subjects


def _rows(engine: Engine) -> int:
    with read_connection(engine) as conn:
        return int(conn.execute(select(func.count()).select_from(UploadDetection)).scalar_one())


def test_subject_upload_is_detected_once_and_kept_with_the_upload(
    settings: Settings, engine: Engine
) -> None:
    if vision_python() is None:
        pytest.skip(NOT_INSTALLED)
    user = accounts.create_user(engine, "Uma User", "uma@example.com")
    other = accounts.create_user(engine, "Olaf Other", "olaf@example.com")
    auth = {"Authorization": f"Bearer {user.api_key}"}
    detecting = settings.model_copy(update={"vision_detect_subjects": True})
    with TestClient(create_app(detecting, engine)) as client:
        made = client.post(
            PREFIX + "/projects",
            data={"name": "figure"},
            files={"subject": ("f.png", encode(drawn_figure()), "image/png")},
            headers=auth,
        )
        assert made.status_code == 201, made.text
        upload_id = made.json()["subjectUploadId"]
        # The background task ran after the answer: the row is there before anyone asks.
        assert _rows(engine) == 1
        got = client.get(f"{PREFIX}/uploads/{upload_id}/detection", headers=auth)
        assert got.status_code == 200, got.text
        body = got.json()
        assert body["status"] == "found" and body["warnings"] == []
        pose = parse_pose(body["pose"])
        assert pose.canvas == (512.0, 512.0) and pose.framing == "full_body"
        x0, y0, x1, y1 = body["box"]
        assert 0.15 < x0 < x1 < 0.85 and 0.0 <= y0 < 0.15 and 0.85 < y1 <= 1.0
        mask = client.get(body["maskUrl"], headers=auth)
        assert mask.status_code == 200 and mask.headers["content-type"] == "image/png"
        with Image.open(io.BytesIO(mask.content)) as im:
            assert im.size == (512, 512) and im.mode == "L"
            assert im.getpixel((256, 200)) > 200 and im.getpixel((20, 20)) < 50
        # Asking again reads the kept row: still one.
        assert client.get(f"{PREFIX}/uploads/{upload_id}/detection", headers=auth).is_success
        assert _rows(engine) == 1
        # Another user's upload reads as no upload at all.
        theirs = {"Authorization": f"Bearer {other.api_key}"}
        for path in ("/detection", "/detection/mask"):
            assert (
                client.get(f"{PREFIX}/uploads/{upload_id}{path}", headers=theirs).status_code == 404
            )
        # Removed with the upload.
        project_id = made.json()["id"]
        assert client.delete(f"{PREFIX}/projects/{project_id}", headers=auth).status_code == 204
    assert _rows(engine) == 0


def test_a_second_store_of_one_upload_keeps_one_row(settings: Settings, engine: Engine) -> None:
    from posegen import uploads

    user = accounts.create_user(engine, "Uma User", "uma@example.com")
    up = uploads.store(engine, settings, user.account.id, encode(drawn_figure(64)))
    values = {"status": "no-person", "pose": None, "box": None, "mask_png": None, "warnings": []}
    first = subjects._store(engine, up.id, values)
    second = subjects._store(engine, up.id, {**values, "status": "found"})
    assert first == second and first.status == "no-person" and _rows(engine) == 1


def test_without_the_environment_projects_work_and_detection_is_503(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    missing = settings.model_copy(
        update={"vision_python": tmp_path / "no" / "python", "vision_detect_subjects": True}
    )
    user = accounts.create_user(engine, "Uma User", "uma@example.com")
    auth = {"Authorization": f"Bearer {user.api_key}"}
    with TestClient(create_app(missing, engine)) as client:
        made = client.post(
            PREFIX + "/projects",
            data={"name": "figure"},
            files={"subject": ("f.png", encode(drawn_figure(64)), "image/png")},
            headers=auth,
        )
        assert made.status_code == 201, made.text
        assert _rows(engine) == 0
        upload_id = made.json()["subjectUploadId"]
        got = client.get(f"{PREFIX}/uploads/{upload_id}/detection", headers=auth)
        assert got.status_code == 503 and got.json()["kind"] == "vision-not-installed"
        mask = client.get(f"{PREFIX}/uploads/{upload_id}/detection/mask", headers=auth)
        assert mask.status_code == 404
