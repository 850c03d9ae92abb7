"""Helpers of the vision tests: where the vision environment and the test photo are, drawn
figures, image encoding."""

from __future__ import annotations

import io
import math
from pathlib import Path

from PIL import Image, ImageDraw

from posegen.config import load_settings
from posegen.vision import client

NOT_INSTALLED = "vision environment not installed (run `make install-vision`)"


def vision_python() -> Path | None:
    return client.helper_python(load_settings())


def photo_path() -> Path | None:
    """matplotlib's grace_hopper.jpg (public domain), shipped in the vision environment."""
    python = vision_python()
    if python is None:
        return None
    found = sorted(
        python.parent.parent.glob("lib/python3*/site-packages/matplotlib/mpl-data/sample_data/")
    )
    for folder in found:
        if (folder / "grace_hopper.jpg").is_file():
            return folder / "grace_hopper.jpg"
    return None


def encode(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt)
    return buf.getvalue()


def drawn_figure(size: int = 512) -> Image.Image:
    """A crude blob figure standing with arms down and out: head, torso, limbs as thick lines."""
    im = Image.new("RGB", (size, size), (235, 235, 235))
    d = ImageDraw.Draw(im)
    s = size / 512
    skin, cloth, legs = (200, 150, 120), (40, 60, 140), (30, 30, 30)

    def pts(*xy: tuple[float, float]) -> list[tuple[float, float]]:
        return [(x * s, y * s) for x, y in xy]

    d.ellipse([226 * s, 40 * s, 286 * s, 110 * s], fill=skin)
    d.line(pts((256, 110), (256, 130)), fill=skin, width=round(20 * s))
    d.polygon(pts((206, 130), (306, 130), (296, 280), (216, 280)), fill=cloth)
    for a, b in [((206, 135), (150, 210)), ((150, 210), (110, 280))]:
        d.line(pts(a, b), fill=cloth, width=round(26 * s))
        d.line(pts((512 - a[0], a[1]), (512 - b[0], b[1])), fill=cloth, width=round(26 * s))
    for a, b in [((230, 280), (215, 380)), ((215, 380), (210, 480))]:
        d.line(pts(a, b), fill=legs, width=round(30 * s))
        d.line(pts((512 - a[0], a[1]), (512 - b[0], b[1])), fill=legs, width=round(30 * s))
    return im


#: Where the drawing put each joint (COCO-18 index -> pixel at 512 px).
FIGURE_JOINTS = {
    2: (206, 135), 3: (150, 210), 4: (110, 280), 5: (306, 135), 6: (362, 210), 7: (402, 280),
    8: (230, 280), 9: (215, 380), 10: (210, 480), 11: (282, 280), 12: (297, 380),
    13: (302, 480),
}  # fmt: skip


def draw_hand(
    d: ImageDraw.ImageDraw, cx: float, cy: float, scale: float
) -> dict[int, tuple[float, float]]:
    """An open right hand, palm centred at (cx, cy), fingers up; returns where the drawing put
    OpenPose hand points 0 (wrist), 4 (thumb tip) and 12 (middle fingertip)."""
    skin = (225, 180, 150)
    d.ellipse([cx - 28 * scale, cy - 30 * scale, cx + 28 * scale, cy + 30 * scale], fill=skin)
    tips = {}
    for index, (angle, length) in zip(
        (8, 12, 16, 20, 24), [(-35, 45), (-12, 60), (0, 66), (12, 60), (28, 50)], strict=True
    ):
        a = math.radians(angle)
        bx, by = cx + math.sin(a) * 22 * scale, cy - math.cos(a) * 22 * scale
        ex, ey = bx + math.sin(a) * length * scale, by - math.cos(a) * length * scale
        d.line([(bx, by), (ex, ey)], fill=skin, width=int(13 * scale))
        d.ellipse(
            [ex - 6.5 * scale, ey - 6.5 * scale, ex + 6.5 * scale, ey + 6.5 * scale], fill=skin
        )
        tips[index] = (ex, ey)
    thumb = (cx - 65 * scale, cy - 25 * scale)
    d.line([(cx - 25 * scale, cy + 5 * scale), thumb], fill=skin, width=int(16 * scale))
    return {0: (cx, cy + 30 * scale), 4: thumb, 12: tips[16]}


def waving(photo: bytes) -> tuple[Image.Image, dict[int, tuple[float, float]]]:
    """The test photo on a 900 x 900 canvas with a raised right arm and an open hand drawn on."""
    im = Image.new("RGB", (900, 900), (90, 110, 140))
    with Image.open(io.BytesIO(photo)) as person:
        im.paste(person.convert("RGB"), (194, 300))
    d = ImageDraw.Draw(im)
    sleeve = (20, 25, 45)
    d.line([(300, 730), (160, 560)], fill=sleeve, width=70)
    d.line([(160, 560), (150, 330)], fill=sleeve, width=60)
    return im, draw_hand(d, 150, 270, 1.2)
