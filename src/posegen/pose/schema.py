"""The one JSON shape of a pose, wherever it comes from (library, private, a photo, exports).

Canonical form (what is stored and returned)::

    {"canvas": [w, h],                      # what the points were drawn on (pixels or an aspect)
     "framing": "full_body" | "half_body" | "portrait",
     "people": [{"body": [[x, y, c] | null] * 18,        # COCO-18, normalised to the canvas
                 "hands": [[[x, y, c] | null] * 21 | null] * 2,   # optional: left, right
                 "face": [[x, y, c] | null] * 70}]}       # optional

Accepted on input as well: today's bare lists (18 ``[x, y]`` points, or a list of persons), a
dict with ``keypoints`` or ``persons`` holding such lists, a single person given at the top level
(``body``/``hands``/``face``), and ``aspect`` (width / height) instead of ``canvas``. A pose
without a canvas was drawn on a square (the size the library was authored and previewed at);
one without a framing gets it from which points it has.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from posegen.exceptions import InvalidInput

Framing = Literal["full_body", "half_body", "portrait"]
FRAMINGS: tuple[Framing, ...] = ("full_body", "half_body", "portrait")
BODY_POINTS = 18
HAND_POINTS = 21
FACE_POINTS = 70
#: More people than any pose map needs; bounds the cost of rendering one row.
MAX_PEOPLE = 16
#: Points may lie a little off their canvas (a hand raised out of frame), not anywhere.
COORD_RANGE = (-1.0, 2.0)
MAX_CANVAS = 16384.0
ASPECT_RANGE = (0.1, 10.0)
#: Legacy poses carry no canvas: they were authored and previewed at the default 512 x 512.
DEFAULT_CANVAS = (512.0, 512.0)

#: x, y (normalised to the canvas) and a confidence in 0..1; ``None`` = missing.
Point = tuple[float, float, float] | None
# COCO-18 indices the framing is inferred from.
_KNEES_ANKLES = (9, 10, 12, 13)
_HIPS = (8, 11)


@dataclass(frozen=True)
class Person:
    body: tuple[Point, ...]
    #: ``(left, right)``; either may be None. None when the pose has no hands at all.
    hands: tuple[tuple[Point, ...] | None, tuple[Point, ...] | None] | None = None
    face: tuple[Point, ...] | None = None

    def points(self) -> Iterator[tuple[float, float, float]]:
        """Every present point: body, hands, face."""
        groups: list[Sequence[Point]] = [self.body]
        if self.hands is not None:
            groups.extend(h for h in self.hands if h is not None)
        if self.face is not None:
            groups.append(self.face)
        for group in groups:
            yield from (p for p in group if p is not None)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"body": _points_json(self.body)}
        if self.hands is not None:
            out["hands"] = [None if h is None else _points_json(h) for h in self.hands]
        if self.face is not None:
            out["face"] = _points_json(self.face)
        return out


@dataclass(frozen=True)
class Pose:
    canvas: tuple[float, float]
    framing: Framing
    people: tuple[Person, ...]

    @property
    def aspect(self) -> float:
        """Width / height of the canvas the points were drawn on."""
        return self.canvas[0] / self.canvas[1]

    def points(self) -> Iterator[tuple[float, float, float]]:
        for person in self.people:
            yield from person.points()

    def to_json(self) -> dict[str, Any]:
        """The canonical JSON object (stored, returned by the API, keyed by the map cache)."""
        return {
            "canvas": [self.canvas[0], self.canvas[1]],
            "framing": self.framing,
            "people": [p.to_json() for p in self.people],
        }

    def canonical(self) -> str:
        """Compact, key-sorted JSON: equal poses give equal text (map cache keys)."""
        return json.dumps(self.to_json(), separators=(",", ":"), sort_keys=True)


def parse_pose(raw: Any) -> Pose:
    """Validate and normalise any accepted input shape; :class:`InvalidInput` (422,
    ``invalid-pose``) names the offending part."""
    if isinstance(raw, Pose):
        return raw
    if isinstance(raw, list):
        return _build(_people_from_legacy(raw, "keypoints"), DEFAULT_CANVAS, None)
    if not isinstance(raw, dict):
        _fail("pose", "must be an object or a list of 18 points")
    known = {"canvas", "aspect", "framing", "people", "body", "hands", "face", "keypoints"}
    unknown = sorted(set(raw) - known - {"persons", "version"})
    if unknown:
        _fail("pose", f"unknown field(s) {', '.join(unknown)}")
    canvas = _canvas(raw)
    framing = raw.get("framing")
    if framing is not None and framing not in FRAMINGS:
        _fail("pose.framing", f"must be one of {', '.join(FRAMINGS)}, not {framing!r}")
    sources = [k for k in ("people", "body", "keypoints", "persons") if raw.get(k) is not None]
    if len(sources) != 1:
        _fail("pose", "give exactly one of people, body (one person) or keypoints")
    key = sources[0]
    if key == "people":
        people_raw = raw["people"]
        if not isinstance(people_raw, list) or not people_raw:
            _fail("pose.people", "must be a non-empty list of persons")
        if len(people_raw) > MAX_PEOPLE:
            _fail("pose.people", f"at most {MAX_PEOPLE} persons, not {len(people_raw)}")
        people = [_person(p, f"pose.people[{i}]") for i, p in enumerate(people_raw)]
    elif key == "body":
        people = [_person({k: raw.get(k) for k in ("body", "hands", "face")}, "pose")]
    else:
        if raw.get("hands") is not None or raw.get("face") is not None:
            _fail("pose", "hands and face go with body or people, not legacy keypoints")
        people = _people_from_legacy(raw[key], f"pose.{key}")
    return _build(people, canvas, cast(Framing | None, framing))


def pose_json(raw: Any) -> dict[str, Any]:
    """``parse_pose(raw).to_json()``: what to store for a pose given in any accepted shape."""
    return parse_pose(raw).to_json()


def infer_framing(people: Sequence[Person]) -> Framing:
    """Knees or ankles visible: full body; hips: half body; otherwise a portrait."""

    def seen(indices: tuple[int, ...]) -> bool:
        return any(p.body[i] is not None for p in people for i in indices)

    if seen(_KNEES_ANKLES):
        return "full_body"
    if seen(_HIPS):
        return "half_body"
    return "portrait"


def _build(people: list[Person], canvas: tuple[float, float], framing: Framing | None) -> Pose:
    return Pose(canvas, framing or infer_framing(people), tuple(people))


def _fail(where: str, message: str) -> Any:
    raise InvalidInput(f"{where}: {message}", kind="invalid-pose")


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        _fail(where, f"must be a number, not {value!r}")
    if not math.isfinite(value):
        _fail(where, f"must be finite, not {value!r}")
    return float(value)


def _canvas(raw: dict[str, Any]) -> tuple[float, float]:
    canvas, aspect = raw.get("canvas"), raw.get("aspect")
    if canvas is not None and aspect is not None:
        _fail("pose", "give canvas or aspect, not both")
    if aspect is not None:
        a = _number(aspect, "pose.aspect")
        if not ASPECT_RANGE[0] <= a <= ASPECT_RANGE[1]:
            _fail("pose.aspect", f"width / height must be within {ASPECT_RANGE}, not {a}")
        return (round(a, 6), 1.0)
    if canvas is None:
        return DEFAULT_CANVAS
    if not isinstance(canvas, list) or len(canvas) != 2:
        _fail("pose.canvas", "must be [width, height]")
    w, h = (_number(v, f"pose.canvas[{i}]") for i, v in enumerate(canvas))
    if not (0 < w <= MAX_CANVAS and 0 < h <= MAX_CANVAS):
        _fail("pose.canvas", f"width and height must be in (0, {MAX_CANVAS:.0f}], not {canvas}")
    if not ASPECT_RANGE[0] <= w / h <= ASPECT_RANGE[1]:
        _fail("pose.canvas", f"aspect (width / height) {w / h:.4g} is outside {ASPECT_RANGE}")
    return (round(w, 6), round(h, 6))


def _people_from_legacy(items: Any, where: str) -> list[Person]:
    if not isinstance(items, list) or not items:
        _fail(where, f"must be a list of {BODY_POINTS} points or a list of persons")
    people_raw = [items] if _is_point_list(items) else items
    if len(people_raw) > MAX_PEOPLE:
        _fail(where, f"at most {MAX_PEOPLE} persons, not {len(people_raw)}")
    return [
        Person(_points(p, BODY_POINTS, f"{where}[{i}]" if len(people_raw) > 1 else where))
        for i, p in enumerate(people_raw)
    ]


def _is_point_list(items: list[Any]) -> bool:
    """One person's points (each null or a list of plain values), not a list of persons (whose
    entries hold points, or nulls for missing ones)."""
    return all(
        p is None
        or (isinstance(p, list) and all(v is not None and not isinstance(v, list) for v in p))
        for p in items
    )


def _person(raw: Any, where: str) -> Person:
    if not isinstance(raw, dict):
        _fail(where, "must be an object with body (and optionally hands, face)")
    unknown = sorted(set(raw) - {"body", "hands", "face"})
    if unknown:
        _fail(where, f"unknown field(s) {', '.join(unknown)}")
    if raw.get("body") is None:
        _fail(f"{where}.body", f"is required: {BODY_POINTS} points")
    body = _points(raw["body"], BODY_POINTS, f"{where}.body")
    hands = None
    if raw.get("hands") is not None:
        hands_raw = raw["hands"]
        if not isinstance(hands_raw, list) or len(hands_raw) != 2:
            _fail(f"{where}.hands", f"must be [left, right], each {HAND_POINTS} points or null")
        left, right = (
            None if h is None else _points(h, HAND_POINTS, f"{where}.hands[{i}]")
            for i, h in enumerate(hands_raw)
        )
        hands = (left, right)
    face = None
    if raw.get("face") is not None:
        face = _points(raw["face"], FACE_POINTS, f"{where}.face")
    return Person(body, hands, face)


def _points(items: Any, count: int, where: str) -> tuple[Point, ...]:
    if not isinstance(items, list) or len(items) != count:
        got = len(items) if isinstance(items, list) else type(items).__name__
        _fail(where, f"needs exactly {count} points, got {got}")
    return tuple(_point(p, f"{where}[{i}]") for i, p in enumerate(items))


def _point(p: Any, where: str) -> Point:
    if p is None:
        return None
    if not isinstance(p, list | tuple) or len(p) not in (2, 3):
        _fail(where, f"a point is [x, y], [x, y, confidence] or null, not {p!r}")
    values = [_number(v, where) for v in p]
    confidence = values[2] if len(values) == 3 else 1.0
    if not 0.0 <= confidence <= 1.0:
        _fail(where, f"confidence must be within 0..1, not {confidence}")
    if confidence == 0.0:
        return None  # OpenPose writes undetected points with confidence 0
    x, y = values[0], values[1]
    lo, hi = COORD_RANGE
    if not (lo <= x <= hi and lo <= y <= hi):
        _fail(where, f"coordinates are normalised to the canvas (0..1); {p!r} is far outside")
    return (round(x, 6), round(y, 6), round(confidence, 4))


def _points_json(points: Sequence[Point]) -> list[list[float] | None]:
    return [None if p is None else [p[0], p[1], p[2]] for p in points]
