"""Fitting a pose, a fetched map and a subject photo into an output canvas without distortion.

A pose's points are normalised to the canvas it was drawn on; drawing them as ``x * width,
y * height`` on another aspect stretches the figure. :func:`placement` instead scales
uniformly and decides what part of the authored scene the output shows:

* never less than the whole figure (plus the authored margin, so joints are not clipped);
* never more zoom than "cover" (the output filled by the authored canvas in both directions),
  so on the authored aspect the pose is drawn exactly as authored;
* full-body poses are centred; half-body and portrait framings keep their headroom: the output
  starts where the authored canvas starts, so a taller output shows more room below the
  shoulders (where the model continues the body) and a wider one crops below the lowest point.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from PIL import Image, ImageStat

from posegen.pose.schema import Framing, Person, Point, Pose

#: Margin given to a figure that touches or leaves its authored canvas (fraction of the canvas).
MIN_MARGIN = 0.03
#: Subject photos: how much of each dimension may be cropped away (the rest is padded).
_SIDE_CROP = 0.10
_BOTTOM_CROP: dict[Framing | None, float] = {
    None: 0.0,
    "full_body": 0.0,
    "half_body": 0.15,
    "portrait": 0.30,
}


@dataclass(frozen=True)
class Placement:
    """``x' = x * sx + bx``, ``y' = y * sy + by``: authored-normalised to output-normalised.
    ``sx / sy`` equals the aspect change, so lengths in pixels scale uniformly."""

    sx: float
    sy: float
    bx: float
    by: float

    @property
    def identity(self) -> bool:
        return (self.sx, self.sy, self.bx, self.by) == (1.0, 1.0, 0.0, 0.0)

    def point(self, p: Point) -> Point:
        if p is None or self.identity:
            return p
        return (p[0] * self.sx + self.bx, p[1] * self.sy + self.by, p[2])


IDENTITY = Placement(1.0, 1.0, 0.0, 0.0)


def placement(pose: Pose, width: int, height: int) -> Placement:
    """Where the pose goes on a ``width`` x ``height`` output (see the module docstring)."""
    cw, ch = pose.canvas
    points = [(x * cw, y * ch) for x, y, _c in pose.points()]
    if not points:
        return IDENTITY  # nothing to place
    x0, x1 = min(p[0] for p in points), max(p[0] for p in points)
    y0, y1 = min(p[1] for p in points), max(p[1] for p in points)
    full = pose.framing == "full_body"
    sides = [x0, cw - x1, y0] + ([ch - y1] if full else [])
    # The authored margin, unless the figure touches or leaves its canvas: then a small one.
    floor = MIN_MARGIN * max(cw, ch)
    margin = min(sides) if min(sides) > 0 else floor
    # Half-body and portrait figures leave the frame at the bottom: keep what was authored there.
    bottom = margin if full else (min(ch - y1, margin) if ch - y1 > 0 else floor)
    box = (x0 - margin, y0 - margin, x1 + margin, y1 + bottom)
    fit_scale = min(width / (box[2] - box[0]), height / (box[3] - box[1]))
    cover_scale = max(width / cw, height / ch)
    scale = min(fit_scale, cover_scale)
    win_w, win_h = width / scale, height / scale
    left = (cw - win_w) / 2
    top = (ch - win_h) / 2 if full else 0.0
    left = _shift_to_contain(left, win_w, box[0], box[2])
    top = _shift_to_contain(top, win_h, box[1], box[3])
    if (
        abs(left) <= 1e-9 * cw
        and abs(top) <= 1e-9 * ch
        and abs(win_w - cw) <= 1e-9 * cw
        and abs(win_h - ch) <= 1e-9 * ch
    ):
        # The output shows exactly the authored canvas: keep the authored numbers bit for bit,
        # so a map at the authored aspect is what the reference preprocessor draws.
        return IDENTITY
    return Placement(cw / win_w, ch / win_h, -left / win_w, -top / win_h)


def _shift_to_contain(start: float, size: float, lo: float, hi: float) -> float:
    if start > lo:
        start = lo
    if start + size < hi:
        start = hi - size
    return start


def place(pose: Pose, width: int, height: int) -> Pose:
    """The pose with its points moved onto a ``width`` x ``height`` canvas (see placement)."""
    where = placement(pose, width, height)
    if where.identity:
        return replace(pose, canvas=(float(width), float(height)))
    people = tuple(_move(person, where) for person in pose.people)
    return Pose((float(width), float(height)), pose.framing, people)


def _move(person: Person, where: Placement) -> Person:
    hands = None
    if person.hands is not None:
        left, right = (
            None if h is None else tuple(where.point(p) for p in h) for h in person.hands
        )
        hands = (left, right)
    face = None if person.face is None else tuple(where.point(p) for p in person.face)
    return Person(tuple(where.point(p) for p in person.body), hands, face)


def letterbox(image: Image.Image, width: int, height: int) -> Image.Image:
    """``image`` scaled uniformly to fit ``width`` x ``height``, centred on black (RGB).

    Downscaling averages (BOX), upscaling uses LANCZOS: the choice the reference preprocessor's
    ``smart_resize`` makes (INTER_AREA / INTER_LANCZOS4)."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size == (width, height):
        return rgb
    scale = min(width / rgb.width, height / rgb.height)
    size = (max(1, round(rgb.width * scale)), max(1, round(rgb.height * scale)))
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.LANCZOS
    scaled = rgb.resize(size, method) if size != rgb.size else rgb
    canvas = Image.new("RGB", (width, height), (0, 0, 0))
    canvas.paste(scaled, ((width - size[0]) // 2, (height - size[1]) // 2))
    return canvas


def fit_subject(
    image: Image.Image, width: int, height: int, framing: Framing | None = None
) -> Image.Image:
    """The subject photo at ``width`` x ``height`` with the person kept whole.

    The person's place in the photo is unknown, so crop only a little: up to 10 % of the width
    (from both sides) and, for half-body and portrait poses, some of the bottom (the legs the
    output does not show); never the top, where the head is. What remains of the aspect
    difference is padded with the photo's mean colour, which a model blends in more easily than
    black."""
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    if rgb.size == (width, height):
        return rgb
    w, h = rgb.size
    target = width / height
    if w / h > target:  # too wide: trim the sides a little
        crop_w = max(w * (1 - _SIDE_CROP), h * target)
        left = round((w - crop_w) / 2)
        box = (left, 0, left + round(crop_w), h)
    else:  # too tall: trim the bottom, within what the framing allows
        crop_h = max(h * (1 - _BOTTOM_CROP.get(framing, 0.0)), w / target)
        box = (0, 0, w, round(crop_h))
    cropped = rgb.crop(box) if box != (0, 0, w, h) else rgb
    scale = min(width / cropped.width, height / cropped.height)
    size = (max(1, round(cropped.width * scale)), max(1, round(cropped.height * scale)))
    scaled = cropped.resize(size, Image.Resampling.BILINEAR) if size != cropped.size else cropped
    if size == (width, height):
        return scaled
    fill = tuple(round(v) for v in ImageStat.Stat(scaled).mean[:3])
    canvas = Image.new("RGB", (width, height), fill)
    top = 0 if framing in ("half_body", "portrait") else (height - size[1]) // 2
    canvas.paste(scaled, ((width - size[0]) // 2, top))
    return canvas
