"""The built-in pose library: categories and poses with hand-authored COCO-18 keypoints,
shipped in the package (``builtin_poses.json``) and loaded idempotently into the database.
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
from posegen.library import attributes
from posegen.pose import pose_json

log = logging.getLogger(__name__)

DATA_FILE = "builtin_poses.json"
#: Provenance of a built-in pose that does not say otherwise.
BUILTIN_SOURCE = "builtin"
BUILTIN_LICENCE = "MIT"
BUILTIN_AUTHOR = "posegen"


@dataclass(frozen=True)
class BuiltinCategory:
    slug: str
    name: str
    description: str
    #: The parent category's slug; None: a root.
    parent: str | None = None
    #: Order among siblings; None: the category's position in the file.
    sort_order: int | None = None


@dataclass(frozen=True)
class BuiltinPose:
    slug: str
    name: str
    category: str
    description: str
    tags: tuple[str, ...]
    #: The canonical pose JSON (:mod:`posegen.pose`): canvas it was authored on, framing, points.
    keypoints: dict[str, Any]
    #: Discovery attributes (:mod:`posegen.library.attributes`); the framing is the keypoints'.
    difficulty: str = "beginner"
    suitability: str = "any"
    featured: bool = False
    premium: bool = False
    source: str | None = BUILTIN_SOURCE
    licence: str | None = BUILTIN_LICENCE
    author: str | None = BUILTIN_AUTHOR


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
    return parse_library(raw)


def parse_library(raw: dict[str, Any]) -> tuple[list[BuiltinCategory], list[BuiltinPose]]:
    """Categories and poses from the built-in file's shape, checked. Optional keys: per category
    ``parent`` (a category slug) and ``sort_order``; per pose ``difficulty``, ``suitability``,
    ``featured``, ``premium``, ``source``, ``licence``, ``author`` (defaults when absent)."""
    categories = [
        BuiltinCategory(
            c["slug"], c["name"], c["description"], c.get("parent"), c.get("sort_order")
        )
        for c in raw["categories"]
    ]
    _check_tree(categories)
    known = {c.slug for c in categories}
    poses = []
    for p in raw["poses"]:
        if p["category"] not in known:
            raise InvalidInput(f"pose {p['slug']} names unknown category {p['category']}")
        extra = {k: p[k] for k in _POSE_KEYS if p.get(k) is not None}
        try:
            attributes.check(extra)
        except InvalidInput as exc:
            raise InvalidInput(f"pose {p['slug']}: {exc.message}") from exc
        poses.append(
            BuiltinPose(
                p["slug"],
                p["name"],
                p["category"],
                p["description"],
                tuple(p["tags"]),
                pose_json(p["keypoints"]),
                **extra,
            )
        )
    return categories, poses


_POSE_KEYS = ("difficulty", "suitability", "featured", "premium", "source", "licence", "author")


def _check_tree(categories: list[BuiltinCategory]) -> None:
    parents = {c.slug: c.parent for c in categories}
    for c in categories:
        if c.sort_order is not None and (
            isinstance(c.sort_order, bool) or not isinstance(c.sort_order, int)
        ):
            raise InvalidInput(f"category {c.slug}: sort_order must be a whole number")
        seen = {c.slug}
        parent = c.parent
        while parent is not None:
            if parent not in parents:
                raise InvalidInput(f"category {c.slug} names unknown parent {parent}")
            if parent in seen:
                raise InvalidInput(f"category {c.slug} is its own ancestor")
            seen.add(parent)
            parent = parents[parent]


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
            values: dict[str, Any] = {
                "name": cat.name,
                "description": cat.description,
                "sort_order": order if cat.sort_order is None else cat.sort_order,
            }
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
        for cat in categories:
            # Parents once every category has an id (a parent may come later in the file).
            parent_id = None if cat.parent is None else cat_ids[cat.parent]
            row = existing_cats.get(cat.slug)
            if row is None or row["parent_id"] != parent_id:
                conn.execute(
                    update(PoseCategory)
                    .where(PoseCategory.id == cat_ids[cat.slug])
                    .values(parent_id=parent_id)
                )
                if row is not None:
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
                "framing": pose.keypoints["framing"],
                "difficulty": pose.difficulty,
                "suitability": pose.suitability,
                "featured": pose.featured,
                "premium": pose.premium,
                "source": pose.source,
                "licence": pose.licence,
                "author": pose.author,
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
    "load_pose_map",
    "parse_library",
    "pose_map_source",
    "seed_library",
    "sync_library",
]
