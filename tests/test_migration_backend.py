"""The backend-binding revision on a database that already holds generations: live rows are
bound to the deployment's backend, finished ones keep the default, and it downgrades."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine

REVISION = "e_backend"


def _insert(conn, status: str) -> int:
    return int(
        conn.execute(
            text(
                "INSERT INTO pose_generations (user_id, project_id, type, selected_pose_ids, "
                "variations, total_expected_poses, width, height, status, priority, "
                "poses_completed, poses_failed, attempts, max_attempts, run_after, lease_token, "
                "cancel_requested, created_at) VALUES (1, 1, 'library', '[1]', 1, 1, 512, 512, "
                ":s, 0, 0, 0, 0, 3, '2026-01-01 00:00:00.000000', 0, false, "
                "'2026-01-01 00:00:00.000000') RETURNING id"
            ),
            {"s": status},
        ).scalar_one()
    )


def test_live_rows_are_bound_to_the_deployment_backend(
    empty_db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        # the revision before this one, with generations in every state
        migrate.upgrade(engine, "0002")
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (id, name, email, role, created_at) VALUES "
                    "(1, 'u', 'u@x', 'user', '2026-01-01 00:00:00.000000')"
                )
            )
            conn.execute(
                text(
                    "INSERT INTO projects (id, user_id, name, status, created_at, "
                    "updated_at) VALUES (1, 1, 'p', 'active', "
                    "'2026-01-01 00:00:00.000000', '2026-01-01 00:00:00.000000')"
                )
            )
            ids = {s: _insert(conn, s) for s in ("pending", "processing", "completed")}
        monkeypatch.setenv("POSEGEN_BACKEND", "comfyui")
        migrate.upgrade(engine, REVISION)
        with engine.connect() as conn:
            got = dict(conn.execute(text("SELECT id, backend FROM pose_generations")).all())
        assert got == {
            ids["pending"]: "comfyui",
            ids["processing"]: "comfyui",
            ids["completed"]: "posemap",
        }
        migrate.downgrade(engine, "0002")
        with engine.connect() as conn:
            cols = conn.execute(text("SELECT * FROM pose_generations")).keys()
        assert "backend" not in cols and "model" not in cols
    finally:
        engine.dispose()
