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
    assert len(poses) >= 24 and len(cats) >= 6
    assert all(per_category[c.slug] >= 3 for c in cats)
    assert len({p.slug for p in poses}) == len(poses)
    for pose in poses:
        assert pose.name and pose.description and pose.tags
        body = pose.keypoints["people"][0]["body"]
        present = [p for p in body if p is not None]
        assert body[1] is not None, f"{pose.slug}: every pose has a neck"
        assert len(present) >= (8 if pose.category == "portrait" else 10), pose.slug
        assert all(-0.05 <= x <= 1.05 and -0.05 <= y <= 1.2 for x, y, _c in present), pose.slug


def test_keypoints_are_plausible_bodies() -> None:
    """Shoulders beside the neck, the head above it, full-body feet below the hips."""
    _cats, poses = builtin_library()
    for pose in poses:
        kp = pose.keypoints["people"][0]["body"]
        neck = kp[1]
        assert neck is not None
        if kp[0] is not None:
            assert kp[0][1] < neck[1], f"{pose.slug}: nose above neck"
        for shoulder in (kp[2], kp[5]):
            if shoulder is not None:
                assert abs(shoulder[1] - neck[1]) < 0.05, pose.slug
        for hip, ankle in ((kp[8], kp[10]), (kp[11], kp[13])):
            if hip is not None:
                assert hip[1] > neck[1], f"{pose.slug}: hips below the neck"
            if hip is not None and ankle is not None and "floor" not in pose.tags:
                assert ankle[1] > hip[1] - 0.05 or pose.category == "dynamic", pose.slug


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
