"""The community revision on a database that already holds poses (both engines): rows and ids
survive the SQLite rebuild (a deleted pose's id is not handed out again), the CHECK keeps an
owned pose private, and the downgrade gives back the table as it was."""

from __future__ import annotations

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine

REVISION = "l_community"
BEFORE = str(
    ScriptDirectory.from_config(migrate.alembic_config()).get_revision(REVISION).down_revision
)
STAMP = "'2026-01-01 00:00:00.000000'"


def _pose(conn, slug: str, owner: str = "") -> int:
    columns = "slug, name, description, category_id, tags, keypoints, is_public, created_at"
    values = f":slug, 'n', '', 1, '[]', '[[0.5, 0.5]]', {{public}}, {STAMP}"
    public = "true"
    if owner:
        columns += ", owner_user_id"
        values += ", 1"
        public = "true" if owner == "public" else "false"
    return int(
        conn.execute(
            text(
                f"INSERT INTO pose_library ({columns}) VALUES ({values.format(public=public)}) "
                "RETURNING id"
            ),
            {"slug": slug},
        ).scalar_one()
    )


def test_poses_survive_upgrade_and_downgrade(empty_db_url: str) -> None:
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine, BEFORE)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, name, email, role, created_at) VALUES "
                    f"(1, 'u', 'u@x', 'user', {STAMP})"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO pose_categories (id, slug, name, description, sort_order) "
                    "VALUES (1, 'c', 'C', '', 0)"
                )
            )
            kept = _pose(conn, "kept")
            gone = _pose(conn, "gone")
            conn.execute(text("DELETE FROM pose_library WHERE id = :i"), {"i": gone})
        before = {c["name"] for c in inspect(engine).get_columns("pose_library")}

        migrate.upgrade(engine, REVISION)
        with engine.begin() as conn:
            assert conn.execute(text("SELECT id, owner_user_id FROM pose_library")).all() == [
                (kept, None)
            ]
            assert _pose(conn, "new") > gone  # the deleted id stays retired
            assert _pose(conn, "mine", owner="private") > gone
        with pytest.raises(IntegrityError), engine.begin() as conn:
            _pose(conn, "leak", owner="public")  # an owned pose is never public

        migrate.downgrade(engine, BEFORE)
        assert {c["name"] for c in inspect(engine).get_columns("pose_library")} == before
        with engine.connect() as conn:
            slugs = conn.execute(text("SELECT slug FROM pose_library ORDER BY id")).scalars()
            assert list(slugs) == ["kept", "new", "mine"]
        migrate.upgrade(engine)
    finally:
        engine.dispose()
