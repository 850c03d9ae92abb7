"""``posegen library import``: load operators' keypoint poses into the library.

A source is one JSON file or a folder of them (``*.json``, sorted by name, not recursive). A
file holds one pose entry, a list of pose entries, or ``{"categories": [...], "poses": [...]}``
(the shape of ``builtin_poses.json``, which therefore imports as it is). A pose entry is
``slug``, ``name``, ``category``, ``keypoints`` (any shape :mod:`posegen.pose` accepts) and
optionally ``description``, ``tags`` and the attributes of
:data:`posegen.library.pose_specs.ATTRIBUTES`.

Every entry is checked before anything is written: the pose schema, the anatomical plausibility
checks of :mod:`posegen.library.plausibility`, its fields. A file with any bad entry is refused
whole (nothing of it is written) and each bad entry is named with its reason; good files are
written each in one transaction through the same upsert as the built-in library, so importing
the same files again changes nothing (created / updated / unchanged are counted by slug).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError

from posegen.db.engine import write_transaction
from posegen.exceptions import InvalidInput
from posegen.library import (
    POSE_KEYS,
    BuiltinCategory,
    BuiltinPose,
    category_from_json,
    pose_from_json,
    upsert,
)
from posegen.library.attributes import DIFFICULTIES, SUITABILITIES
from posegen.library.plausibility import problems
from posegen.library.pose_specs import ATTRIBUTES
from posegen.pose import FRAMINGS

SLUG_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
#: Keys a file's top-level object may have.
FILE_KEYS = frozenset({"version", "generated_by", "categories", "poses"})
CATEGORY_KEYS = frozenset({"slug", "name", "description", "parent", "sort_order"})


@dataclass
class FileResult:
    path: str
    imported: bool = False
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    poses: int = 0
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "file": self.path,
            "status": "imported" if self.imported else "refused",
            "poses": self.poses,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "errors": self.errors,
        }


@dataclass
class ImportReport:
    files: list[FileResult]

    @property
    def ok(self) -> bool:
        return all(f.imported for f in self.files)

    def total(self, attr: str) -> int:
        return sum(int(getattr(f, attr)) for f in self.files)


def source_files(source: Path) -> list[Path]:
    if source.is_dir():
        files = sorted(p for p in source.iterdir() if p.suffix == ".json" and p.is_file())
        if not files:
            raise InvalidInput(f"{source}: no .json files in this folder")
        return files
    if not source.is_file():
        raise InvalidInput(f"{source}: no such file or folder")
    return [source]


def import_library(engine: Engine, source: Path) -> ImportReport:
    """Check and import every file of ``source``; see the module doc."""
    report = ImportReport([])
    for path in source_files(source):
        result = FileResult(str(path))
        report.files.append(result)
        try:
            categories, poses = read_file(path, result.errors)
        except InvalidInput as exc:
            result.errors.append(str(exc))
            continue
        result.poses = len(poses)
        if result.errors:
            continue
        try:
            counts = _write(engine, categories, poses)
        except InvalidInput as exc:
            result.errors.append(str(exc))
            continue
        result.imported = True
        result.created, result.updated, result.unchanged = counts
    return report


def _write(
    engine: Engine, categories: list[BuiltinCategory], poses: list[BuiltinPose]
) -> tuple[int, int, int]:
    attempts = 3
    for attempt in range(attempts):
        try:
            with write_transaction(engine) as conn:
                sync = upsert(conn, categories, poses)
            return sync.created, sync.updated, sync.unchanged
        except IntegrityError as exc:
            # A concurrent import inserted one of the same slugs first (between our read and
            # our insert); the next attempt reads it and updates or leaves it.
            if attempt == attempts - 1:
                raise InvalidInput(
                    "another import kept writing the same slugs; run this one again"
                ) from exc
    raise AssertionError("unreachable")


def read_file(path: Path, errors: list[str]) -> tuple[list[BuiltinCategory], list[BuiltinPose]]:
    """The categories and poses of one file; a problem with an entry is appended to
    ``errors`` (``file: pose SLUG: reason``), a problem with the file itself raises."""
    try:
        raw = json.loads(path.read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: not a readable JSON file ({exc})") from exc
    cats_raw: list[Any] = []
    if isinstance(raw, dict) and "poses" in raw:
        unknown = sorted(set(raw) - FILE_KEYS)
        if unknown:
            raise InvalidInput(f"{path}: unknown top-level field(s) {', '.join(unknown)}")
        cats_raw, poses_raw = raw.get("categories") or [], raw["poses"]
    elif isinstance(raw, dict):
        poses_raw = [raw]
    else:
        poses_raw = raw
    if not isinstance(poses_raw, list) or not isinstance(cats_raw, list):
        raise InvalidInput(f"{path}: expected a pose, a list of poses or {{categories, poses}}")
    if not poses_raw:
        raise InvalidInput(f"{path}: holds no poses")
    categories = []
    for i, c in enumerate(cats_raw):
        where = f"{path}: category {c.get('slug', i) if isinstance(c, dict) else i}"
        try:
            categories.append(_category(c))
        except InvalidInput as exc:
            errors.append(f"{where}: {exc}")
    poses: list[BuiltinPose] = []
    seen: set[str] = set()
    for i, p in enumerate(poses_raw):
        label = p.get("slug") if isinstance(p, dict) and isinstance(p.get("slug"), str) else None
        where = f"{path}: pose {label or f'#{i + 1}'}"
        try:
            pose = _pose(p)
        except InvalidInput as exc:
            errors.append(f"{where}: {exc}")
            continue
        if pose.slug in seen:
            errors.append(f"{where}: slug appears twice in this file")
            continue
        seen.add(pose.slug)
        poses.append(pose)
    return categories, poses


def _slug(value: Any, what: str) -> str:
    if (
        not isinstance(value, str)
        or not 1 <= len(value) <= 100
        or not set(value) <= SLUG_CHARS
        or value.startswith("-")
    ):
        raise InvalidInput(f"{what}: lowercase letters, digits and '-', 1-100 characters")
    return value


def _text(raw: Mapping[str, Any], key: str, required: bool, limit: int) -> str:
    value = raw.get(key, None if required else "")
    if not isinstance(value, str) or (required and not value.strip()) or len(value) > limit:
        need = "a non-empty text" if required else "a text"
        raise InvalidInput(f"{key}: {need} of at most {limit} characters")
    return value


def _category(raw: Any) -> BuiltinCategory:
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object")
    unknown = sorted(set(raw) - CATEGORY_KEYS)
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}")
    _slug(raw.get("slug"), "slug")
    _text(raw, "name", True, 200)
    _text(raw, "description", False, 2000)
    if raw.get("parent") is not None:
        _slug(raw["parent"], "parent")
    order = raw.get("sort_order")
    if order is not None and (isinstance(order, bool) or not isinstance(order, int)):
        raise InvalidInput("sort_order: an integer")
    return category_from_json(raw)


def _pose(raw: Any) -> BuiltinPose:
    if not isinstance(raw, dict):
        raise InvalidInput("must be an object")
    unknown = sorted(set(raw) - set(POSE_KEYS) - set(ATTRIBUTES))
    if unknown:
        raise InvalidInput(f"unknown field(s) {', '.join(unknown)}")
    _slug(raw.get("slug"), "slug")
    _text(raw, "name", True, 200)
    _text(raw, "description", False, 5000)
    _slug(raw.get("category"), "category")
    tags = raw.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, str) and t for t in tags):
        raise InvalidInput("tags: a list of non-empty texts")
    _attributes(raw)
    if "keypoints" not in raw:
        raise InvalidInput("keypoints: required")
    pose = pose_from_json(raw)  # the schema check: InvalidInput names the bad part
    found = problems(pose.keypoints)
    if found:
        raise InvalidInput("not a plausible human pose: " + "; ".join(found))
    if "framing" in raw and raw["framing"] != pose.keypoints["framing"]:
        raise InvalidInput(
            f"framing {raw['framing']!r} differs from the keypoints' {pose.keypoints['framing']!r}"
        )
    return pose


def _attributes(raw: Mapping[str, Any]) -> None:
    choices = {"difficulty": DIFFICULTIES, "suitability": SUITABILITIES, "framing": FRAMINGS}
    for key, allowed in choices.items():
        if key in raw and raw[key] not in allowed:
            raise InvalidInput(f"{key}: one of {', '.join(allowed)}, not {raw[key]!r}")
    for key in ("featured", "premium"):
        if key in raw and not isinstance(raw[key], bool):
            raise InvalidInput(f"{key}: true or false")
    for key in ("source", "licence", "author"):
        if key in raw and (not isinstance(raw[key], str) or len(raw[key]) > 200):
            raise InvalidInput(f"{key}: a text of at most 200 characters")
