"""Migration d_poseschema: stored keypoints become the one pose shape, and back, on both engines.

The rows it writes must be exactly what the application stores for the same input today
(``posegen.pose.pose_json``), so a migrated row and a freshly written one cannot differ.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa

from posegen.config import load_settings
from posegen.db import migrate
from posegen.db.engine import make_engine
from posegen.library import builtin_library
from posegen.pose import pose_json

_, BUILTIN = builtin_library()
NEUTRAL = [None if p is None else p[:2] for p in BUILTIN[0].keypoints["people"][0]["body"]]
PORTRAIT: list[Any] = [[0.5, 0.3], [0.5, 0.45], [0.4, 0.46], *([None] * 15)]
HALF: list[Any] = [*PORTRAIT[:8], [0.45, 0.9], None, None, [0.55, 0.9], *([None] * 6)]
WITH_CONFIDENCE: list[Any] = [[0.5, 0.3, 0.8], [0.5, 0.45, 0.0], *([[0.4, 0.5, 1]] * 16)]
LEGACY = {
    "full": NEUTRAL,
    "portrait": PORTRAIT,
    "half": HALF,
    "two-people": [NEUTRAL, PORTRAIT],
    "confidence": WITH_CONFIDENCE,
    "second-misses-nose": [NEUTRAL, [None, *PORTRAIT[1:]]],
    "first-misses-nose": [[None, *PORTRAIT[1:]], NEUTRAL],
}
#: Rows the migration does not understand stay as they are (the application reports them).
UNREADABLE = {"empty-person": [[], NEUTRAL], "short": [[0.5, 0.5]] * 5, "text": ["a"] * 18}

cats = sa.table(
    "pose_categories",
    sa.column("id"),
    sa.column("slug"),
    sa.column("name"),
    sa.column("description"),
    sa.column("sort_order"),
)
poses = sa.table(
    "pose_library",
    *(sa.column(c) for c in ("id", "slug", "name", "description", "category_id")),
    sa.column("tags", sa.JSON),
    sa.column("keypoints", sa.JSON),
    sa.column("controlnet_map_url"),
    sa.column("is_public"),
    sa.column("created_at"),
)


def _rows(engine: sa.Engine) -> dict[str, Any]:
    with engine.connect() as conn:
        return dict(conn.execute(sa.select(poses.c.slug, poses.c.keypoints)).all())


def test_legacy_rows_become_poses_and_come_back(empty_db_url: str) -> None:
    engine = make_engine(load_settings(database_url=empty_db_url))
    try:
        migrate.upgrade(engine, "0002")
        now = dt.datetime.now(dt.UTC)
        with engine.begin() as conn:
            conn.execute(
                sa.insert(cats).values(id=1, slug="c", name="C", description="", sort_order=0)
            )
            for slug, keypoints in {**LEGACY, **UNREADABLE}.items():
                conn.execute(
                    sa.insert(poses).values(
                        slug=slug,
                        name=slug,
                        description="",
                        category_id=1,
                        tags=[],
                        keypoints=keypoints,
                        is_public=True,
                        created_at=now,
                    )
                )
            conn.execute(
                sa.insert(poses).values(
                    slug="map-only",
                    name="m",
                    description="",
                    category_id=1,
                    tags=[],
                    keypoints=None,
                    controlnet_map_url="/uploads/m.png",
                    is_public=True,
                    created_at=now,
                )
            )
        migrate.upgrade(engine, "d_poseschema")
        rows = _rows(engine)
        assert rows["map-only"] is None
        for slug, keypoints in UNREADABLE.items():
            assert rows[slug] == keypoints, slug
        for slug, keypoints in LEGACY.items():
            assert rows[slug] == pose_json(keypoints), slug
        assert rows["full"]["framing"] == "full_body"
        assert rows["half"]["framing"] == "half_body"
        assert rows["portrait"]["framing"] == "portrait"
        assert rows["full"]["canvas"] == [512.0, 512.0]
        assert len(rows["two-people"]["people"]) == 2
        assert rows["confidence"]["people"][0]["body"][1] is None  # confidence 0 = missing

        migrate.downgrade(engine, "0002")
        back = _rows(engine)
        assert back["full"] == NEUTRAL and back["portrait"] == PORTRAIT and back["half"] == HALF
        assert back["two-people"] == [NEUTRAL, PORTRAIT]
        assert back["map-only"] is None
        assert back["confidence"][0] == [0.5, 0.3, 0.8] and back["confidence"][1] is None
        migrate.upgrade(engine)
        assert _rows(engine) == rows
    finally:
        engine.dispose()
