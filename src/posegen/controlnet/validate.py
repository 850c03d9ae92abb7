"""Decode untrusted image bytes with Pillow, safely, and normalise them.

Only PNG, JPEG and WebP are opened; the declared pixel count is checked before decoding;
Pillow's decompression-bomb warning is an error; the whole image is decoded (``verify()`` only
checks PNG well); the result is RGB, sized to multiples of 64, encoded as PNG.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from posegen.exceptions import FetchError
from posegen.pose.geometry import letterbox

FORMATS = ("PNG", "JPEG", "WEBP")
# Process-wide on purpose: nowhere in posegen should a bomb warning be merely printed.
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# Signatures of image formats that exist but are not accepted (so the error can say which).
_OTHER_FORMATS = {
    b"GIF87a": "GIF",
    b"GIF89a": "GIF",
    b"BM": "BMP",
    b"II*\x00": "TIFF",
    b"MM\x00*": "TIFF",
    b"\x00\x00\x01\x00": "ICO",
    b"8BPS": "PSD",
    b"\x00\x00\x00\x0cjP  ": "JPEG 2000",
}


def snap(n: int) -> int:
    """Round to the nearest multiple of 64, at least 64 (what diffusion models accept)."""
    return max(64, round(n / 64) * 64)


def snap_size(size: tuple[int, int]) -> tuple[int, int]:
    return snap(size[0]), snap(size[1])


def bounded_size(size: tuple[int, int], max_pixels: int | None) -> tuple[int, int]:
    """``size`` snapped to multiples of 64, refused when that is over ``max_pixels``.

    Each side grows to at least 64, so a thin image under the cap (4,000,000 x 4) would
    otherwise become 4,000,000 x 64 (256 megapixels) once resized.
    """
    target = snap_size(size)
    if max_pixels is not None and target[0] * target[1] > max_pixels:
        raise FetchError(
            f"image would be {target[0]}x{target[1]} once sized to multiples of 64, over the "
            f"{max_pixels}-pixel cap",
            kind="too-many-pixels",
        )
    return target


def decode(data: bytes, max_pixels: int) -> Image.Image:
    """Open and fully decode ``data``; raise ``FetchError`` with a precise kind otherwise."""
    img = _open(data, max_pixels)
    _load(img)
    return img


def check(data: bytes, max_pixels: int) -> tuple[str, int, int]:
    """Prove ``data`` a whole, decodable image; returns its format, width and height.

    Like :func:`decode`, but a JPEG is decoded at 1/8 scale: libjpeg still reads every
    entropy-coded block (so truncation and corruption are caught) into 1/64 of the memory.
    """
    img = _open(data, max_pixels)
    try:
        fmt, (width, height) = img.format or "", img.size
        if fmt == "JPEG":
            img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        _load(img)
        return fmt, width, height
    finally:
        img.close()


def _open(data: bytes, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(io.BytesIO(data), formats=list(FORMATS))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FetchError(f"decompression bomb refused: {exc}", kind="decompression-bomb") from exc
    except UnidentifiedImageError as exc:
        other = next((name for sig, name in _OTHER_FORMATS.items() if data.startswith(sig)), None)
        if other:
            raise FetchError(
                f"{other} images are not accepted (PNG, JPEG or WebP)", kind="bad-format"
            ) from exc
        raise FetchError("the data is not a PNG, JPEG or WebP image", kind="not-an-image") from exc
    except (OSError, ValueError, SyntaxError) as exc:
        raise FetchError(f"unreadable image header: {exc}", kind="truncated") from exc
    width, height = img.size
    if width < 1 or height < 1:
        raise FetchError(f"image has no pixels ({width}x{height})", kind="bad-format")
    if width * height > max_pixels:
        raise FetchError(
            f"image is {width}x{height}, over the {max_pixels}-pixel cap", kind="too-many-pixels"
        )
    return img


def _load(img: Image.Image) -> None:
    try:
        img.load()
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise FetchError(f"decompression bomb refused: {exc}", kind="decompression-bomb") from exc
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise FetchError(f"image data is truncated or corrupt: {exc}", kind="truncated") from exc


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto black (a pose map's background)."""
    try:
        if img.mode == "RGB":
            return img
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            rgba = img.convert("RGBA")
            canvas = Image.new("RGB", rgba.size, (0, 0, 0))
            canvas.paste(rgba, mask=rgba.getchannel("A"))
            return canvas
        return img.convert("RGB")
    except (OSError, ValueError) as exc:
        raise FetchError(
            f"cannot convert {img.mode} image to RGB: {exc}", kind="bad-format"
        ) from exc


def fit(
    img: Image.Image, size: tuple[int, int] | None, max_pixels: int | None = None
) -> Image.Image:
    """Letterbox to ``size`` (or the image's own size), snapped to multiples of 64 and held to
    ``max_pixels`` (see :func:`bounded_size`): a map stretched to another aspect is a different
    pose, so it is scaled uniformly and padded black."""
    target = bounded_size(size or img.size, max_pixels)
    if img.size == target:
        return img
    return letterbox(img, *target)


def to_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    # Level 1 encodes a 1024x1024 map in half the time of the default for ~2x the bytes of a
    # mostly black map: a miss is on the critical path of every waiter, the bytes are not.
    img.save(buf, "PNG", compress_level=1)
    return buf.getvalue()


def normalise(data: bytes, max_pixels: int, size: tuple[int, int] | None = None) -> bytes:
    """Untrusted bytes -> validated RGB PNG at ``size`` (or natural size), snapped to 64."""
    img = decode(data, max_pixels)
    target = bounded_size(size or img.size, max_pixels)  # before the RGB copy is made
    return to_png(fit(to_rgb(img), target, max_pixels))


def png_size(png: bytes) -> tuple[int, int]:
    """Width and height of a PNG this package produced (header only)."""
    with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
        return img.size


def resize_png(png: bytes, size: tuple[int, int]) -> bytes:
    """A normalised PNG at another size (snapped)."""
    target = snap_size(size)
    with Image.open(io.BytesIO(png), formats=["PNG"]) as img:
        if img.size == target:
            return png
        img.load()
        return to_png(fit(to_rgb(img), target))
