"""The pose library: categories and poses with COCO-18 keypoints, the built-in set shipped in
the package (``builtin_poses.json``, generated from joint-angle specs by
:mod:`posegen.library.author`) and loaded idempotently into the database, and operators' own
sets loaded the same way (:mod:`posegen.library.importer`); users' private poses live in the
same table (:mod:`posegen.library.private`). Each pose records the canvas it was
authored on (512 x 512) and its framing, so it is drawn undistorted at any output size. Maps are
rendered locally, so the library works offline."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import IntegrityError

from posegen.controlnet.cache import MapCache, MapResult
from posegen.controlnet.sources import MapSource
from posegen.db.engine import write_transaction
from posegen.db.models import PoseCategory, PoseLibrary
from posegen.exceptions import FetchError, InvalidInput
from posegen.library import attributes
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
#: The keys of a pose entry the library itself reads (the attribute keys, ``ATTRIBUTE_KEYS``,
#: become fields); any others pass through in ``extra``.
POSE_KEYS = ("slug", "name", "category", "description", "tags", "keypoints")
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
    #: Every other key of the entry, as given.
    extra: Mapping[str, Any] = field(default_factory=dict)


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
    unchanged: int = 0


def category_from_json(raw: Mapping[str, Any]) -> BuiltinCategory:
    sort_order = raw.get("sort_order")
    return BuiltinCategory(
        raw["slug"], raw["name"], raw.get("description", ""), raw.get("parent"), sort_order
    )


def pose_from_json(raw: Mapping[str, Any]) -> BuiltinPose:
    """A pose entry (``builtin_poses.json`` shape); its keypoints in the canonical form."""
    return BuiltinPose(
        raw["slug"],
        raw["name"],
        raw["category"],
        raw.get("description", ""),
        tuple(raw.get("tags", ())),
        pose_json(raw["keypoints"]),
        **_attributes(raw),
        extra={k: v for k, v in raw.items() if k not in POSE_KEYS and k not in ATTRIBUTE_KEYS},
    )


def _attributes(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The entry's discovery attributes that are given (not null), checked."""
    found = {k: raw[k] for k in ATTRIBUTE_KEYS if raw.get(k) is not None}
    try:
        attributes.check(found)
    except InvalidInput as exc:
        raise InvalidInput(f"pose {raw.get('slug')}: {exc.message}") from exc
    return found


def builtin_library() -> tuple[list[BuiltinCategory], list[BuiltinPose]]:
    """The shipped categories and poses, checked (poses parse, categories exist)."""
    raw = json.loads(resources.files(__package__).joinpath(DATA_FILE).read_text("utf-8"))
    return parse_library(raw)


def parse_library(raw: dict[str, Any]) -> tuple[list[BuiltinCategory], list[BuiltinPose]]:
    """Categories and poses from the built-in file's shape, checked. Optional keys: per category
    ``parent`` (a category slug) and ``sort_order``; per pose ``difficulty``, ``suitability``,
    ``featured``, ``premium``, ``source``, ``licence``, ``author`` (defaults when absent)."""
    categories = [category_from_json(c) for c in raw["categories"]]
    _check_tree(categories)
    known = {c.slug for c in categories}
    poses = []
    for p in raw["poses"]:
        if p["category"] not in known:
            raise InvalidInput(f"pose {p['slug']} names unknown category {p['category']}")
        poses.append(pose_from_json(p))
    return categories, poses


#: The optional attribute keys of a pose entry, read into :class:`BuiltinPose` fields.
ATTRIBUTE_KEYS = (
    "difficulty",
    "suitability",
    "featured",
    "premium",
    "source",
    "licence",
    "author",
)


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
    categories, poses = builtin_library()
    # Built-in categories keep the order they are listed in when the file gives none.
    categories = [
        c if c.sort_order is not None else BuiltinCategory(c.slug, c.name, c.description,
                                                            c.parent, i)
        for i, c in enumerate(categories)
    ]  # fmt: skip
    try:
        report = _sync(engine, categories, poses)
    except IntegrityError:
        # Another process seeded the same rows between our read and our insert; now they exist.
        report = _sync(engine, categories, poses)
    if report.created or report.updated:
        log.info(
            "pose library seeded",
            extra={"rows_created": report.created, "rows_updated": report.updated},
        )
    return report


def _sync(
    engine: Engine, categories: Sequence[BuiltinCategory], poses: Sequence[BuiltinPose]
) -> SyncReport:
    with write_transaction(engine) as conn:
        return upsert(conn, categories, poses)


def upsert(
    conn: Connection, categories: Sequence[BuiltinCategory], poses: Sequence[BuiltinPose]
) -> SyncReport:
    """Create or refresh ``categories`` and ``poses`` by slug in the caller's transaction;
    rows already equal are left alone (counted as unchanged). A pose may name a category of
    ``categories`` or one already in the database; any other raises :class:`InvalidInput`
    (``unknown-category``) and the caller's transaction is rolled back."""
    created = updated = unchanged = 0
    existing_cats = {
        row.slug: row for row in conn.execute(select(PoseCategory.__table__)).mappings()
    }
    cat_ids: dict[str, int] = {slug: row["id"] for slug, row in existing_cats.items()}
    for cat in categories:
        values: dict[str, Any] = {"name": cat.name, "description": cat.description}
        if cat.sort_order is not None:
            values["sort_order"] = cat.sort_order
        row = existing_cats.get(cat.slug)
        if row is None:
            values.setdefault("sort_order", 1000 + len(cat_ids))
            cat_ids[cat.slug] = conn.execute(
                insert(PoseCategory).values(slug=cat.slug, **values).returning(PoseCategory.id)
            ).scalar_one()
            created += 1
        elif any(row[k] != v for k, v in values.items()):
            conn.execute(update(PoseCategory).where(PoseCategory.id == row["id"]).values(**values))
            updated += 1
        else:
            unchanged += 1
    for cat in categories:
        # Parents once every category has an id (a parent may come later in the file).
        parent_id = None if cat.parent is None else cat_ids.get(cat.parent)
        if cat.parent is not None and parent_id is None:
            raise InvalidInput(
                f"category {cat.slug}: no parent category {cat.parent!r}", kind="unknown-category"
            )
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
        if pose.category not in cat_ids:
            raise InvalidInput(
                f"pose {pose.slug}: no category {pose.category!r} (define it in the file or "
                "create it first)",
                kind="unknown-category",
            )
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
            conn.execute(update(PoseLibrary).where(PoseLibrary.id == row["id"]).values(**values))
            updated += 1
        else:
            unchanged += 1
    return SyncReport(len(categories), len(poses), created, updated, unchanged)


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
    "category_from_json",
    "create_private_pose",
    "delete_private_pose",
    "get_private_pose",
    "list_private_poses",
    "load_pose_map",
    "parse_library",
    "pose_from_json",
    "pose_map_source",
    "promote_private_pose",
    "seed_library",
    "sync_library",
    "update_private_pose",
    "upsert",
]
