"""The worker reads only what the generation may read: the subject upload must be the
generation's user's, a map upload an admin's; anything else (another user's upload, a row whose
file is gone, a stored ``/uploads/`` path) fails alike, without saying which. A large JPEG subject
goes through a whole generation. Every test runs on SQLite and PostgreSQL."""

from __future__ import annotations

import io
import os
from typing import Any

import pytest
from PIL import Image
from pipeline_world import World, subject_png  # type: ignore[import-not-found]
from sqlalchemy import Engine, insert, select, update

from posegen import accounts, projects, uploads
from posegen.db.models import GeneratedPose, PoseCategory, PoseGeneration, PoseLibrary, Project


def _generation(world: World, gid: int) -> Any:
    with world.engine.connect() as conn:
        return conn.execute(select(PoseGeneration).where(PoseGeneration.id == gid)).one()


def _pose_rows(world: World, gid: int) -> list[Any]:
    with world.engine.connect() as conn:
        return list(
            conn.execute(
                select(GeneratedPose.pose_id, GeneratedPose.status, GeneratedPose.error_kind,
                       GeneratedPose.error_message)
                .where(GeneratedPose.generation_id == gid)
            )
        )  # fmt: skip


def _set_subject(engine: Engine, project_id: int, **values: Any) -> None:
    # Written straight into the row, as a bug elsewhere (or a hand edit) could: the API would
    # refuse these, and the worker must refuse them too.
    with engine.begin() as conn:
        conn.execute(update(Project).where(Project.id == project_id).values(**values))


def _map_pose(engine: Engine, name: str, **values: Any) -> int:
    with engine.begin() as conn:
        category = conn.execute(select(PoseCategory.id).limit(1)).scalar_one()
        return int(
            conn.execute(
                insert(PoseLibrary)
                .values(slug=name, name=name, description="", category_id=category, tags=[],
                        **values)
                .returning(PoseLibrary.id)
            ).scalar_one()
        )  # fmt: skip


@pytest.fixture(scope="module")
def big_jpeg() -> bytes:
    """A ~15 MB JPEG of random pixels: as a PNG (what uploads used to become) it is ~24 MB, over
    the 20 MiB read cap, so the worker could not have read it back."""
    width, height = 3400, 2400
    image = Image.frombytes("RGB", (width, height), os.urandom(width * height * 3))
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90, subsampling=0)
    return buf.getvalue()


def test_a_large_jpeg_subject_goes_through_a_generation(world: World, big_jpeg: bytes) -> None:
    assert len(big_jpeg) > 15_000_000
    stored = uploads.store(world.engine, world.settings, world.user_id, big_jpeg)
    assert stored.content_type == "image/jpeg" and stored.bytes == len(big_jpeg)
    path = world.settings.effective_uploads_dir / stored.relpath
    assert path.read_bytes() == big_jpeg
    world.project_id = projects.create(world.engine, world.user_id, "big", None, stored.id).id
    gid = world.submit(world.pose_ids[:1])
    world.run_pipeline()
    gen = _generation(world, gid)
    assert gen.status == "completed" and gen.poses_completed == 2, gen.error_message


def test_subjects_the_user_may_not_read_all_fail_alike(world: World) -> None:
    other = accounts.create_user(world.engine, "Eve", "eve@example.com").account
    theirs = uploads.store(world.engine, world.settings, other.id, subject_png((200, 100)))
    mine = uploads.store(world.engine, world.settings, world.user_id, subject_png((120, 90)))
    # A legacy path whose file exists (the old predictable name of another user's subject).
    legacy = world.settings.effective_uploads_dir / "subjects" / "project-7.png"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(subject_png())
    (world.settings.effective_uploads_dir / mine.relpath).unlink()  # row left, file gone

    cases = {
        "someone else's upload": {"subject_upload_id": theirs.id},
        "my upload, file missing": {"subject_upload_id": mine.id},
        "stored uploads path": {"subject_image_url": "/uploads/subjects/project-7.png"},
        "stored relative path": {"subject_image_url": f"{theirs.relpath}"},
    }
    seen = set()
    for label, values in cases.items():
        project = projects.create(world.engine, world.user_id, label, None)
        _set_subject(world.engine, project.id, **values)
        world.project_id = project.id
        gid = world.submit(world.pose_ids[:1])
        world.run_pipeline()
        gen = _generation(world, gid)
        assert gen.status == "failed" and gen.error_kind == "subject-unavailable", label
        assert gen.attempts == 1 and _pose_rows(world, gid) == []
        seen.add(gen.error_message)
    # One sentence for all four: no id, path or owner can be told apart from another.
    assert len(seen) == 1
    message = seen.pop()
    assert str(theirs.id) not in message and "upload" not in message.lower().replace(
        "subject image", ""
    )
    # Nothing was deleted either.
    assert (world.settings.effective_uploads_dir / theirs.relpath).is_file() and legacy.is_file()


def test_map_uploads_must_be_an_admins(world: World) -> None:
    # world.user_id is an admin: their upload is a library map; a plain user's is not.
    plain = accounts.create_user(world.engine, "Uma", "uma@example.com").account
    black = subject_png((128, 128))
    admin_map = uploads.store(world.engine, world.settings, world.user_id, black)
    user_map = uploads.store(world.engine, world.settings, plain.id, black)
    gone = uploads.store(world.engine, world.settings, world.user_id, subject_png((64, 64)))
    (world.settings.effective_uploads_dir / gone.relpath).unlink()
    legacy = world.settings.effective_uploads_dir / "maps" / "pose-1.png"
    legacy.parent.mkdir(parents=True, exist_ok=True)
    legacy.write_bytes(black)

    good = _map_pose(world.engine, "admin-map", map_upload_id=admin_map.id)
    bad = {
        _map_pose(world.engine, "user-map", map_upload_id=user_map.id),
        _map_pose(world.engine, "gone-map", map_upload_id=gone.id),
        _map_pose(world.engine, "legacy-map", controlnet_map_url="/uploads/maps/pose-1.png"),
    }
    gid = world.submit([good, *sorted(bad)])
    world.run_pipeline()
    rows = _pose_rows(world, gid)
    assert {r.status for r in rows if r.pose_id == good} == {"completed"}
    failed = [r for r in rows if r.pose_id in bad]
    assert len(failed) == 6 and {r.error_kind for r in failed} == {"map-unavailable"}
    assert len({r.error_message for r in failed}) == 1
    assert _generation(world, gid).status == "partial"
