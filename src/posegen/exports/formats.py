"""The export formats: one table of data (size, file type, quality, print density, how the canvas
is extended), plus the formats an operator adds in ``POSEGEN_EXPORT_FORMATS`` without code.

Marketplace tiles use these published minimums (checked 2026-11; docs/exports.md lists the
sources): Shopee 500 x 500 px (1:1, at most 2 MB per image); Lazada 500 x 500 to 2000 x 2000 px,
product on at least 80 % of the longest side, white background; Tokopedia larger than
300 x 300 px, at most 5 MB; Amazon at least 1000 px on the longest side (zoom), product on
85 % of the frame, pure white background. Each tile here is larger than its minimum; a smaller
result is upscaled, and ``fit="subject"`` frames the figure tightly so it fills the tile.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, cast

from posegen.exceptions import ConfigError

FileType = Literal["jpeg", "png", "webp"]
Fill = Literal["blur", "solid"]
#: ``scene``: show as much of the picture as the aspect allows, moved so the figure is whole and
#: well placed; ``subject``: frame the figure itself (with its margin), as marketplace tiles want.
Fit = Literal["scene", "subject"]
FILE_TYPES: tuple[FileType, ...] = ("jpeg", "png", "webp")
FILLS: tuple[Fill, ...] = ("blur", "solid")
FITS: tuple[Fit, ...] = ("scene", "subject")
_EXTENSIONS = {"jpeg": "jpg", "png": "png", "webp": "webp"}
_CONTENT_TYPES = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp"}
#: Safe in a URL path segment, a storage key and a ZIP folder name.
NAME_PATTERN = re.compile(r"^[a-z0-9][a-z0-9_]{0,39}$")
MAX_SIDE = 10_000
MAX_PIXELS = 40_000_000
MAX_DPI = 2400
_COLOUR = re.compile(r"^#[0-9A-Fa-f]{6}$")


@dataclass(frozen=True)
class ExportFormat:
    """One output format. ``width`` and ``height`` both None: the result's own size."""

    name: str
    width: int | None
    height: int | None
    file_type: FileType
    quality: int
    dpi: int | None
    fill: Fill
    fill_color: str
    label: str
    fit: Fit = "scene"

    @property
    def size(self) -> tuple[int, int] | None:
        if self.width is None or self.height is None:
            return None
        return (self.width, self.height)

    @property
    def is_print(self) -> bool:
        """Print formats carry a density; the speed goal excludes them (measured apart)."""
        return self.dpi is not None

    def to_json(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


_W = "#FFFFFF"
_K = "#000000"
# name, width, height, file type, quality, dpi, fill, fill colour, fit, label
_TABLE: tuple[tuple[Any, ...], ...] = (
    ("instagram_story", 1080, 1920, "jpeg", 90, None, "blur", _K, "scene", "Instagram story"),
    ("instagram_feed", 1080, 1080, "jpeg", 85, None, "blur", _K, "scene", "Instagram feed (square)"),
    ("instagram_portrait", 1080, 1350, "jpeg", 85, None, "blur", _K, "scene", "Instagram portrait (4:5)"),
    ("tiktok", 1080, 1920, "jpeg", 90, None, "blur", _K, "scene", "TikTok"),
    ("whatsapp_status", 720, 1280, "jpeg", 85, None, "blur", _K, "scene", "WhatsApp status"),
    ("facebook_post", 1200, 630, "jpeg", 85, None, "blur", _K, "scene", "Facebook post"),
    ("twitter_post", 1200, 675, "jpeg", 85, None, "blur", _K, "scene", "X / Twitter post"),
    ("linkedin_post", 1200, 627, "jpeg", 85, None, "blur", _K, "scene", "LinkedIn post"),
    ("youtube_thumbnail", 1280, 720, "jpeg", 90, None, "blur", _K, "scene", "YouTube thumbnail"),
    ("pinterest_pin", 1000, 1500, "jpeg", 85, None, "blur", _K, "scene", "Pinterest pin (2:3)"),
    ("shopee_product", 1000, 1000, "jpeg", 95, None, "solid", _W, "subject", "Shopee product tile"),
    ("lazada_product", 1000, 1000, "jpeg", 95, None, "solid", _W, "subject", "Lazada product tile"),
    ("tokopedia_product", 1200, 1200, "jpeg", 95, None, "solid", _W, "subject", "Tokopedia product tile"),
    ("amazon_product", 1600, 1600, "jpeg", 95, None, "solid", _W, "subject", "Amazon product image"),
    ("print_a4", 2480, 3508, "png", 100, 300, "solid", _W, "scene", "Print A4 (300 dpi)"),
    ("print_4x6", 1800, 1200, "png", 100, 300, "solid", _W, "scene", "Print 6x4 in (300 dpi)"),
    ("original", None, None, "png", 100, None, "solid", _K, "scene", "Original"),
)  # fmt: skip
_COLUMNS = ("name", "width", "height", "file_type", "quality", "dpi", "fill", "fill_color", "fit",
            "label")  # fmt: skip


def builtin_formats() -> dict[str, ExportFormat]:
    """The shipped formats by name, in table order (sixteen plus ``original``)."""
    return {row[0]: parse_format(dict(zip(_COLUMNS, row, strict=True))) for row in _TABLE}


def load_formats(settings: Any) -> dict[str, ExportFormat]:
    """Built-ins plus the operator's ``POSEGEN_EXPORT_FORMATS``: JSON text (a list of format
    objects) or the path of a file holding it. An entry named like a built-in replaces it.
    :class:`ConfigError` names the setting, the entry and the field at fault."""
    formats = builtin_formats()
    raw = getattr(settings, "export_formats", "") or ""
    text = raw.strip() if isinstance(raw, str) else ""
    if not text:
        return formats
    if text[0] not in "[{":
        path = Path(text).expanduser()
        try:
            text = path.read_text("utf-8")
        except OSError as exc:
            raise ConfigError(
                f"POSEGEN_EXPORT_FORMATS: cannot read {path}: {exc.strerror or exc}"
            ) from exc
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"POSEGEN_EXPORT_FORMATS: not valid JSON: {exc}") from exc
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ConfigError("POSEGEN_EXPORT_FORMATS: must be a JSON list of format objects")
    seen: set[str] = set()
    for index, entry in enumerate(data):
        fmt = parse_format(entry, where=f"POSEGEN_EXPORT_FORMATS[{index}]")
        if fmt.name in seen:
            raise ConfigError(f"POSEGEN_EXPORT_FORMATS: format {fmt.name!r} is given twice")
        seen.add(fmt.name)
        formats[fmt.name] = fmt
    return formats


