"""BlazePose's 33 landmarks as OpenPose's COCO-18 body, and mediapipe hands as OpenPose hands.

COCO-18 index <- BlazePose index (the neck has none: it is the shoulders' midpoint when both
are kept). A landmark is dropped (null) when its visibility is under :data:`MIN_VISIBILITY` or
it lies outside the image; kept ones carry the visibility as their confidence. Mediapipe's hand
landmarks are already OpenPose's 21 in OpenPose's order (wrist, then thumb, index, middle, ring,
little finger from base to tip), so hands only need the outside-the-image rule; the holistic
model gives hands no per-point score, so kept hand points have confidence 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from posegen.pose.schema import BODY_POINTS, HAND_POINTS, Point

#: ``COCO_FROM_BLAZEPOSE[i]`` is the BlazePose landmark of COCO-18 point ``i`` (None: the neck).
COCO_FROM_BLAZEPOSE: tuple[int | None, ...] = (
    0, None, 12, 14, 16, 11, 13, 15, 24, 26, 28, 23, 25, 27, 5, 2, 8, 7,
)  # fmt: skip
BLAZEPOSE_POINTS = 33
NECK = 1
R_SHOULDER, L_SHOULDER = 2, 5
MIN_VISIBILITY = 0.5


def _inside(x: float, y: float) -> bool:
    return 0.0 <= x <= 1.0 and 0.0 <= y <= 1.0


def coco18(landmarks: Sequence[Sequence[float]]) -> tuple[Point, ...]:
    """The COCO-18 body from 33 ``[x, y, visibility]`` landmarks normalised to the image."""
    if len(landmarks) != BLAZEPOSE_POINTS:
        raise ValueError(f"BlazePose gives {BLAZEPOSE_POINTS} landmarks, not {len(landmarks)}")
    body: list[Point] = []
    for source in COCO_FROM_BLAZEPOSE:
        if source is None:
            body.append(None)
            continue
        x, y, visibility = (float(v) for v in landmarks[source][:3])
        keep = visibility >= MIN_VISIBILITY and _inside(x, y)
        body.append((round(x, 6), round(y, 6), round(min(visibility, 1.0), 4)) if keep else None)
    right, left = body[R_SHOULDER], body[L_SHOULDER]
    if right is not None and left is not None:
        body[NECK] = (
            round((right[0] + left[0]) / 2, 6),
            round((right[1] + left[1]) / 2, 6),
            min(right[2], left[2]),
        )
    assert len(body) == BODY_POINTS
    return tuple(body)


def hand21(landmarks: Sequence[Sequence[float]] | None) -> tuple[Point, ...] | None:
    """An OpenPose hand from mediapipe's 21 ``[x, y]`` hand landmarks (None: no hand seen)."""
    if landmarks is None:
        return None
    if len(landmarks) != HAND_POINTS:
        raise ValueError(f"a hand has {HAND_POINTS} landmarks, not {len(landmarks)}")
    points: list[Point] = []
    for lm in landmarks:
        x, y = float(lm[0]), float(lm[1])
        points.append((round(x, 6), round(y, 6), 1.0) if _inside(x, y) else None)
    return None if all(p is None for p in points) else tuple(points)
