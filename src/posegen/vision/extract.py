"""Poses, boxes and masks from a photo, through the helper.

``extract`` gives the canonical pose (:mod:`posegen.pose.schema`: canvas = the photo's size,
points normalised to it: the COCO-18 body, OpenPose hands and the 70 face points where seen)
with warnings a person can act on: ``no-person``, ``several-people`` (mediapipe's legacy pose
model follows one person; a full-range face detector counts faces, and with two or more the
pose is taken from a crop around the largest face, so it is the largest person's) and
``partial-body`` (which points are missing). ``extract_all`` gives every person instead, largest
first (the helper's ``people`` op: one crop per face, then windows for people without a found
face). ``segment`` gives the person mask at the photo's size; ``detect`` both, plus the person's
box, in one helper call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from posegen.config import Settings
from posegen.controlnet.render import KEYPOINT_NAMES
from posegen.pose.schema import MAX_PEOPLE, Person, Point, Pose, infer_framing
from posegen.vision import client, mapping
from posegen.vision.photo import Photo, prepare

if TYPE_CHECKING:
    import numpy as np

#: Mask values (0..255) at or above this are the person.
MASK_THRESHOLD = 128

#: ``[x0, y0, x1, y1]`` normalised to the photo.
Box = tuple[float, float, float, float]


@dataclass(frozen=True)
class PhotoWarning:
    kind: str
    message: str

    def to_json(self) -> dict[str, str]:
        return {"kind": self.kind, "message": self.message}


@dataclass(frozen=True)
class Extraction:
    width: int
    height: int
    #: None when no person was found.
    pose: Pose | None
    #: People the photo seems to hold (faces counted; at least 1 when a pose was found).
    people_seen: int
    warnings: tuple[PhotoWarning, ...] = ()
    #: The helper's own model time (ms), without the round trip.
    model_ms: float = 0.0
    #: One box per person of ``pose`` (around all its points), in the same order.
    boxes: tuple[Box, ...] = ()

    @property
    def body(self) -> tuple[Point, ...]:
        if self.pose is None:
            return (None,) * len(KEYPOINT_NAMES)
        return self.pose.people[0].body

    def keypoints(self) -> list[list[float] | None]:
        """The 18 COCO points as ``[x, y, confidence]`` or null (what ``--json`` prints)."""
        return _keypoints(self.body)

    def people(self) -> list[dict[str, Any]]:
        """Every person found, largest first: ``keypoints`` (COCO-18 as :meth:`keypoints`),
        ``box``, and ``hands`` / ``face`` where seen (the pose schema's shapes)."""
        if self.pose is None:
            return []
        out = []
        for person, box in zip(self.pose.people, self.boxes, strict=True):
            entry: dict[str, Any] = {"keypoints": _keypoints(person.body), "box": list(box)}
            entry.update({k: v for k, v in person.to_json().items() if k in ("hands", "face")})
            out.append(entry)
        return out


def _keypoints(body: tuple[Point, ...]) -> list[list[float] | None]:
    return [None if p is None else [p[0], p[1], p[2]] for p in body]


@dataclass(frozen=True)
class Detection:
    extraction: Extraction
    #: The person mask at the photo's size (uint8, 0..255).
    mask: np.ndarray = field(repr=False)
    #: ``[x0, y0, x1, y1]`` normalised to the photo; None when there is no person.
    box: tuple[float, float, float, float] | None


def extract(settings: Settings, data: bytes) -> Extraction:
    """The pose of the (largest) person in the photo ``data``."""
    photo = prepare(settings, data)
    answer, _ = _call(settings, "pose", photo)
    return _extraction(photo, answer)


def extract_all(settings: Settings, data: bytes, limit: int = MAX_PEOPLE) -> Extraction:
    """Every person in the photo ``data`` (up to ``limit``), largest first (by the area of the
    box around its points), as one pose of several people; ``no-person`` when there is none,
    ``partial-body`` naming each person with missing points."""
    photo = prepare(settings, data)
    answer, _ = _call(settings, "people", photo, limit=max(1, min(limit, MAX_PEOPLE)))
    return _extraction(photo, answer, every=True)


def segment(settings: Settings, data: bytes) -> np.ndarray:
    """The person mask of the photo ``data`` at its own size (uint8, 0 background..255)."""
    photo = prepare(settings, data)
    answer, raw = _call(settings, "segment", photo)
    return _mask(photo, answer, raw)


def detect(settings: Settings, data: bytes) -> Detection:
    """Pose, mask and box of the person in ``data``, from one helper call."""
    photo = prepare(settings, data)
    answer, raw = _call(settings, "detect", photo)
    extraction = _extraction(photo, answer)
    mask = _mask(photo, answer, raw)
    box = mask_box(mask) if extraction.pose is not None else None
    return Detection(extraction, mask, box)


def mask_box(mask: np.ndarray) -> tuple[float, float, float, float] | None:
    """The normalised bounding box of the mask's person pixels (None if it has none)."""
    import numpy as np

    ys, xs = np.nonzero(mask >= MASK_THRESHOLD)
    if len(xs) == 0:
        return None
    h, w = mask.shape[:2]
    return (
        round(float(xs.min()) / w, 6),
        round(float(ys.min()) / h, 6),
        round(float(xs.max() + 1) / w, 6),
        round(float(ys.max() + 1) / h, 6),
    )


def _call(settings: Settings, op: str, photo: Photo, **fields: Any) -> tuple[dict[str, Any], bytes]:
    header = {"op": op, "width": photo.sent_width, "height": photo.sent_height, **fields}
    return client.helper_for(settings).call(header, photo.rgb)


def _person(found: dict[str, Any]) -> Person | None:
    """A helper person as the pose schema's; None when every body point is hidden or off the
    photo (nothing to pose from)."""
    hands_raw = found.get("hands") or [None, None]
    left, right = (mapping.hand21(h) for h in hands_raw)
    person = Person(
        mapping.coco18(found["landmarks"]),
        None if left is None and right is None else (left, right),
        mapping.face70(found.get("face")),
    )
    return person if any(p is not None for p in person.body) else None


def _box(person: Person) -> Box:
    xs = [min(max(x, 0.0), 1.0) for x, _, _ in person.points()]
    ys = [min(max(y, 0.0), 1.0) for _, y, _ in person.points()]
    return (round(min(xs), 6), round(min(ys), 6), round(max(xs), 6), round(max(ys), 6))


def _extraction(photo: Photo, answer: dict[str, Any], every: bool = False) -> Extraction:
    faces = int(answer.get("faces") or 0)
    found = [p for p in (_person(raw) for raw in answer.get("people") or []) if p is not None]
    if not every:
        found = found[:1]
    boxed = sorted(
        ((p, _box(p)) for p in found), key=lambda pb: -(pb[1][2] - pb[1][0]) * (pb[1][3] - pb[1][1])
    )
    warnings: list[PhotoWarning] = []
    pose = None
    if boxed:
        people = tuple(p for p, _ in boxed)
        pose = Pose((float(photo.width), float(photo.height)), infer_framing(people), people)
    people_seen = max(faces, len(boxed))
    if pose is None:
        warnings.append(PhotoWarning("no-person", "no person was found in the photo"))
    else:
        if people_seen > 1 and not every:
            warnings.append(
                PhotoWarning(
                    "several-people",
                    f"{people_seen} people are in the photo; the pose is the largest one's",
                )
            )
        for index, person in enumerate(pose.people):
            missing = [KEYPOINT_NAMES[i] for i, p in enumerate(person.body) if p is None]
            if missing:
                whose = f"person {index + 1}: " if len(pose.people) > 1 else ""
                warnings.append(
                    PhotoWarning(
                        "partial-body",
                        f"{whose}only part of the body is visible: {len(missing)} of "
                        f"{len(KEYPOINT_NAMES)} points are missing ({', '.join(missing)})",
                    )
                )
    return Extraction(
        photo.width,
        photo.height,
        pose,
        people_seen,
        tuple(warnings),
        float(answer["ms"]),
        tuple(b for _, b in boxed),
    )


def _mask(photo: Photo, answer: dict[str, Any], raw: bytes) -> np.ndarray:
    import cv2
    import numpy as np

    w, h = int(answer["maskWidth"]), int(answer["maskHeight"])
    mask: np.ndarray = np.frombuffer(raw, dtype=np.uint8).reshape(h, w)
    if (w, h) != (photo.width, photo.height):
        mask = cv2.resize(mask, (photo.width, photo.height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(mask)
