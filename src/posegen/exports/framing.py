"""Where an export's frame sits on a result, chosen from the pose's keypoints.

The result was generated from the pose's map, which :func:`posegen.pose.place` drew on the map's
canvas; the same call tells where every keypoint lies on the result. From those points:

1. **The figure's box**: every visible point, grown by a body unit (nose to neck) for what the
   points do not mark: the crown above the eyes, the feet below the ankles, hands past the wrists
   (but not past the result's edges: what is not in the picture cannot be shown).
2. **The frame's size** (the format's aspect): ``scene`` formats start from the largest window
   of that aspect inside the result (as much picture as possible), ``subject`` formats from the
   figure's box alone (marketplace tiles: the figure fills the tile). Either grows until the box
   fits and the points keep a margin from every edge; a frame larger than the result extends
   the canvas (filled by the renderer, blurred or solid) instead of cutting a limb.
3. **The frame's place**: the figure's centre of mass (its torso) at the centre horizontally;
   vertically a full-body figure's box is centred, a half-body or portrait figure has its eyes a
   third of the way down (headroom). Then, in this order of precedence: the box and the points
   with their margin stay inside the frame; the frame stays inside the result (or, when larger, covers it); the
   composition is kept as closely as those allow.

Without a pose (or without a visible point) the whole result is fitted into the format's aspect
and centred: nothing is cut, the canvas is extended.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from posegen.exports.formats import ExportFormat
from posegen.pose import Framing, Pose, parse_pose, place

#: Space kept between the figure's box and the frame's edges (fraction of the frame).
MARGIN = 0.03
#: A ``subject`` frame never zooms in further than this (output pixels per result pixel).
MAX_UPSCALE = 4.0
# COCO-18 indices.
_HEAD = (0, 14, 15, 16, 17)
_EYES = (14, 15)
_TORSO = (1, 2, 5, 8, 11)
_NOSE, _NECK, _R_SHOULDER, _L_SHOULDER = 0, 1, 2, 5
_ANKLES = (10, 13)
# Body units (nose to neck) added beyond the points: crown above the head points, feet below
# the ankles, everything else (hands past wrists, shoulders' flesh, a bent knee) on every side.
_CROWN = 0.9
_FEET = 0.45
_SIDE = 0.45


@dataclass(frozen=True)
class Figure:
    """The pose on the result, in result pixels."""

    framing: Framing
    #: Every visible point (body, hands, face) of every person.
    points: tuple[tuple[float, float], ...]
    #: ``(x0, y0, x1, y1)``: the points grown by what they do not mark (see the module doc).
    box: tuple[float, float, float, float]
    #: ``(x0, y0, x1, y1)``: the points' own bounds.
    extent: tuple[float, float, float, float]
    #: The torso's mean (all points' when no torso point is visible).
    centre: tuple[float, float]
    #: Mean height of the eyes (of the nose, the ears), None without a head point.
    eyes_y: float | None


@dataclass(frozen=True)
class Frame:
    """The window of the result (in its pixels; it may reach past the result's edges) that is
    scaled to the format's size."""

    left: float
    top: float
    width: float
    height: float

    @property
    def right(self) -> float:
        return self.left + self.width

    @property
    def bottom(self) -> float:
        return self.top + self.height

    def to_output(self, x: float, y: float, size: tuple[int, int]) -> tuple[float, float]:
        """A result pixel position in the export's pixels."""
        return ((x - self.left) * size[0] / self.width, (y - self.top) * size[1] / self.height)


def figure(
    pose: Any, image_size: tuple[int, int], pose_size: tuple[int, int] | None = None
) -> Figure | None:
    """The pose (any accepted shape) as it lies on a result of ``image_size``, whose map was
    drawn at ``pose_size`` (default: the result's size). None without a visible point."""
    if pose is None:
        return None
    parsed = pose if isinstance(pose, Pose) else parse_pose(pose)
    pw, ph = pose_size or image_size
    placed = place(parsed, pw, ph)
    iw, ih = image_size

    def px(p: tuple[float, float, float]) -> tuple[float, float]:
        return (p[0] * iw, p[1] * ih)

    points = tuple(px(p) for p in placed.points())
    if not points:
        return None
    bodies = [[None if p is None else px(p) for p in person.body] for person in placed.people]
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    unit = _unit(bodies, max(x1 - x0, y1 - y0), min(iw, ih))
    heads = _present(bodies, _HEAD)
    ankles = _present(bodies, _ANKLES)
    top = y0 - _SIDE * unit
    if heads:
        top = min(top, min(p[1] for p in heads) - _CROWN * unit)
    bottom = y1 + _SIDE * unit
    if ankles:
        bottom = max(bottom, max(p[1] for p in ankles) + _FEET * unit)
    # What the allowances reach past the result's edges is not in the picture (the generated
    # figure is cut there already): no canvas is extended for it. The points themselves count.
    box = (
        min(x0, max(0.0, x0 - _SIDE * unit)),
        min(y0, max(0.0, top)),
        max(x1, min(float(iw), x1 + _SIDE * unit)),
        max(y1, min(float(ih), bottom)),
    )
    torso = _present(bodies, _TORSO) or list(points)
    centre = (_mean(p[0] for p in torso), _mean(p[1] for p in torso))
    eyes = _present(bodies, _EYES) or heads
    eyes_y = _mean(p[1] for p in eyes) if eyes else None
    return Figure(placed.framing, points, box, (x0, y0, x1, y1), centre, eyes_y)


def _unit(
    bodies: Sequence[Sequence[tuple[float, float] | None]], extent: float, image_min: int
) -> float:
    """The body unit: the largest nose-to-neck distance (shoulder width x 0.8 without one),
    kept within sane bounds of the figure's own size."""
    units = []
    for body in bodies:
        nose, neck = body[_NOSE], body[_NECK]
        rs, ls = body[_R_SHOULDER], body[_L_SHOULDER]
        if nose is not None and neck is not None:
            units.append(math.dist(nose, neck))
        elif rs is not None and ls is not None:
            units.append(0.8 * math.dist(rs, ls))
    unit = max(units) if units else 0.12 * extent
    return min(max(unit, 0.06 * extent, 0.01 * image_min), 0.5 * max(extent, 1.0))


def _present(
    bodies: Sequence[Sequence[tuple[float, float] | None]], indices: tuple[int, ...]
) -> list[tuple[float, float]]:
    return [p for body in bodies for i in indices if (p := body[i]) is not None]


def _mean(values: Iterable[float]) -> float:
    items = list(values)
    return sum(items) / len(items)


def frame_for(image_size: tuple[int, int], fig: Figure | None, fmt: ExportFormat) -> Frame:
    """The frame of ``fmt`` (which must have a size) on a result of ``image_size``."""
    size = fmt.size
    if size is None:
        raise ValueError(f"format {fmt.name} keeps the result's size: there is no frame")
    out_w, out_h = size
    aspect = out_w / out_h
    iw, ih = image_size
    if fig is None:
        # Attention-free: the whole result inside the aspect, centred; the rest is fill.
        fh = max(ih, iw / aspect)
        fw = fh * aspect
        return Frame((iw - fw) / 2, (ih - fh) / 2, fw, fh)
    x0, y0, x1, y1 = fig.box
    px0, py0, px1, py1 = fig.extent
    keep = 1 - 2 * MARGIN
    need_h = max(y1 - y0, (x1 - x0) / aspect, (py1 - py0) / keep, (px1 - px0) / keep / aspect)
    if fmt.fit == "scene":
        base_h = min(ih, iw / aspect)
    else:
        base_h = out_h / MAX_UPSCALE
    fh = max(base_h, need_h)
    fw = fh * aspect
    left = _slide(fig.centre[0] - fw / 2, fw, (x0, x1), (px0, px1), iw)
    if fig.framing == "full_body" or fig.eyes_y is None:
        want_top = (y0 + y1) / 2 - fh / 2
    else:
        want_top = fig.eyes_y - fh / 3
    top = _slide(want_top, fh, (y0, y1), (py0, py1), ih)
    return Frame(left, top, fw, fh)


def _slide(
    want: float,
    size: float,
    box: tuple[float, float],
    points: tuple[float, float],
    extent: float,
) -> float:
    """The start of a window of ``size`` on one axis: as near ``want`` as allowed by, first,
    keeping the box inside and the points inside with the margin and, second, staying within
    ``0..extent`` (or covering it when the window is larger)."""
    pad = MARGIN * size
    c_lo = max(box[1], points[1] + pad) - size
    c_hi = min(box[0], points[0] - pad)
    if c_lo > c_hi:  # only rounding can do this (the size was chosen to fit): centre the box
        c_lo = c_hi = (box[0] + box[1]) / 2 - size / 2
    i_lo, i_hi = (0.0, extent - size) if size <= extent else (extent - size, 0.0)
    a, b = max(c_lo, i_lo), min(c_hi, i_hi)
    if a > b:
        a, b = c_lo, c_hi
    return min(max(want, a), b)


def naive_frame(image_size: tuple[int, int], fmt: ExportFormat) -> Frame:
    """The original app's frame (sharp's ``fit: cover``, centre crop), for comparison only."""
    size = fmt.size
    if size is None:
        raise ValueError(f"format {fmt.name} keeps the result's size: there is no frame")
    aspect = size[0] / size[1]
    iw, ih = image_size
    fh = min(ih, iw / aspect)
    fw = fh * aspect
    return Frame((iw - fw) / 2, (ih - fh) / 2, fw, fh)
