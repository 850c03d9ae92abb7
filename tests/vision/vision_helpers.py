"""Helpers of the vision tests: where the vision environment and the test photo are, drawn
figures, image encoding."""

from __future__ import annotations

import io
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
