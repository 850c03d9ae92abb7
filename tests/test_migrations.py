"""Migrations: head equals the models on both engines, and every revision downgrades."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.db.models import REQUIRED_INDEXES, Base, in_models


def _diff(engine):
    with engine.connect() as conn:
        ctx = MigrationContext.configure(
            conn, opts={"compare_type": True, "include_object": in_models}
        )
        return compare_metadata(ctx, Base.metadata)


def _indexes(engine):
    insp = inspect(engine)
    return {
        t: sorted(i["name"] for i in insp.get_indexes(t)) for t in sorted(insp.get_table_names())
    }


def test_upgrade_head_matches_models_then_round_trips(empty_db_url):
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine)
        assert migrate.current(engine) == migrate.head_revision()
        assert _diff(engine) == []
        names = {n for idx in _indexes(engine).values() for n in idx}
        assert {"ix_pose_generations_claim", "ix_pose_generations_recovery"} <= names
        before = _indexes(engine)

        migrate.downgrade(engine, "0001")
        names = {n for idx in _indexes(engine).values() for n in idx}
        assert "ix_pose_generations_recovery" not in names

        migrate.downgrade(engine, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}

        migrate.upgrade(engine)
        assert _diff(engine) == []
        assert _indexes(engine) == before
    finally:
        engine.dispose()


def test_live_state_indexes_are_partial(db_url):
    engine = make_engine(load_settings(database_url=db_url))
    try:
        with engine.connect() as conn:
            if engine.dialect.name == "postgresql":
                rows = dict(
                    conn.exec_driver_sql(
                        "SELECT indexname, indexdef FROM pg_indexes "
                        "WHERE tablename = 'pose_generations'"
                    ).all()
                )
            else:
                rows = dict(
                    conn.exec_driver_sql(
                        "SELECT name, sql FROM sqlite_master WHERE type = 'index' "
                        "AND tbl_name = 'pose_generations' AND sql IS NOT NULL"
                    ).all()
                )
        assert "WHERE" in rows["ix_pose_generations_recovery"]
        assert "processing" in rows["ix_pose_generations_recovery"]
        assert "pending" in rows["ix_pose_generations_claim"]
        queue_indexes = {i for i, t in REQUIRED_INDEXES.items() if t == "pose_generations"}
        assert queue_indexes - set(rows) <= {
            "ix_user_generation_stats_top",
            "uq_generated_poses_generation_id_variation_key",
            "ix_generation_events_generation_id_id",
        }
    finally:
        engine.dispose()


def test_unknown_revision_is_a_clear_error(engine):
    import pytest

    from posegen.exceptions import MigrationError

    with pytest.raises(MigrationError, match="nope"):
        migrate.downgrade(engine, "nope")


def test_revisions_form_one_linear_chain():
    """Parallel work must be rebased onto the current head before it lands (one head, no forks)."""
    from alembic.script import ScriptDirectory

    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert script.get_heads() == [migrate.head_revision()]
    revisions = list(script.walk_revisions())
    assert len(script.get_bases()) == 1
    for rev in revisions:
        assert not isinstance(rev.down_revision, tuple | list), f"{rev.revision} is a merge point"
        assert len(rev.nextrev) <= 1, f"{rev.revision} has several children: {rev.nextrev}"
