"""The built-in pose library: its data, and seeding on both engines."""

from __future__ import annotations

import io
from collections import Counter

from PIL import Image
from sqlalchemy import Engine, func, select, update

from posegen.config import Settings
from posegen.controlnet import MapCache
from posegen.db.models import PoseCategory, PoseLibrary
from posegen.library import builtin_library, pose_map_source, seed_library, sync_library


def test_the_library_is_big_and_varied_enough() -> None:
    cats, poses = builtin_library()
    per_category = Counter(p.category for p in poses)
    assert len(poses) >= 120 and len(cats) >= 10
    assert all(per_category[c.slug] >= 5 for c in cats)
    assert len({p.slug for p in poses}) == len(poses)
    slugs = {c.slug for c in cats}
    assert any(c.parent for c in cats) and all(c.parent in slugs for c in cats if c.parent)
    assert len({c.sort_order for c in cats}) == len(cats)
    for pose in poses:
        assert pose.name and pose.description and pose.tags
        body = pose.keypoints["people"][0]["body"]
        present = [p for p in body if p is not None]
        assert body[1] is not None, f"{pose.slug}: every pose has a neck"
        assert len(present) >= (8 if pose.category == "portrait" else 10), pose.slug
        assert all(0 <= x <= 1 and 0 <= y <= 1 for x, y, _c in present), pose.slug


def test_every_pose_carries_its_attributes() -> None:
    _cats, poses = builtin_library()
    for pose in poses:
        assert pose.difficulty in ("beginner", "intermediate", "advanced"), pose.slug
        assert pose.suitability in ("any", "female", "male"), pose.slug
        assert isinstance(pose.featured, bool) and isinstance(pose.premium, bool)
        assert (pose.source, pose.licence, pose.author) == (
            "posegen built-in",
            "CC0-1.0",
            "posegen",
        )
        # The entry's own framing key (kept in ``extra``) agrees with the keypoints'.
        assert pose.extra["framing"] == pose.keypoints["framing"], pose.slug
    for flagged in (sum(p.featured for p in poses), sum(p.premium for p in poses)):
        assert 3 <= flagged <= len(poses) // 4
    assert {p.difficulty for p in poses} == {"beginner", "intermediate", "advanced"}
    assert {p.keypoints["framing"] for p in poses} == {"full_body", "half_body", "portrait"}


def test_seed_is_idempotent(engine: Engine) -> None:
    cats, poses = builtin_library()
    assert seed_library(engine) == (len(cats), len(poses))
    assert seed_library(engine) == (len(cats), len(poses))
    assert sync_library(engine).created == 0
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(PoseCategory)).scalar_one() == len(
            cats
        )
        rows = conn.execute(select(PoseLibrary)).mappings().all()
    assert len(rows) == len(poses)
    by_slug = {r["slug"]: r for r in rows}
    assert by_slug["standing-neutral"]["keypoints"] == poses[0].keypoints
    assert all(r["is_public"] and r["tags"] for r in rows)


def test_seed_repairs_edited_built_in_rows(engine: Engine) -> None:
    seed_library(engine)
    with engine.begin() as conn:
        conn.execute(
            update(PoseLibrary).where(PoseLibrary.slug == "hands-wave").values(name="edited")
        )
    report = sync_library(engine)
    assert (report.created, report.updated) == (0, 1)
    with engine.connect() as conn:
        name = conn.execute(
            select(PoseLibrary.name).where(PoseLibrary.slug == "hands-wave")
        ).scalar_one()
    assert name == "Waving"


def test_seeded_poses_render_offline_through_the_cache(engine: Engine, settings: Settings) -> None:
    seed_library(engine)
    with engine.connect() as conn:
        rows = conn.execute(select(PoseLibrary).limit(3)).all()
    cache = MapCache(settings)
    try:
        for row in rows:
            result = cache.load(pose_map_source(row), (512, 512))
            assert result is not None and result.outcome == "miss"
            img = Image.open(io.BytesIO(result.png))
            assert img.size == (512, 512) and img.getbbox() is not None
    finally:
        cache.close()
    assert cache.stats()["origin_fetches"] == 0
