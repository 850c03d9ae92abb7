"""OpenPose (COCO-18) pose maps drawn from keypoints, as ControlNet's OpenPose models expect.

Black canvas; each limb a filled ellipse (half its length by 4 px) at 0.6 of its colour; each
joint a filled circle of radius 4 in full colour. Integer geometry only after one rounding step,
so the same keypoints always give the same bytes.
"""

from __future__ import annotations

import math
from typing import Any

from PIL import Image, ImageDraw

from posegen.controlnet.sources import Point, parse_persons
from posegen.controlnet.validate import snap_size

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


def limb_colour(index: int) -> tuple[int, int, int]:
    """The fill colour of limb ``index``: 0.6 of the palette colour, as OpenPose draws it."""
    r, g, b = COLOURS[index]
    return int(r * 0.6), int(g * 0.6), int(b * 0.6)


def render_keypoints(keypoints: Any, width: int, height: int) -> Image.Image:
    """Draw COCO-18 keypoints (one person or a list; normalised 0..1; ``null`` = missing) as an
    OpenPose map of ``width`` x ``height``, both snapped to multiples of 64."""
    persons = parse_persons(keypoints)
    size = snap_size((width, height))
    canvas = Image.new("RGB", size, (0, 0, 0))
    draw = ImageDraw.Draw(canvas)
    for person in persons:
        pixels = [_to_pixels(p, size) for p in person]
        for index, (a, b) in enumerate(LIMBS):
            pa, pb = pixels[a], pixels[b]
            if pa is not None and pb is not None:
                draw.polygon(_limb_polygon(pa, pb), fill=limb_colour(index))
        for index, p in enumerate(pixels):
            if p is not None:
                x, y = round(p[0]), round(p[1])
                box = (x - JOINT_RADIUS, y - JOINT_RADIUS, x + JOINT_RADIUS, y + JOINT_RADIUS)
                draw.ellipse(box, fill=COLOURS[index])
    return canvas


def _to_pixels(p: Point, size: tuple[int, int]) -> tuple[float, float] | None:
    if p is None:
        return None
    return p[0] * size[0], p[1] * size[1]


def _limb_polygon(a: tuple[float, float], b: tuple[float, float]) -> list[tuple[int, int]]:
    """The outline of an ellipse spanning ``a``..``b``, like OpenCV's ``ellipse2Poly``
    (integer angle, one point per degree) so maps match the reference preprocessor."""
    cx, cy = (a[0] + b[0]) / 2, (a[1] + b[1]) / 2
    length = math.hypot(a[0] - b[0], a[1] - b[1])
    half = max(int(length / 2), 1)
    angle = math.radians(int(math.degrees(math.atan2(b[1] - a[1], b[0] - a[0]))))
    cos_a, sin_a = math.cos(angle), math.sin(angle)
    points: list[tuple[int, int]] = []
    for deg in range(0, 361):
        t = math.radians(deg)
        ex, ey = half * math.cos(t), STICK_WIDTH * math.sin(t)
        pt = (round(cx + ex * cos_a - ey * sin_a), round(cy + ex * sin_a + ey * cos_a))
        if not points or points[-1] != pt:
            points.append(pt)
    return points
