"""Untrusted bytes through the cache: only whole PNG/JPEG/WebP images under the caps get in."""

from __future__ import annotations

import io
from typing import Any

import pytest
from maps_origin import Origin, bomb_png, image_bytes, noisy_png
from PIL import Image

from posegen.controlnet import MapCache
from posegen.controlnet.validate import decode, normalise, snap
from posegen.exceptions import FetchError

BAD_BODIES = {
    "html": (b"<html><body>not an image</body></html>", "not-an-image"),
    "empty": (b"", "not-an-image"),
    "gif": (image_bytes("GIF"), "bad-format"),
    "bmp": (image_bytes("BMP"), "bad-format"),
    "tiff": (image_bytes("TIFF"), "bad-format"),
    "truncated-png": (noisy_png()[:20_000], "truncated"),
    "truncated-jpeg": (image_bytes("JPEG", size=(256, 256))[:300], "truncated"),
    "bomb-error": (bomb_png(20_000, 20_000), "decompression-bomb"),
    "bomb-warning": (bomb_png(10_000, 10_000), "decompression-bomb"),
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_bad_bodies_get_their_kind_and_nothing_is_cached(
    origin: Origin, make_settings: Any, name: str
) -> None:
    body, kind = BAD_BODIES[name]
    # A pixel cap above Pillow's bomb threshold, so the bomb check itself is what stops them.
    cache = MapCache(make_settings(image_max_pixels=200_000_000))
    url = origin.add(f"/{name}", body)
    try:
        with pytest.raises(FetchError) as err:
            cache.load(url)
        assert err.value.kind == kind
        assert cache.usage().entries == 0
        assert cache.stats()[f"errors_{kind}"] == 1
    finally:
        cache.close()


def test_image_over_the_pixel_cap(origin: Origin, make_settings: Any) -> None:
    cache = MapCache(make_settings(image_max_pixels=64 * 64))
    url = origin.add("/big.png", image_bytes(size=(100, 100)))
    try:
        with pytest.raises(FetchError) as err:
            cache.load(url)
    finally:
        cache.close()
    assert err.value.kind == "too-many-pixels"
    assert cache.usage().entries == 0


def test_default_cap_refuses_a_bomb_before_decoding() -> None:
    with pytest.raises(FetchError) as err:
        decode(bomb_png(5000, 5000), 4096 * 4096)
    assert err.value.kind == "too-many-pixels"


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_accepted_formats_are_normalised_to_rgb_png_snapped_to_64(
    origin: Origin, cache: MapCache, fmt: str
) -> None:
    url = origin.add(f"/ok.{fmt.lower()}", image_bytes(fmt, size=(200, 100)))
    result = cache.load(url)
    assert result is not None
    img = Image.open(io.BytesIO(result.png))
    assert img.format == "PNG" and img.mode == "RGB"
    assert img.size == (192, 128) == result.size
    sized = cache.load(url, (300, 300))
    assert sized is not None and sized.size == (320, 320)


def test_transparency_is_composited_on_black() -> None:
    png = normalise(image_bytes("PNG", (64, 64), (255, 0, 0, 0), mode="RGBA"), 10_000)
    img = Image.open(io.BytesIO(png))
    assert img.mode == "RGB" and img.getpixel((1, 1)) == (0, 0, 0)
    palette = normalise(image_bytes("PNG", (64, 64), 3, mode="P"), 10_000)
    assert Image.open(io.BytesIO(palette)).mode == "RGB"


def test_snap() -> None:
    assert [snap(n) for n in (1, 31, 32, 95, 96, 512, 1000)] == [64, 64, 64, 64, 128, 512, 1024]


def test_a_thin_image_is_not_scaled_past_the_cap() -> None:
    """100,000 pixels wide and 1 high is under a 100,000-pixel cap, but snapping each side to
    64 would make it 99,968 x 64 (6.4 megapixels): refused, with the size it would have had."""
    buf = io.BytesIO()
    Image.new("L", (100_000, 1), 200).save(buf, "PNG")
    with pytest.raises(FetchError) as err:
        normalise(buf.getvalue(), 100_000)
    assert err.value.kind == "too-many-pixels"
    assert "99968x64" in err.value.message
    # Asked for an explicit size over the cap, too.
    square = io.BytesIO()
    Image.new("RGB", (64, 64)).save(square, "PNG")
    with pytest.raises(FetchError):
        normalise(square.getvalue(), 100_000, size=(4096, 4096))
    assert len(normalise(square.getvalue(), 100_000, size=(256, 256))) > 0
