"""The format table and the operator's additions: what ships, and what a mistake is told."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest

from posegen.config import load_settings
from posegen.exceptions import ConfigError
from posegen.exports import (
    ExportFormat,
    builtin_formats,
    content_type,
    file_extension,
    load_formats,
)

#: The issue's list (the original app's twelve, three planned) and the ROADMAP's sixteenth.
EXPECTED = {
    "instagram_story": (1080, 1920), "instagram_feed": (1080, 1080),
    "instagram_portrait": (1080, 1350), "tiktok": (1080, 1920),
    "shopee_product": (1000, 1000), "lazada_product": (1000, 1000),
    "tokopedia_product": (1200, 1200), "facebook_post": (1200, 630),
    "twitter_post": (1200, 675), "linkedin_post": (1200, 627), "print_a4": (2480, 3508),
    "print_4x6": (1800, 1200), "whatsapp_status": (720, 1280),
    "youtube_thumbnail": (1280, 720), "pinterest_pin": (1000, 1500),
    "amazon_product": (1600, 1600), "original": None,
}  # fmt: skip
#: Published minimums of the marketplaces (docs/exports.md): shortest side, and a maximum.
MARKETPLACE_MIN = {"shopee_product": 500, "lazada_product": 500, "tokopedia_product": 301,
                   "amazon_product": 1000}  # fmt: skip


def test_the_built_in_table_holds_sixteen_formats_and_original() -> None:
    formats = builtin_formats()
    assert {name: f.size for name, f in formats.items()} == EXPECTED
    assert len([f for f in formats.values() if f.size is not None]) == 16
    for name, fmt in formats.items():
        assert fmt.name == name and fmt.label
        assert fmt.file_type in ("jpeg", "png")
    assert formats["original"].file_type == "png"


def test_marketplace_tiles_meet_the_published_minimums_and_print_carries_300_dpi() -> None:
    formats = builtin_formats()
    for name, minimum in MARKETPLACE_MIN.items():
        fmt = formats[name]
        assert fmt.width is not None and fmt.height is not None
        assert min(fmt.width, fmt.height) >= minimum and max(fmt.width, fmt.height) <= 2000
        assert fmt.fit == "subject" and fmt.fill == "solid" and fmt.fill_color == "#FFFFFF"
        assert fmt.quality >= 90
    a4, photo = formats["print_a4"], formats["print_4x6"]
    assert a4.dpi == photo.dpi == 300
    # A4 is 210 x 297 mm; 6 x 4 in: the pixels are the paper at 300 dpi.
    assert (a4.width, a4.height) == (round(210 / 25.4 * 300), round(297 / 25.4 * 300))
    assert (photo.width, photo.height) == (6 * 300, 4 * 300)
    assert {f.name for f in formats.values() if f.is_print} == {"print_a4", "print_4x6"}


def test_file_names_and_content_types() -> None:
    formats = builtin_formats()
    assert file_extension(formats["instagram_story"]) == "jpg"
    assert content_type(formats["instagram_story"]) == "image/jpeg"
    assert file_extension(formats["print_a4"]) == "png"
    assert content_type(formats["original"]) == "image/png"


def test_operators_add_and_replace_formats_from_the_setting_or_a_file(tmp_path: Path) -> None:
    extra = [
        {"name": "etsy_listing", "width": 2000, "height": 1600, "file_type": "webp",
         "quality": 80, "fill": "solid", "fill_color": "#ffffff", "fit": "subject",
         "label": "Etsy listing"},
        {"name": "instagram_feed", "width": 1080, "height": 1080, "quality": 70},
    ]  # fmt: skip
    settings = load_settings(export_formats=json.dumps(extra))
    formats = load_formats(settings)
    assert len(formats) == len(EXPECTED) + 1
    etsy = formats["etsy_listing"]
    assert etsy == ExportFormat(
        "etsy_listing", 2000, 1600, "webp", 80, None, "solid", "#FFFFFF", "Etsy listing", "subject"
    )
    assert file_extension(etsy) == "webp" and content_type(etsy) == "image/webp"
    assert formats["instagram_feed"].quality == 70  # replaced; the defaults fill the rest
    assert formats["instagram_feed"].fill == "blur" and formats["instagram_feed"].label
    path = tmp_path / "formats.json"
    path.write_text(json.dumps(extra[:1]))
    assert load_formats(load_settings(export_formats=str(path)))["etsy_listing"] == etsy
    assert load_formats(load_settings(export_formats="")) == builtin_formats()
    assert load_formats(SimpleNamespace()) == builtin_formats()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[{", "not valid JSON"),
        ('"x"', "cannot read"),
        ("[1]", "[0]: must be an object"),
        ('[{"name": "Bad Name", "width": 1, "height": 1}]', "[0].name"),
        ('[{"name": "a", "width": 100}]', "(a).height: is required"),
        ('[{"name": "a", "width": 100, "height": null}]', "give both width and height"),
        ('[{"name": "a", "width": 8, "height": 100}]', "(a).width: must be within 16..10000"),
        ('[{"name": "a", "width": 10000, "height": 10000}]', "over 40,000,000 pixels"),
        ('[{"name": "a", "width": 100, "height": 100, "file_type": "gif"}]', "file_type: one of"),
        ('[{"name": "a", "width": 100, "height": 100, "quality": 0}]', "quality: must be within"),
        ('[{"name": "a", "width": 100, "height": 100, "quality": 9.5}]', "a whole number"),
        ('[{"name": "a", "width": 100, "height": 100, "file_type": "webp", "dpi": 300}]', "WebP"),
        ('[{"name": "a", "width": 100, "height": 100, "fill": "mirror"}]', "fill: one of"),
        ('[{"name": "a", "width": 100, "height": 100, "fill_color": "red"}]', "#RRGGBB"),
        ('[{"name": "a", "width": 100, "height": 100, "fit": "face"}]', "fit: one of"),
        ('[{"name": "a", "width": 100, "height": 100, "size": 3}]', "unknown field(s) size"),
        (
            '[{"name": "a", "width": 100, "height": 100}, {"name": "a", "width": 9, "height": 9}]',
            "[1] (a).width",
        ),
        (
            '[{"name": "a", "width": 100, "height": 100}, {"name":"a","width":99,"height":90}]',
            "'a' is given twice",
        ),
    ],
)
def test_a_bad_format_setting_says_which_entry_and_field(value: str, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_formats(load_settings(export_formats=value))
    assert "POSEGEN_EXPORT_FORMATS" in caught.value.message
    assert message in caught.value.message
