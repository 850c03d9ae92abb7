"""Rendering one export: decode the result once, bring it to sRGB, cut or extend the frame that
:mod:`posegen.exports.framing` chose, scale it to the format's size and encode it.

Encoding rules, for every format: colour is converted to sRGB (an embedded ICC profile of
another space is honoured) and the output is tagged with a small sRGB profile; nothing else
from the source travels (EXIF, XMP, comments and text chunks are dropped); JPEG is progressive
(which makes libjpeg optimise its Huffman tables); print formats carry their density (JFIF or
``pHYs``). PNG is lossless (``quality`` does not apply) at zlib level :data:`PNG_COMPRESS_LEVEL`.

Plain Pillow: bench/exports.py measured it against libvips (pyvips) on the whole table; the
figures and the reason for the choice are in docs/benchmarks.md.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any

from PIL import Image, ImageCms, ImageFilter

from posegen.exceptions import InvalidInput
from posegen.exports.formats import ExportFormat
from posegen.exports.framing import Frame, figure, frame_for

#: zlib level of PNG exports: 6 (zlib's own default) is within a few percent of 9 in size and
#: several times faster on large print pages.
PNG_COMPRESS_LEVEL = 6
#: Results larger than this are refused rather than decoded (a corrupt or hostile file).
MAX_INPUT_PIXELS = 64_000_000
_INPUT_FORMATS = ["PNG", "JPEG", "WEBP"]
#: The blurred fill is computed at 1/_BLUR_SCALE of the output and scaled up (cheap, smooth).
_BLUR_SCALE = 8
_BLUR_RADIUS = 3.0
#: The blurred fill is dimmed so the picture itself stands out from its extension.
_BLUR_DIM = 0.8


@lru_cache(maxsize=1)
def srgb_profile() -> bytes:
    """A small sRGB ICC profile (about 600 bytes) embedded in every export."""
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def render_export(
    image: bytes | Image.Image,
    pose: Any,
    fmt: ExportFormat,
    *,
    pose_size: tuple[int, int] | None = None,
) -> bytes:
    """One export of a result: the file's bytes.

    ``pose`` is the pose JSON the result was conditioned on (any shape :func:`posegen.pose.
    parse_pose` accepts) and ``pose_size`` the size its map was drawn at (default: the result's
    size); the frame follows the figure. ``pose=None``: the whole result, centred, canvas
    extended to the aspect. :class:`InvalidInput` (``invalid-image``) when the bytes are not an
    image this can read."""
    return render_exports(image, pose, [fmt], pose_size=pose_size)[fmt.name]


def render_exports(
    image: bytes | Image.Image,
    pose: Any,
    formats: Iterable[ExportFormat],
    *,
    pose_size: tuple[int, int] | None = None,
) -> dict[str, bytes]:
    """Several exports of one result, decoding and placing the pose once: ``{name: bytes}``.
    Formats that differ only in name (a TikTok video cover and an Instagram story) share one
    rendering."""
    source = _decode(image)
    fig = figure(pose, source.size, pose_size)
    rgb_by_fill: dict[str, Image.Image] = {}
    pictures: dict[tuple[Any, ...], Image.Image] = {}
    files: dict[tuple[Any, ...], bytes] = {}
    blur_cache: dict[tuple[int, int], Image.Image] = {}
    out: dict[str, bytes] = {}
    for fmt in formats:
        fill_key = fmt.fill_color if _has_alpha(source) else ""
        if fill_key not in rgb_by_fill:
            rgb_by_fill[fill_key] = _to_srgb(source, fmt.fill_color)
        rgb = rgb_by_fill[fill_key]
        frame = None if fmt.size is None else frame_for(rgb.size, fig, fmt)
        look = (fill_key, fmt.size, frame, fmt.fill, fmt.fill_color)
        if look not in pictures:
            pictures[look] = rgb if frame is None else compose(rgb, frame, fmt, blur_cache)
        file_key = (*look, fmt.file_type, fmt.quality, fmt.dpi)
        if file_key not in files:
            files[file_key] = encode(pictures[look], fmt)
        out[fmt.name] = files[file_key]
    return out


def _decode(image: bytes | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image
    try:
        img = Image.open(io.BytesIO(image), formats=_INPUT_FORMATS)
        if img.width * img.height > MAX_INPUT_PIXELS:
            raise InvalidInput(
                f"result image is {img.width}x{img.height}, over {MAX_INPUT_PIXELS:,} pixels",
                kind="invalid-image",
            )
        img.load()
    except InvalidInput:
        raise
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        raise InvalidInput(f"result is not a readable image: {exc}", kind="invalid-image") from exc
    return img


def _has_alpha(img: Image.Image) -> bool:
    return img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
        img.mode == "P" and "transparency" in img.info
    )


def _to_srgb(img: Image.Image, fill_color: str) -> Image.Image:
    """RGB in sRGB: an embedded profile of another space is converted, transparency is
    flattened onto ``fill_color``; the result carries no metadata."""
    icc = img.info.get("icc_profile")
    if icc and img.mode in ("RGB", "RGBA", "CMYK", "L", "LA"):
        try:
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            if "srgb" not in ImageCms.getProfileDescription(src).lower():
                alpha = img.getchannel("A") if img.mode in ("RGBA", "LA") else None
                base = img.convert("RGB") if img.mode in ("RGBA", "LA") else img
                converted = ImageCms.profileToProfile(
                    base, src, ImageCms.createProfile("sRGB"), outputMode="RGB"
                )
                if converted is not None:
                    img = converted
                    if alpha is not None:
                        img.putalpha(alpha)
        except (OSError, ImageCms.PyCMSError):
            pass  # an unreadable profile: take the pixels as sRGB, as browsers do
    if _has_alpha(img):
        rgba = img.convert("RGBA")
        flat = Image.new("RGB", rgba.size, _rgb(fill_color))
        flat.paste(rgba, mask=rgba.getchannel("A"))
        img = flat
    elif img.mode != "RGB":
        img = img.convert("RGB")
    else:
        img = img.copy() if img.info else img
    img.info = {}
    return img


def _rgb(colour: str) -> tuple[int, int, int]:
    return (int(colour[1:3], 16), int(colour[3:5], 16), int(colour[5:7], 16))


def compose(
    rgb: Image.Image,
    frame: Frame,
    fmt: ExportFormat,
    blur_cache: dict[tuple[int, int], Image.Image] | None = None,
) -> Image.Image:
    """The frame of ``rgb`` at the format's size; parts beyond the result are filled."""
    assert fmt.size is not None
    out_w, out_h = fmt.size
    iw, ih = rgb.size
    sx, sy = out_w / frame.width, out_h / frame.height
    # The part of the output the result covers, in whole output pixels.
    dx0 = max(0, round((0 - frame.left) * sx))
    dy0 = max(0, round((0 - frame.top) * sy))
    dx1 = min(out_w, round((iw - frame.left) * sx))
    dy1 = min(out_h, round((ih - frame.top) * sy))
    if dx1 <= dx0 or dy1 <= dy0:
        return _background(rgb, fmt, blur_cache)
    # ... and the source box that maps exactly onto it (clipped to the result).
    box = (
        max(0.0, frame.left + dx0 / sx),
        max(0.0, frame.top + dy0 / sy),
        min(float(iw), frame.left + dx1 / sx),
        min(float(ih), frame.top + dy1 / sy),
    )
    size = (dx1 - dx0, dy1 - dy0)
    method = Image.Resampling.LANCZOS if size[0] < (box[2] - box[0]) else Image.Resampling.BICUBIC
    piece = rgb.resize(size, method, box=box, reducing_gap=3.0)
    if size == (out_w, out_h):
        return piece
    canvas = _background(rgb, fmt, blur_cache)
    canvas.paste(piece, (dx0, dy0))
    return canvas


