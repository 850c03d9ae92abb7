"""Poses, boxes and masks from a photo, through the helper.

``extract`` gives the canonical pose (:mod:`posegen.pose.schema`: canvas = the photo's size,
points normalised to it) with warnings a person can act on: ``no-person``, ``several-people``
(mediapipe's legacy pose model follows one person; a full-range face detector counts faces, and
with two or more the pose is taken from a crop around the largest face, so it is the largest
person's) and ``partial-body`` (which points are missing). ``segment`` gives the person mask at
the photo's size; ``detect`` both, plus the person's box, in one helper call.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from posegen.config import Settings
from posegen.controlnet.render import KEYPOINT_NAMES
from posegen.pose.schema import Person, Point, Pose, infer_framing
from posegen.vision import client, mapping
from posegen.vision.photo import Photo, prepare

if TYPE_CHECKING:
    import numpy as np

#: Mask values (0..255) at or above this are the person.
MASK_THRESHOLD = 128


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

    @property
    def body(self) -> tuple[Point, ...]:
        if self.pose is None:
            return (None,) * len(KEYPOINT_NAMES)
        return self.pose.people[0].body

    def keypoints(self) -> list[list[float] | None]:
        """The 18 COCO points as ``[x, y, confidence]`` or null (what ``--json`` prints)."""
        return [None if p is None else [p[0], p[1], p[2]] for p in self.body]


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


def _call(settings: Settings, op: str, photo: Photo) -> tuple[dict[str, Any], bytes]:
    header = {"op": op, "width": photo.sent_width, "height": photo.sent_height}
    return client.helper_for(settings).call(header, photo.rgb)


def _extraction(photo: Photo, answer: dict[str, Any]) -> Extraction:
    people_raw = answer.get("people") or []
    faces = int(answer.get("faces") or 0)
    warnings: list[PhotoWarning] = []
    pose = None
    if people_raw:
        found = people_raw[0]
        hands_raw = found.get("hands") or [None, None]
        left, right = (mapping.hand21(h) for h in hands_raw)
        person = Person(
            mapping.coco18(found["landmarks"]),
            None if left is None and right is None else (left, right),
        )
        # Every body point hidden or off the photo: nothing to pose from.
        if any(p is not None for p in person.body):
            canvas = (float(photo.width), float(photo.height))
            pose = Pose(canvas, infer_framing([person]), (person,))
    people_seen = max(faces, 1 if pose is not None else 0)
    if pose is None:
        warnings.append(PhotoWarning("no-person", "no person was found in the photo"))
    else:
        if people_seen > 1:
            warnings.append(
                PhotoWarning(
                    "several-people",
                    f"{people_seen} people are in the photo; the pose is the largest one's",
                )
            )
        missing = [KEYPOINT_NAMES[i] for i, p in enumerate(pose.people[0].body) if p is None]
        if missing:
            warnings.append(
                PhotoWarning(
                    "partial-body",
                    f"only part of the body is visible: {len(missing)} of "
                    f"{len(KEYPOINT_NAMES)} points are missing ({', '.join(missing)})",
                )
            )
    return Extraction(
        photo.width, photo.height, pose, people_seen, tuple(warnings), float(answer["ms"])
    )


def _mask(photo: Photo, answer: dict[str, Any], raw: bytes) -> np.ndarray:
    import cv2
    import numpy as np

    w, h = int(answer["maskWidth"]), int(answer["maskHeight"])
    mask: np.ndarray = np.frombuffer(raw, dtype=np.uint8).reshape(h, w)
    if (w, h) != (photo.width, photo.height):
        mask = cv2.resize(mask, (photo.width, photo.height), interpolation=cv2.INTER_LINEAR)
    return np.ascontiguousarray(mask)