def parse_format(raw: Any, *, where: str = "export format") -> ExportFormat:
    """One format from a JSON-like object, checked (the built-in table goes through it too).

    Required: ``name``, ``width`` and ``height`` (both null: the result's size). Optional:
    ``file_type`` (jpeg), ``quality`` (90; 1..100, ignored by PNG, which is lossless), ``dpi``
    (null), ``fill`` (blur), ``fill_color`` (#000000), ``fit`` (scene), ``label`` (the name)."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: must be an object with name, width, height, ...")
    known = {f.name for f in fields(ExportFormat)}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown field(s) {', '.join(map(str, unknown))} "
            f"(known: {', '.join(sorted(known))})"
        )
    name = raw.get("name")
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise ConfigError(
            f"{where}.name: must be 1-40 lowercase letters, digits or _ (starting with a letter "
            f"or digit), not {name!r}"
        )
    where = f"{where} ({name})"
    for key in ("width", "height"):
        if key not in raw:
            raise ConfigError(f"{where}.{key}: is required (null for the result's own size)")
    width, height = raw["width"], raw["height"]
    if (width is None) != (height is None):
        raise ConfigError(f"{where}: give both width and height, or neither (original size)")
    if width is not None:
        width = _int(width, f"{where}.width", 16, MAX_SIDE)
        height = _int(height, f"{where}.height", 16, MAX_SIDE)
        if width * height > MAX_PIXELS:
            raise ConfigError(f"{where}: {width}x{height} is over {MAX_PIXELS:,} pixels")
    file_type = raw.get("file_type", "jpeg")
    if file_type not in FILE_TYPES:
        raise ConfigError(f"{where}.file_type: one of {', '.join(FILE_TYPES)}, not {file_type!r}")
    quality = _int(raw.get("quality", 90), f"{where}.quality", 1, 100)
    dpi = raw.get("dpi")
    if dpi is not None:
        dpi = _int(dpi, f"{where}.dpi", 1, MAX_DPI)
        if file_type == "webp":
            raise ConfigError(f"{where}.dpi: WebP files carry no density; use jpeg or png")
    fill = raw.get("fill", "blur")
    if fill not in FILLS:
        raise ConfigError(f"{where}.fill: one of {', '.join(FILLS)}, not {fill!r}")
    colour = raw.get("fill_color", "#000000")
    if not isinstance(colour, str) or not _COLOUR.match(colour):
        raise ConfigError(f"{where}.fill_color: a colour as #RRGGBB, not {colour!r}")
    fit = raw.get("fit", "scene")
    if fit not in FITS:
        raise ConfigError(f"{where}.fit: one of {', '.join(FITS)}, not {fit!r}")
    label = raw.get("label", name)
    if not isinstance(label, str) or not label.strip() or len(label) > 80:
        raise ConfigError(f"{where}.label: 1-80 characters of text, not {label!r}")
    return ExportFormat(
        name=name,
        width=width,
        height=height,
        file_type=cast(FileType, file_type),
        quality=quality,
        dpi=dpi,
        fill=cast(Fill, fill),
        fill_color=colour.upper(),
        label=label.strip(),
        fit=cast(Fit, fit),
    )


def _int(value: Any, where: str, lo: int, hi: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where}: a whole number, not {value!r}")
    if not lo <= value <= hi:
        raise ConfigError(f"{where}: must be within {lo}..{hi}, not {value}")
    return value


def file_extension(fmt: ExportFormat) -> str:
    """``jpg``, ``png`` or ``webp`` (no dot)."""
    return _EXTENSIONS[fmt.file_type]


def content_type(fmt: ExportFormat) -> str:
    return _CONTENT_TYPES[fmt.file_type]