def _background(
    rgb: Image.Image,
    fmt: ExportFormat,
    blur_cache: dict[tuple[int, int], Image.Image] | None,
) -> Image.Image:
    assert fmt.size is not None
    if fmt.fill == "solid":
        return Image.new("RGB", fmt.size, _rgb(fmt.fill_color))
    cached = None if blur_cache is None else blur_cache.get(fmt.size)
    if cached is not None:
        return cached.copy()
    out_w, out_h = fmt.size
    small_w, small_h = max(1, out_w // _BLUR_SCALE), max(1, out_h // _BLUR_SCALE)
    # The result scaled to cover the small canvas, centred, blurred, dimmed, scaled back up.
    cover = max(small_w / rgb.width, small_h / rgb.height)
    cw, ch = max(small_w, round(rgb.width * cover)), max(small_h, round(rgb.height * cover))
    small = rgb.resize((cw, ch), Image.Resampling.BILINEAR, reducing_gap=2.0)
    left, top = (cw - small_w) // 2, (ch - small_h) // 2
    small = small.crop((left, top, left + small_w, top + small_h))
    small = small.filter(ImageFilter.GaussianBlur(_BLUR_RADIUS))
    small = small.point(lambda v: int(v * _BLUR_DIM))
    canvas = small.resize((out_w, out_h), Image.Resampling.BILINEAR)
    if blur_cache is not None:
        blur_cache[fmt.size] = canvas.copy()
    return canvas


def encode(picture: Image.Image, fmt: ExportFormat) -> bytes:
    """The picture as ``fmt``'s file: sRGB-tagged, no metadata, density for print."""
    buf = io.BytesIO()
    options: dict[str, Any] = {"icc_profile": srgb_profile()}
    if fmt.dpi is not None:
        options["dpi"] = (fmt.dpi, fmt.dpi)
    picture.info = {}
    if fmt.file_type == "jpeg":
        picture.save(buf, "JPEG", quality=fmt.quality, progressive=True, **options)
    elif fmt.file_type == "png":
        picture.save(buf, "PNG", compress_level=PNG_COMPRESS_LEVEL, **options)
    else:
        picture.save(buf, "WEBP", quality=fmt.quality, method=4, **options)
    return buf.getvalue()


def export_points(
    image_size: tuple[int, int],
    pose: Any,
    fmt: ExportFormat,
    *,
    pose_size: tuple[int, int] | None = None,
) -> list[tuple[float, float]]:
    """Where every visible keypoint lands in ``fmt``'s export of a result of ``image_size``
    (export pixels); empty without a pose. What the framing tests check."""
    fig = figure(pose, image_size, pose_size)
    if fig is None:
        return []
    if fmt.size is None:
        return list(fig.points)
    frame = frame_for(image_size, fig, fmt)
    return [frame.to_output(x, y, fmt.size) for x, y in fig.points]


def format_table(formats: Mapping[str, ExportFormat]) -> list[dict[str, Any]]:
    """The formats as JSON objects (for an API listing or the dashboard)."""
    return [f.to_json() for f in formats.values()]
