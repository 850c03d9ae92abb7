"""Migration a_uploads on both engines: existing ``/uploads/...`` references become owned upload
rows (content-addressed copies), and the downgrade writes readable paths back."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

from PIL import Image
from sqlalchemy import Connection, Insert, MetaData, Table, insert, inspect, select

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import PoseCategory, PoseGeneration, PoseLibrary, Project, Upload, User

PRE = "0002"


def _png(colour: tuple[int, int, int], size: tuple[int, int] = (40, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, "PNG")
    return buf.getvalue()


def _pre(conn: Connection, model: type) -> Insert:
    """An INSERT into ``model``'s table as it is at ``PRE``: only the columns that exist there
    (later revisions add columns today's models fill with defaults)."""
    existing = {c["name"] for c in inspect(conn).get_columns(model.__tablename__)}
    columns = [c._copy() for c in model.__table__.columns if c.name in existing]  # type: ignore[attr-defined]
    return insert(Table(model.__tablename__, MetaData(), *columns))


def test_upload_paths_are_adopted_and_given_back(empty_db_url: str, tmp_path: Path) -> None:
    root = tmp_path / "uploads"
    (root / "subjects").mkdir(parents=True)
    (root / "maps").mkdir()
    subject, pose_map = _png((200, 10, 10)), _png((0, 0, 0), (64, 64))
    (root / "subjects" / "project-1.png").write_bytes(subject)
    (root / "subjects" / "copy.png").write_bytes(subject)
    (root / "subjects" / "not-an-image.png").write_bytes(b"hello")
    (root / "maps" / "pose-1.png").write_bytes(pose_map)
    (tmp_path / "outside.png").write_bytes(subject)
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine, PRE, uploads_dir=root)
        with engine.begin() as conn:
            user = conn.execute(
                _pre(conn, User).values(name="U", email="u@x", role="user").returning(User.id)
            ).scalar_one()
            admin = conn.execute(
                _pre(conn, User).values(name="A", email="a@x", role="admin").returning(User.id)
            ).scalar_one()
            refs = {
                "adopted": "/uploads/subjects/project-1.png",
                "same bytes": "/uploads/subjects/copy.png",
                "missing": "/uploads/subjects/project-9.png",
                "not an image": "/uploads/subjects/not-an-image.png",
                "escape": "/uploads/../outside.png",
                "url": "https://cdn.example.com/me.png",
            }
            pids = {
                label: conn.execute(
                    _pre(conn, Project)
                    .values(user_id=user, name=label, subject_image_url=ref)
                    .returning(Project.id)
                ).scalar_one()
                for label, ref in refs.items()
            }
            cat = conn.execute(
                _pre(conn, PoseCategory).values(slug="c", name="C").returning(PoseCategory.id)
            ).scalar_one()
            pose = conn.execute(
                _pre(conn, PoseLibrary)
                .values(
                    slug="p",
                    name="P",
                    category_id=cat,
                    tags=[],
                    controlnet_map_url="/uploads/maps/pose-1.png",
                )
                .returning(PoseLibrary.id)
            ).scalar_one()
            gen = conn.execute(
                _pre(conn, PoseGeneration)
                .values(
                    user_id=user,
                    project_id=pids["adopted"],
                    type="library",
                    selected_pose_ids=[pose],
                    total_expected_poses=1,
                )
                .returning(PoseGeneration.id)
            ).scalar_one()

        migrate.upgrade(engine, uploads_dir=root)
        with engine.connect() as conn:
            projects = {
                r.id: r
                for r in conn.execute(
                    select(Project.id, Project.subject_image_url, Project.subject_upload_id)
                )
            }
            rows = {r.id: r for r in conn.execute(select(Upload))}
            pose_row = conn.execute(select(PoseLibrary).where(PoseLibrary.id == pose)).one()
            # The rebuilt tables kept what refers to them (no cascade through the DROP).
            assert conn.execute(select(PoseGeneration.id)).scalars().all() == [gen]
        adopted = projects[pids["adopted"]]
        assert adopted.subject_image_url is None
        up = rows[adopted.subject_upload_id]
        sha = hashlib.sha256(subject).hexdigest()
        assert (up.user_id, up.sha256, up.bytes, up.width, up.height, up.content_type) == (
            user,
            sha,
            len(subject),
            40,
            30,
            "image/png",
        )
        assert (root / str(user) / sha[:2] / f"{sha}.png").read_bytes() == subject
        assert projects[pids["same bytes"]].subject_upload_id == up.id
        for label in ("missing", "not an image", "escape"):
            row = projects[pids[label]]
            assert (row.subject_image_url, row.subject_upload_id) == (None, None), label
        assert projects[pids["url"]].subject_image_url == refs["url"]
        assert pose_row.controlnet_map_url is None
        assert rows[pose_row.map_upload_id].user_id == admin
        assert len(rows) == 2

        migrate.downgrade(engine, PRE, uploads_dir=root)
        with engine.connect() as conn:
            back = dict(conn.execute(select(Project.id, Project.subject_image_url)).all())
            map_url = conn.execute(
                select(PoseLibrary.controlnet_map_url).where(PoseLibrary.id == pose)
            ).scalar_one()
        assert back[pids["adopted"]] == f"/uploads/{user}/{sha[:2]}/{sha}.png"
        for ref in (back[pids["adopted"]], map_url):
            assert (root / ref.removeprefix("/uploads/")).is_file()
        # And up again: the same rows come back.
        migrate.upgrade(engine, uploads_dir=root)
        with engine.connect() as conn:
            assert len(conn.execute(select(Upload.id)).all()) == 2
    finally:
        engine.dispose()
