"""A deleted row's id is never handed out again (SQLite AUTOINCREMENT; PostgreSQL sequences), and
the SQLite rebuild that adds AUTOINCREMENT keeps every row and every reference."""

from __future__ import annotations

from pathlib import Path

from alembic.script import ScriptDirectory
from sqlalchemy import Engine, delete, func, select, text

from posegen import accounts, failures, projects
from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import ApiKey, Base, PoseGeneration, Project, User

#: Every table whose model asks SQLite for AUTOINCREMENT.
ID_TABLES = [
    t.name for t in Base.metadata.sorted_tables if t.dialect_options["sqlite"]["autoincrement"]
]


def test_deleted_newest_ids_are_not_reused(engine: Engine) -> None:
    first = accounts.create_user(engine, "A", "a@example.com").account.id
    newest = accounts.create_user(engine, "B", "b@example.com").account.id
    project = projects.create(engine, first, "p1", None).id
    with engine.begin() as conn:
        conn.execute(delete(User).where(User.id == newest))
        conn.execute(delete(Project).where(Project.id == project))
    again = accounts.create_user(engine, "C", "c@example.com").account.id
    assert again > newest
    assert projects.create(engine, first, "p2", None).id > project


#: The revision c_hardening follows (the rebuild runs on whatever the chain built before it).
BEFORE = str(
    ScriptDirectory.from_config(migrate.alembic_config()).get_revision("c_hardening").down_revision
)


def test_sqlite_rebuild_keeps_rows_and_references(tmp_path: Path) -> None:
    engine = make_engine(load_settings(database_url=f"sqlite:///{tmp_path / 'old.db'}"))
    try:
        migrate.upgrade(engine, BEFORE)
        made = accounts.create_user(engine, "Ada", "ada@example.com")
        other = accounts.create_user(engine, "Bo", "bo@example.com")
        project = projects.create(engine, made.account.id, "kept", None)
        with engine.begin() as conn:  # delete the newest user: its id must not come back
            conn.execute(delete(User).where(User.id == other.account.id))
            conn.execute(  # a failure recorded before: raw text in error_message
                text(
                    "INSERT INTO pose_generations (user_id, project_id, type, selected_pose_ids, "
                    "variations, total_expected_poses, width, height, status, priority, "
                    "poses_completed, poses_failed, attempts, max_attempts, run_after, "
                    "lease_token, cancel_requested, created_at, error_kind, error_message) "
                    "VALUES (:u, :p, 'library', '[1]', 1, 1, 512, 512, 'failed', 0, 0, 0, 1, 3, "
                    "'2026-01-01 00:00:00', 1, 0, '2026-01-01 00:00:00', 'blocked-address', "
                    "'host resolved to 10.0.0.7')"
                ),
                {"u": made.account.id, "p": project.id},
            )

        migrate.upgrade(engine)

        assert len(ID_TABLES) >= 10
        with engine.connect() as conn:
            for table in ID_TABLES:
                sql = conn.exec_driver_sql(
                    "SELECT sql FROM sqlite_master WHERE name = ?", (table,)
                ).scalar_one()
                assert "AUTOINCREMENT" in sql, table
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").first() is None
            assert conn.execute(select(func.count()).select_from(ApiKey)).scalar_one() == 1
            failed = conn.execute(
                select(PoseGeneration.error_message, PoseGeneration.error_detail)
            ).one()
            assert failed == (failures.SENTENCES["blocked-address"], "host resolved to 10.0.0.7")
            indexes = conn.execute(
                text("SELECT count(*) FROM sqlite_master WHERE type = 'index'")
            ).scalar_one()
        assert accounts.authenticate(engine, made.api_key).id == made.account.id
        assert projects.get(engine, project.id, made.account.id).name == "kept"
        # AUTOINCREMENT only remembers ids from its own time; the rebuild seeds it from max(id),
        # so the next id is past every row that exists now.
        assert accounts.create_user(engine, "Cy", "cy@example.com").account.id > made.account.id

        migrate.downgrade(engine, BEFORE)
        with engine.connect() as conn:
            message = conn.exec_driver_sql("SELECT error_message FROM pose_generations")
            assert message.scalar_one() == "host resolved to 10.0.0.7"
            sql = conn.exec_driver_sql("SELECT sql FROM sqlite_master WHERE name = 'users'")
            assert "AUTOINCREMENT" not in sql.scalar_one()
            assert conn.exec_driver_sql("PRAGMA foreign_key_check").first() is None
        migrate.upgrade(engine)
        with engine.connect() as conn:
            after = conn.execute(
                text("SELECT count(*) FROM sqlite_master WHERE type = 'index'")
            ).scalar_one()
        assert after == indexes
        assert projects.get(engine, project.id, made.account.id).name == "kept"
    finally:
        engine.dispose()
