"""OpenPose maps drawn exactly as the reference preprocessor draws them ("openpose_full").

The ControlNet OpenPose models were trained on maps from the ControlNet auxiliary preprocessors'
``draw_bodypose`` / ``draw_handpose`` / ``draw_facepose``; a map a pixel off is a different
input. So the drawing uses the same OpenCV primitives with the same integer steps:

* body: each limb a convex polygon from ``ellipse2Poly`` (centre and angle truncated to int,
  half-length truncated, half-width 4, one vertex per degree), filled at 0.6 of its colour;
  then each joint a filled circle of radius 4 at the truncated pixel position, full colour;
* hands: 20 bones as 2 px lines in 20 hues, then the 21 joints as radius-4 circles in
  (0, 0, 255); points at pixel 0 (x or y) are skipped, as the reference skips them;
* face: 70 radius-3 circles in white, with the same rule.

Per person: body, left hand, right hand, face. Black canvas, RGB, sizes snapped to 64.
OpenCV (headless) is the rasteriser because it *is* the reference's: identical by construction.
"""

from __future__ import annotations

import colorsys
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from PIL import Image

from posegen.controlnet.validate import snap_size
from posegen.pose import Person, Pose, parse_pose, place
from posegen.pose.schema import Point

if TYPE_CHECKING:
    import numpy as np

KEYPOINT_NAMES = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
#: The 17 limbs as 0-based keypoint pairs (OpenPose lists them 1-based).
LIMBS = (
    (1, 2), (1, 5), (2, 3), (3, 4), (5, 6), (6, 7), (1, 8), (8, 9), (9, 10), (1, 11),
    (11, 12), (12, 13), (1, 0), (0, 14), (14, 16), (0, 15), (15, 17),
)  # fmt: skip
COLOURS = (
    (255, 0, 0), (255, 85, 0), (255, 170, 0), (255, 255, 0), (170, 255, 0), (85, 255, 0),
    (0, 255, 0), (0, 255, 85), (0, 255, 170), (0, 255, 255), (0, 170, 255), (0, 85, 255),
    (0, 0, 255), (85, 0, 255), (170, 0, 255), (255, 0, 255), (255, 0, 170), (255, 0, 85),
)  # fmt: skip
STICK_WIDTH = 4
JOINT_RADIUS = 4
#: The 20 bones of a hand: wrist (0) to each finger's four joints.
HAND_BONES = tuple(
    pair
    for finger in range(5)
    for pair in ((0 if j == 0 else 4 * finger + j, 4 * finger + j + 1) for j in range(4))
)
#: Bone ``i`` is drawn in hue ``i / 20`` at full saturation and value; OpenCV rounds the
#: float colour to the nearest integer, as it does for the reference's matplotlib colour.
HAND_BONE_COLOURS = tuple(
    tuple(round(c * 255) for c in colorsys.hsv_to_rgb(i / len(HAND_BONES), 1.0, 1.0))
    for i in range(len(HAND_BONES))
)
HAND_BONE_WIDTH = 2
HAND_JOINT_COLOUR = (0, 0, 255)
FACE_COLOUR = (255, 255, 255)
FACE_RADIUS = 3
# The reference skips hand and face points whose truncated pixel position is not above this.
_EPS = 0.01


def limb_colour(index: int) -> tuple[int, int, int]:
    """The fill colour of limb ``index``: 0.6 of the palette colour, as OpenPose draws it."""
    r, g, b = COLOURS[index]
    return int(r * 0.6), int(g * 0.6), int(b * 0.6)


def render_keypoints(keypoints: Any, width: int, height: int) -> Image.Image:
    """Any accepted pose shape (see :mod:`posegen.pose.schema`) as an OpenPose map of
    ``width`` x ``height`` (snapped to multiples of 64), placed without distortion."""
    return render_pose(parse_pose(keypoints), width, height)


def render_pose(pose: Pose, width: int, height: int) -> Image.Image:
    """The pose fitted onto the snapped output size (:func:`posegen.pose.place`) and drawn."""
    w, h = snap_size((width, height))
    return Image.fromarray(draw_openpose(place(pose, w, h).people, w, h), "RGB")


def draw_openpose(people: Sequence[Person], width: int, height: int) -> np.ndarray:
    """The reference drawing of points normalised to this ``width`` x ``height`` canvas."""
    import numpy as np  # here, not at the top: OpenCV and numpy add ~0.5 s to every CLI start

    canvas = np.zeros((height, width, 3), dtype=np.uint8)
    for person in people:
        _draw_body(canvas, person.body)
        if person.hands is not None:
            for hand in person.hands:
                if hand is not None:
                    _draw_hand(canvas, hand)
        if person.face is not None:
            _draw_face(canvas, person.face)
    return canvas


def _draw_body(canvas: np.ndarray, body: Sequence[Point]) -> None:
    import cv2
    import numpy as np

    height, width = canvas.shape[:2]
    for index, (a, b) in enumerate(LIMBS):
        pa, pb = body[a], body[b]
        if pa is None or pb is None:
            continue
        # The same float64 steps as the reference (x scaled by the width, means, hypotenuse,
        # atan2 of y over x differences), truncated where it truncates.
        xs = np.array([pa[0], pb[0]]) * float(width)
        ys = np.array([pa[1], pb[1]]) * float(height)
        mid_x, mid_y = np.mean(xs), np.mean(ys)
        length = ((ys[0] - ys[1]) ** 2 + (xs[0] - xs[1]) ** 2) ** 0.5
        angle = math.degrees(math.atan2(ys[0] - ys[1], xs[0] - xs[1]))
        polygon = cv2.ellipse2Poly(
            (int(mid_x), int(mid_y)), (int(length / 2), STICK_WIDTH), int(angle), 0, 360, 1
        )
        # ellipse2Poly already returns an int32 array; asarray only tells the type checker.
        cv2.fillConvexPoly(canvas, np.asarray(polygon, dtype=np.int32), limb_colour(index))
    for index, p in enumerate(body):
        if p is not None:
            centre = (int(p[0] * width), int(p[1] * height))
            cv2.circle(canvas, centre, JOINT_RADIUS, COLOURS[index], thickness=-1)


def _pixel(p: Point, width: int, height: int) -> tuple[int, int] | None:
    if p is None:
        return None
    x, y = int(p[0] * width), int(p[1] * height)
    return (x, y) if x > _EPS and y > _EPS else None


def _draw_hand(canvas: np.ndarray, hand: Sequence[Point]) -> None:
    import cv2

    height, width = canvas.shape[:2]
    pixels = [_pixel(p, width, height) for p in hand]
    for index, (a, b) in enumerate(HAND_BONES):
        pa, pb = pixels[a], pixels[b]
        if pa is not None and pb is not None:
            cv2.line(canvas, pa, pb, HAND_BONE_COLOURS[index], thickness=HAND_BONE_WIDTH)
    for px in pixels:
        if px is not None:
            cv2.circle(canvas, px, JOINT_RADIUS, HAND_JOINT_COLOUR, thickness=-1)


def _draw_face(canvas: np.ndarray, face: Sequence[Point]) -> None:
    import cv2

    height, width = canvas.shape[:2]
    for p in face:
        px = _pixel(p, width, height)
        if px is not None:
            cv2.circle(canvas, px, FACE_RADIUS, FACE_COLOUR, thickness=-1)
