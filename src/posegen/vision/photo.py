"""A user's photo made ready for the helper: checked like every upload, decoded once, turned
upright (EXIF orientation), and downsized to ``POSEGEN_VISION_MAX_SIDE``."""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageOps

from posegen.config import Settings
from posegen.exceptions import FetchError
from posegen.uploads.images import check_image, decode_slot


@dataclass(frozen=True)
class Photo:
    #: The upright photo's own size: what keypoints are normalised to and masks scaled back to.
    width: int
    height: int
    #: RGB pixels as the helper gets them, ``sent_width`` x ``sent_height``.
    rgb: bytes
    sent_width: int
    sent_height: int


def prepare(settings: Settings, data: bytes) -> Photo:
    """Check (size, format, pixel cap, truncation: the upload rules) and decode ``data``."""
    check_image(settings, data)
    with decode_slot(settings):
        try:
            with Image.open(io.BytesIO(data)) as im:
                im.draft("RGB", (settings.vision_max_side, settings.vision_max_side))
                upright = ImageOps.exif_transpose(im)
                rgb = upright.convert("RGB")
        except (OSError, ValueError, Image.DecompressionBombError) as exc:
            raise FetchError(f"the photo could not be decoded: {exc}", kind="not-an-image") from exc
    return from_image(rgb, settings.vision_max_side, original=_original_size(data, rgb))


def _original_size(data: bytes, decoded: Image.Image) -> tuple[int, int]:
    # draft() may have decoded a JPEG at 1/2..1/8 scale: the photo's size is the file's.
    with Image.open(io.BytesIO(data)) as im:
        width, height = im.size
        orientation = im.getexif().get(0x0112, 1)
    if orientation in (5, 6, 7, 8):  # EXIF rotations by 90 or 270 degrees swap the sides
        width, height = height, width
    return width, height


def from_image(image: Image.Image, max_side: int, original: tuple[int, int] | None = None) -> Photo:
    """A decoded RGB image as a :class:`Photo` (``original``: its full size if it was drafted)."""
    width, height = original or image.size
    scale = min(1.0, max_side / max(image.size))
    if scale < 1.0:
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR)
    return Photo(width, height, image.tobytes(), image.width, image.height)
