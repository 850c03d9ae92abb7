"""Migration k_library on rows written before it, on both engines: ``framing`` is read from the
stored pose JSON, existing poses are found by the text search (SQLite: the FTS table is built
from them), and the downgrade keeps them."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.library import query

cats = sa.table(
    "pose_categories", *(sa.column(c) for c in ("id", "slug", "name", "description", "sort_order"))
)
poses = sa.table(
    "pose_library",
    *(sa.column(c) for c in ("id", "slug", "name", "description", "category_id", "is_public")),
    sa.column("tags", sa.JSON),
    sa.column("keypoints", sa.JSON),
    sa.column("created_at", sa.DateTime(timezone=True)),
)
BODY = [[0.5, 0.3, 1.0], [0.5, 0.45, 1.0], *([None] * 16)]


def test_k_library_on_rows_written_before_it(empty_db_url: str) -> None:
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine, "j_credits")
        now = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(cats).values(id=1, slug="c", name="C", description="", sort_order=0)
            )
            for i, framing in enumerate(("portrait", "half_body", "full_body"), start=1):
                conn.execute(
                    sa.insert(poses).values(
                        id=i,
                        slug=f"old-{i}",
                        name=f"Old {framing} pelican",
                        description="",
                        category_id=1,
                        is_public=True,
                        tags=["legacy"],
                        keypoints={
                            "canvas": [512, 512],
                            "framing": framing,
                            "people": [{"body": BODY}],
                        },
                        created_at=now,
                    )
                )
        migrate.upgrade(engine)
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text("SELECT id, framing, popularity, difficulty FROM pose_library ORDER BY id")
            ).all()
        assert [tuple(r) for r in rows] == [
            (1, "portrait", 0, "beginner"),
            (2, "half_body", 0, "beginner"),
            (3, "full_body", 0, "beginner"),
        ]
        found = query.list_poses(
            engine,
            query.PoseFilters(q="pelicans", tags=("legacy",)),
            viewer_id=None,
            include_private=False,
        )
        assert sorted(p.id for p in found.items) == [1, 2, 3]
        migrate.downgrade(engine, "j_credits")
        with engine.connect() as conn:
            assert conn.execute(sa.text("SELECT count(*) FROM pose_library")).scalar_one() == 3
        migrate.upgrade(engine)
    finally:
        engine.dispose()
