"""The built-in pose library: categories and poses with hand-authored COCO-18 keypoints,
shipped in the package (``builtin_poses.json``) and loaded idempotently into the database; and
users' private poses (:mod:`posegen.library.private`).
Each pose records the canvas it was authored on (512 x 512) and its framing, so it is drawn
undistorted at any output size. Maps are rendered locally, so the library works offline."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any, NamedTuple

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from posegen.controlnet.cache import MapCache, MapResult
from posegen.controlnet.sources import MapSource
from posegen.db.engine import write_transaction
from posegen.db.models import PoseCategory, PoseLibrary
from posegen.exceptions import FetchError, InvalidInput
from posegen.library.private import (
    create_private_pose,
    delete_private_pose,
    get_private_pose,
    list_private_poses,
    promote_private_pose,
    update_private_pose,
)
from posegen.pose import pose_json

log = logging.getLogger(__name__)

DATA_FILE = "builtin_poses.json"


@dataclass(frozen=True)
class BuiltinCategory:
    slug: str
    name: str
    description: str


@dataclass(frozen=True)
class BuiltinPose:
    slug: str
    name: str
    category: str
    description: str
    tags: tuple[str, ...]
    #: The canonical pose JSON (:mod:`posegen.pose`): canvas it was authored on, framing, points.
    keypoints: dict[str, Any]


class SeedCounts(NamedTuple):
    """Built-in categories and poses present after seeding."""

    categories: int
    poses: int


@dataclass(frozen=True)
class SyncReport:
    categories: int
    poses: int
    created: int
    updated: int


def builtin_library() -> tuple[list[BuiltinCategory], list[BuiltinPose]]:
    """The shipped categories and poses, checked (poses parse, categories exist)."""
    raw = json.loads(resources.files(__package__).joinpath(DATA_FILE).read_text("utf-8"))
    categories = [
        BuiltinCategory(c["slug"], c["name"], c["description"]) for c in raw["categories"]
    ]
    known = {c.slug for c in categories}
    poses = []
    for p in raw["poses"]:
        if p["category"] not in known:
            raise InvalidInput(f"pose {p['slug']} names unknown category {p['category']}")
        poses.append(
            BuiltinPose(
                p["slug"],
                p["name"],
                p["category"],
                p["description"],
                tuple(p["tags"]),
                pose_json(p["keypoints"]),
            )
        )
    return categories, poses


def seed_library(engine: Engine) -> SeedCounts:
    """Insert or refresh the built-in library; running it again changes nothing."""
    report = sync_library(engine)
    return SeedCounts(report.categories, report.poses)


def sync_library(engine: Engine) -> SyncReport:
    """Like :func:`seed_library`, and say how many rows were created or updated."""
    try:
        return _sync(engine)
    except IntegrityError:
        # Another process seeded the same rows between our read and our insert; now they exist.
        return _sync(engine)


def _sync(engine: Engine) -> SyncReport:
    categories, poses = builtin_library()
    created = updated = 0
    with write_transaction(engine) as conn:
        existing_cats = {
            row.slug: row for row in conn.execute(select(PoseCategory.__table__)).mappings()
        }
        cat_ids: dict[str, int] = {}
        for order, cat in enumerate(categories):
            values = {"name": cat.name, "description": cat.description, "sort_order": order}
            row = existing_cats.get(cat.slug)
            if row is None:
                cat_ids[cat.slug] = conn.execute(
                    insert(PoseCategory).values(slug=cat.slug, **values).returning(PoseCategory.id)
                ).scalar_one()
                created += 1
            else:
                cat_ids[cat.slug] = row["id"]
                if any(row[k] != v for k, v in values.items()):
                    conn.execute(
                        update(PoseCategory).where(PoseCategory.id == row["id"]).values(**values)
                    )
                    updated += 1
        slugs = [p.slug for p in poses]
        existing = {
            row.slug: row
            for row in conn.execute(
                select(PoseLibrary.__table__).where(PoseLibrary.slug.in_(slugs))
            ).mappings()
        }
        for pose in poses:
            values = {
                "name": pose.name,
                "description": pose.description,
                "category_id": cat_ids[pose.category],
                "tags": list(pose.tags),
                "keypoints": pose.keypoints,
                "is_public": True,
            }
            row = existing.get(pose.slug)
            if row is None:
                conn.execute(insert(PoseLibrary).values(slug=pose.slug, **values))
                created += 1
            elif any(row[k] != v for k, v in values.items()):
                conn.execute(
                    update(PoseLibrary).where(PoseLibrary.id == row["id"]).values(**values)
                )
                updated += 1
    if created or updated:
        log.info("pose library seeded", extra={"rows_created": created, "rows_updated": updated})
    return SyncReport(len(categories), len(poses), created, updated)


def pose_map_source(pose_row: Any) -> MapSource:
    """The map source of a pose (a ``PoseView``/``PoseInfo``, Row or mapping): its stored
    keypoints when present (rendered locally), else its map upload, else its map URL.

    A map upload is read only through ``map_upload_path``, which the loaders fill in only for an
    upload an admin owns; a URL column holding a path (a row written before uploads were owned)
    is never read. Both refusals say the same thing, whoever's file it was.
    """
    keypoints = _field(pose_row, "keypoints")
    if keypoints:
        return MapSource.from_keypoints(keypoints)
    if _field(pose_row, "map_upload_id") is not None:
        path = _field(pose_row, "map_upload_path")
        if not path:
            raise FetchError("the pose's map is not available", kind="map-unavailable")
        return MapSource.from_upload(str(path))
    url = _field(pose_row, "controlnet_map_url")
    if not url:
        raise InvalidInput("the pose has neither keypoints nor a ControlNet map URL")
    source = MapSource.from_url(str(url))
    if source.kind == "upload":
        raise FetchError("the pose's map is not available", kind="map-unavailable")
    return source


def load_pose_map(
    maps: MapCache, pose_row: Any, size: tuple[int, int] | None = None
) -> MapResult | None:
    """:func:`pose_map_source` loaded through ``maps``. A map upload that cannot be read fails
    as ``map-unavailable`` with no detail (its path names the owner and the content hash)."""
    source = pose_map_source(pose_row)
    try:
        return maps.load(source, size)
    except FetchError as exc:
        if source.kind != "upload":
            raise
        log.warning("map upload unreadable", extra={"kind": exc.kind})
        raise FetchError("the pose's map is not available", kind="map-unavailable") from exc


def _field(row: Any, name: str) -> Any:
    if isinstance(row, Mapping):
        return row.get(name)
    mapping = getattr(row, "_mapping", None)  # SQLAlchemy Row
    if mapping is not None:
        return mapping.get(name)
    return getattr(row, name, None)


__all__ = [
    "BuiltinCategory",
    "BuiltinPose",
    "SeedCounts",
    "SyncReport",
    "builtin_library",
    "create_private_pose",
    "delete_private_pose",
    "get_private_pose",
    "list_private_poses",
    "load_pose_map",
    "pose_map_source",
    "promote_private_pose",
    "seed_library",
    "sync_library",
    "update_private_pose",
]
