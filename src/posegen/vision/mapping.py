"""BlazePose's 33 landmarks as OpenPose's COCO-18 body, mediapipe hands as OpenPose hands, and
mediapipe's face mesh as OpenPose's 70 face points (:data:`FACE70_FROM_MESH`).

COCO-18 index <- BlazePose index (the neck has none: it is the shoulders' midpoint when both
are kept). A landmark is dropped (null) when its visibility is under :data:`MIN_VISIBILITY` or
it lies outside the image; kept ones carry the visibility as their confidence. Mediapipe's hand
landmarks are already OpenPose's 21 in OpenPose's order (wrist, then thumb, index, middle, ring,
little finger from base to tip), so hands only need the outside-the-image rule; the holistic
model gives hands no per-point score, so kept hand points have confidence 1.
"""

from __future__ import annotations

from collections.abc import Sequence

from posegen.pose.schema import BODY_POINTS, FACE_POINTS, HAND_POINTS, Point

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


#: ``FACE70_FROM_MESH[i]`` is the mediapipe face-mesh landmark of OpenPose face point ``i``:
#: points 0..67 are the 68 iBUG/dlib points, in their order (0..16 jaw from the subject's right
#: ear to the left one, i.e. image left to right; 17..21 right brow, 22..26 left brow, 27..30
#: nose bridge down, 31..35 nostrils, 36..41 right eye and 42..47 left eye clockwise from the
#: outer corner, 48..59 outer lips and 60..67 inner lips clockwise from the right corner), 68
#: the right pupil and 69 the left (the refined mesh's iris centres, 468 and 473). The 68 are the
#: mesh vertices nearest to where the iBUG annotation puts each point (the widely used
#: correspondence, checked against hand labels on the test photo by the vision tests).
FACE70_FROM_MESH: tuple[int, ...] = (
    # jaw 0..16
    162, 234, 93, 58, 172, 136, 149, 148, 152, 377, 378, 365, 397, 288, 323, 454, 389,
    # right brow 17..21, left brow 22..26
    71, 63, 105, 66, 107, 336, 296, 334, 293, 301,
    # nose bridge 27..30, nostrils 31..35
    168, 197, 5, 4, 75, 97, 2, 326, 305,
    # right eye 36..41, left eye 42..47
    33, 160, 158, 133, 153, 144, 362, 385, 387, 263, 373, 380,
    # outer lips 48..59, inner lips 60..67
    61, 39, 37, 0, 267, 269, 291, 405, 314, 17, 84, 181, 78, 82, 13, 312, 308, 317, 14, 87,
    # pupils 68, 69
    468, 473,
)  # fmt: skip
FACE_MESH_POINTS = 468
REFINED_MESH_POINTS = 478
RIGHT_EYE = range(36, 42)
LEFT_EYE = range(42, 48)


def face70(landmarks: Sequence[Sequence[float]] | None) -> tuple[Point, ...] | None:
    """OpenPose's 70 face points from mediapipe's face mesh (``[x, y]`` normalised to the image;
    478 refined landmarks, or 468 without irises: then each pupil is its eye's six points'
    centre). Points outside the image are null; the mesh gives no per-point score, so kept
    points have confidence 1. None: no face seen."""
    if landmarks is None:
        return None
    if len(landmarks) not in (FACE_MESH_POINTS, REFINED_MESH_POINTS):
        raise ValueError(f"a face mesh has 468 or 478 landmarks, not {len(landmarks)}")
    refined = len(landmarks) == REFINED_MESH_POINTS
    sources = FACE70_FROM_MESH if refined else FACE70_FROM_MESH[:68]
    xy = [(float(landmarks[i][0]), float(landmarks[i][1])) for i in sources]
    if not refined:
        for eye in (RIGHT_EYE, LEFT_EYE):
            ring = [xy[i] for i in eye]
            xy.append((sum(x for x, _ in ring) / len(ring), sum(y for _, y in ring) / len(ring)))
    points: list[Point] = [
        (round(x, 6), round(y, 6), 1.0) if _inside(x, y) else None for x, y in xy
    ]
    assert len(points) == FACE_POINTS
    return None if all(p is None for p in points) else tuple(points)
