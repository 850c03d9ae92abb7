"""owned uploads: an uploads table, projects and poses refer to uploads by id

Every stored upload becomes a row with an owner, a SHA-256 and its size; its file lives at
``<uploads>/<user_id>/<sha[:2]>/<sha>.<ext>``. Projects get ``subject_upload_id`` and library poses
``map_upload_id`` (the pose check now accepts that as a map source).

Data: a project whose ``subject_image_url`` is an ``/uploads/...`` path gets an upload owned by
the project's owner (the file is copied to its content address; the old file is left where it
was); a pose map under ``/uploads/`` becomes an upload owned by the first admin. A path whose file
is missing or is not an image is dropped from a project (it could never be read) and left as it is
on a pose (a pose needs a map source; the worker refuses the path and fails that pose).
Downgrade writes the content-addressed path back into the URL columns (the files stay).

On SQLite the two tables are rebuilt; ``posegen.db.migrate`` turns foreign keys off around the
run, so the rebuild's DROP TABLE does not cascade into generations and results.

Revision ID: a_uploads
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import io
import logging
import os
import tempfile
from pathlib import Path, PurePosixPath
from typing import Any

import sqlalchemy as sa
from alembic import op
from PIL import Image

revision = "a_uploads"
down_revision = "0002"
branch_labels = None
depends_on = None

log = logging.getLogger("alembic.runtime.migration")

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
OLD_CHECK = "keypoints IS NOT NULL OR controlnet_map_url IS NOT NULL"
NEW_CHECK = OLD_CHECK + " OR map_upload_id IS NOT NULL"
EXTENSIONS = {
    "PNG": ("image/png", "png"),
    "JPEG": ("image/jpeg", "jpg"),
    "WEBP": ("image/webp", "webp"),
}
BY_TYPE = {ctype: ext for ctype, ext in EXTENSIONS.values()}
INDEXES = {
    "ix_projects_subject_upload_id": "projects (subject_upload_id)",
    "ix_pose_library_map_upload_id": "pose_library (map_upload_id)",
}

uploads = sa.table(
    "uploads",
    sa.column("id", ID),
    sa.column("user_id", ID),
    sa.column("sha256", sa.String),
    sa.column("bytes", sa.BigInteger),
    sa.column("width", sa.Integer),
    sa.column("height", sa.Integer),
    sa.column("content_type", sa.String),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
projects = sa.table(
    "projects",
    sa.column("id", ID),
    sa.column("user_id", ID),
    sa.column("subject_image_url", sa.String),
    sa.column("subject_upload_id", ID),
)
poses = sa.table(
    "pose_library",
    sa.column("id", ID),
    sa.column("controlnet_map_url", sa.String),
    sa.column("map_upload_id", ID),
)
users = sa.table("users", sa.column("id", ID), sa.column("role", sa.String))


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", ID, nullable=False),
        sa.Column("user_id", ID, nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("content_type", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "bytes >= 0 AND width >= 1 AND height >= 1", name=op.f("ck_uploads_sizes")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_uploads_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_uploads")),
        sa.UniqueConstraint("user_id", "sha256", name=op.f("uq_uploads_user_id_sha256")),
    )
    with op.batch_alter_table("projects") as batch:
        batch.add_column(sa.Column("subject_upload_id", ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_projects_subject_upload_id_uploads"),
            "uploads",
            ["subject_upload_id"],
            ["id"],
            ondelete="SET NULL",
        )
    with op.batch_alter_table("pose_library") as batch:
        batch.add_column(sa.Column("map_upload_id", ID, nullable=True))
        batch.create_foreign_key(
            op.f("fk_pose_library_map_upload_id_uploads"),
            "uploads",
            ["map_upload_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.drop_constraint(op.f("ck_pose_library_has_map_source"), type_="check")
        batch.create_check_constraint(op.f("ck_pose_library_has_map_source"), sa.text(NEW_CHECK))
    _adopt_files(_uploads_dir())
    if op.get_bind().dialect.name == "postgresql":
        # Built without blocking writes to projects (as 0002 does for the queue indexes).
        with op.get_context().autocommit_block():
            for name, spec in INDEXES.items():
                op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")  # a half-built one
                op.execute(f"CREATE INDEX CONCURRENTLY {name} ON {spec}")
    else:
        for name, spec in INDEXES.items():
            op.execute(f"CREATE INDEX {name} ON {spec}")


def downgrade() -> None:
    conn = op.get_bind()
    rows = conn.execute(
        sa.select(uploads.c.id, uploads.c.user_id, uploads.c.sha256, uploads.c.content_type)
    ).all()
    paths = {r.id: "/uploads/" + _relpath(r.user_id, r.sha256, r.content_type) for r in rows}
    for project_id, upload_id in conn.execute(
        sa.select(projects.c.id, projects.c.subject_upload_id).where(
            projects.c.subject_upload_id.is_not(None)
        )
    ).all():
        conn.execute(
            projects.update()
            .where(projects.c.id == project_id)
            .values(subject_image_url=paths[upload_id])
        )
    for pose_id, upload_id in conn.execute(
        sa.select(poses.c.id, poses.c.map_upload_id).where(poses.c.map_upload_id.is_not(None))
    ).all():
        conn.execute(
            poses.update().where(poses.c.id == pose_id).values(controlnet_map_url=paths[upload_id])
        )
    for name in INDEXES:
        op.execute(f"DROP INDEX IF EXISTS {name}")
    with op.batch_alter_table("pose_library") as batch:
        batch.drop_constraint(op.f("ck_pose_library_has_map_source"), type_="check")
        batch.create_check_constraint(op.f("ck_pose_library_has_map_source"), sa.text(OLD_CHECK))
        batch.drop_constraint(op.f("fk_pose_library_map_upload_id_uploads"), type_="foreignkey")
        batch.drop_column("map_upload_id")
    with op.batch_alter_table("projects") as batch:
        batch.drop_constraint(op.f("fk_projects_subject_upload_id_uploads"), type_="foreignkey")
        batch.drop_column("subject_upload_id")
    op.drop_table("uploads")


# --- data ---------------------------------------------------------------------------------------
def _uploads_dir() -> Path:
    config = op.get_context().config
    given = config.attributes.get("uploads_dir") if config is not None else None
    if given is not None:
        return Path(given)
    from posegen.config import load_settings

    return load_settings().effective_uploads_dir


def _relpath(user_id: int, sha: str, content_type: str) -> str:
    return f"{user_id}/{sha[:2]}/{sha}.{BY_TYPE[content_type]}"


def _adopt_files(root: Path) -> None:
    conn = op.get_bind()
    admin = conn.execute(
        sa.select(sa.func.min(users.c.id)).where(users.c.role == "admin")
    ).scalar_one_or_none()
    for project_id, user_id, url in conn.execute(
        sa.select(projects.c.id, projects.c.user_id, projects.c.subject_image_url).where(
            projects.c.subject_image_url.like("/uploads/%")
        )
    ).all():
        upload_id = _adopt(conn, root, url, user_id)
        conn.execute(
            projects.update()
            .where(projects.c.id == project_id)
            .values(subject_image_url=None, subject_upload_id=upload_id)
        )
    for pose_id, url in conn.execute(
        sa.select(poses.c.id, poses.c.controlnet_map_url).where(
            poses.c.controlnet_map_url.like("/uploads/%")
        )
    ).all():
        upload_id = _adopt(conn, root, url, admin) if admin is not None else None
        if upload_id is not None:
            conn.execute(
                poses.update()
                .where(poses.c.id == pose_id)
                .values(controlnet_map_url=None, map_upload_id=upload_id)
            )


def _adopt(conn: Any, root: Path, url: str, owner: int) -> int | None:
    """An uploads row (owned by ``owner``) for the file ``url`` names, or None if unusable."""
    data = _read_inside(root, url)
    if data is None:
        log.warning("upload %s is missing or outside the uploads folder; not adopted", url)
        return None
    try:
        with Image.open(io.BytesIO(data)) as img:
            kind, size = img.format, img.size
    except Exception:  # any unreadable file: it could never have been used
        kind, size = None, (0, 0)
    if kind not in EXTENSIONS:
        log.warning("upload %s is not a PNG, JPEG or WebP image; not adopted", url)
        return None
    content_type, _ext = EXTENSIONS[kind]
    sha = hashlib.sha256(data).hexdigest()
    existing = conn.execute(
        sa.select(uploads.c.id).where(uploads.c.user_id == owner, uploads.c.sha256 == sha)
    ).scalar_one_or_none()
    if existing is not None:
        return int(existing)
    _write(root / _relpath(owner, sha, content_type), data)
    return int(
        conn.execute(
            uploads.insert()
            .values(
                user_id=owner,
                sha256=sha,
                bytes=len(data),
                width=size[0],
                height=size[1],
                content_type=content_type,
                created_at=dt.datetime.now(dt.UTC).replace(
                    tzinfo=None if conn.dialect.name == "sqlite" else dt.UTC
                ),
            )
            .returning(uploads.c.id)
        ).scalar_one()
    )


def _read_inside(root: Path, url: str) -> bytes | None:
    rel = PurePosixPath(url.removeprefix("/uploads/"))
    if rel.is_absolute() or ".." in rel.parts or "\x00" in url:
        return None
    try:
        real_root = root.resolve(strict=True)
        real = (real_root / rel).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if not real.is_relative_to(real_root) or not real.is_file():
        return None
    return real.read_bytes()


def _write(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".incoming-")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
