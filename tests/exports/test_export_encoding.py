"""What the export files are: progressive JPEG, sRGB-tagged, no metadata from the source, print
density, original size for ``original``, transparency flattened, unreadable input refused."""

from __future__ import annotations

import io
import struct

import pytest
from PIL import Image, ImageCms, PngImagePlugin

from posegen.exceptions import InvalidInput
from posegen.exports import builtin_formats, parse_format, render_export, render_exports

FORMATS = builtin_formats()
POSE = {
    "canvas": [512, 512],
    "framing": "half_body",
    "people": [{"body": [[0.5, 0.2], [0.5, 0.35], [0.4, 0.36], None, None, [0.6, 0.36], None,
                         None, [0.45, 0.7], None, None, [0.55, 0.7], None, None,
                         [0.48, 0.18], [0.52, 0.18], None, None]}],
}  # fmt: skip


def _result_with_metadata(size: tuple[int, int] = (640, 640)) -> bytes:
    """A JPEG result carrying EXIF (camera, GPS-like text), a comment and an sRGB profile."""
    img = Image.linear_gradient("L").resize(size).convert("RGB")
    exif = Image.Exif()
    exif[0x010F] = "SecretCam"  # Make
    exif[0x0131] = "generator 1.0"  # Software
    buf = io.BytesIO()
    img.save(
        buf,
        "JPEG",
        exif=exif.tobytes(),
        comment=b"private note",
        icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes(),
    )
    return buf.getvalue()


def test_jpeg_exports_are_progressive_srgb_and_carry_no_source_metadata() -> None:
    source = _result_with_metadata()
    files = render_exports(source, POSE, FORMATS.values())
    assert set(files) == set(FORMATS)
    for name, data in files.items():
        fmt = FORMATS[name]
        assert b"SecretCam" not in data and b"private note" not in data
        with Image.open(io.BytesIO(data)) as img:
            assert img.format == ("JPEG" if fmt.file_type == "jpeg" else "PNG")
            assert img.size == (fmt.size or (640, 640))
            assert img.mode == "RGB"
            assert not img.getexif()
            profile = ImageCms.ImageCmsProfile(io.BytesIO(img.info["icc_profile"]))
            assert "sRGB" in ImageCms.getProfileDescription(profile)
            if fmt.file_type == "jpeg":
                assert img.info.get("progressive") == 1
                assert "comment" not in img.info
            else:
                assert not [k for k in img.info if k not in ("icc_profile", "dpi")]
            if fmt.dpi is not None:
                assert img.info["dpi"] == pytest.approx((fmt.dpi, fmt.dpi), abs=0.01)
            else:
                assert "dpi" not in img.info or fmt.file_type == "jpeg"


def test_png_text_chunks_do_not_travel_and_transparency_is_flattened_on_the_fill() -> None:
    img = Image.new("RGBA", (512, 512), (0, 0, 0, 0))
    img.paste((200, 10, 10, 255), (200, 100, 312, 400))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", "a private prompt")
    buf = io.BytesIO()
    img.save(buf, "PNG", pnginfo=info)
    fmt = parse_format(
        {"name": "tile", "width": 300, "height": 300, "file_type": "png",
         "fill": "solid", "fill_color": "#FFFFFF"}
    )  # fmt: skip
    data = render_export(buf.getvalue(), None, fmt)
    assert b"private prompt" not in data
    with Image.open(io.BytesIO(data)) as out:
        assert out.mode == "RGB" and out.size == (300, 300)
        assert out.getpixel((5, 5)) == (255, 255, 255)  # transparent became the fill colour
        assert out.getpixel((150, 150)) == (200, 10, 10)
        assert "prompt" not in out.info


def test_original_keeps_the_results_size_and_pixels() -> None:
    img = Image.effect_mandelbrot((333, 517), (-2, -1.5, 1, 1.5), 50).convert("RGB")
    data = render_export(img, POSE, FORMATS["original"])
    with Image.open(io.BytesIO(data)) as out:
        assert out.size == (333, 517)
        assert out.tobytes() == img.tobytes()


def test_webp_from_an_operator_format() -> None:
    fmt = parse_format({"name": "web", "width": 400, "height": 300, "file_type": "webp"})
    data = render_export(_result_with_metadata(), POSE, fmt)
    with Image.open(io.BytesIO(data)) as out:
        assert out.format == "WEBP" and out.size == (400, 300)
    assert b"SecretCam" not in data


@pytest.mark.parametrize("data", [b"", b"not an image", b"\x89PNG\r\n\x1a\n" + b"\0" * 40])
def test_unreadable_results_are_refused_with_a_clear_error(data: bytes) -> None:
    with pytest.raises(InvalidInput) as caught:
        render_export(data, POSE, FORMATS["instagram_feed"])
    assert caught.value.kind == "invalid-image"
    assert "not a readable image" in caught.value.message


def _linear_rgb_profile() -> bytes:
    """An ICC v2 display profile with sRGB's primaries and a linear (gamma 1.0) curve: a colour
    space other than sRGB, so a tagged image must be converted (built by hand: no such file ships
    with the system or Pillow)."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ " + b"\0" * 4 + s15(x) + s15(y) + s15(z)

    text = b"linear RGB test\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 8 + b"\0" * 70
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", 0x0100) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    offset = 128 + 4 + 12 * len(tags)
    table, body = struct.pack(">I", len(tags)), b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"lcms" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ "
        + b"\0" * 12 + b"acsp" + b"\0" * 24 + struct.pack(">I", 0)
        + s15(0.9642) + s15(1.0) + s15(0.8249) + b"\0" * 48
    )  # fmt: skip
    assert len(header) == 128
    return header + table + body


def test_a_result_in_another_colour_space_is_converted_to_srgb() -> None:
    """Mid grey in linear light is lighter in sRGB (about 188, not 128): converted, not just
    re-tagged; the same pixels untagged are taken as sRGB and stay 128."""
    tagged, untagged = io.BytesIO(), io.BytesIO()
    grey = Image.new("RGB", (256, 256), (128, 128, 128))
    grey.save(tagged, "PNG", icc_profile=_linear_rgb_profile())
    grey.save(untagged, "PNG")
    fmt = FORMATS["instagram_feed"]
    with Image.open(io.BytesIO(render_export(tagged.getvalue(), None, fmt))) as out:
        r, g, b = out.getpixel((540, 540))
        assert 180 <= r <= 196 and abs(r - g) <= 3 and abs(r - b) <= 3
        assert "sRGB" in ImageCms.getProfileDescription(
            ImageCms.ImageCmsProfile(io.BytesIO(out.info["icc_profile"]))
        )
    with Image.open(io.BytesIO(render_export(untagged.getvalue(), None, fmt))) as out:
        assert abs(out.getpixel((540, 540))[0] - 128) <= 3
