"""The one place that calls the export renderer (``posegen.exports``: formats as data, framing
by the pose's keypoints). Everything else in this package sees only names and bytes."""

from __future__ import annotations

import importlib
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from posegen.config import Settings
from posegen.exceptions import InvalidInput


def _renderer() -> Any:
    # Imported by name: the renderer lands on its own branch (see the README's exports table).
    return importlib.import_module("posegen.exports")


def formats(settings: Settings) -> dict[str, Any]:
    """The export formats this deployment offers, by name (built-in table + settings)."""
    table: dict[str, Any] = _renderer().load_formats(settings)
    return table


def check(settings: Settings, names: list[str]) -> list[str]:
    """``names`` without repeats, in order; InvalidInput (``unknown-export-format``) naming
    every one the table lacks."""
    known = formats(settings)
    wanted = list(dict.fromkeys(names))
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise InvalidInput(
            f"unknown export formats: {', '.join(unknown[:10])} "
            f"(known: {', '.join(sorted(known))})",
            kind="unknown-export-format",
        )
    return wanted


@dataclass(frozen=True)
class Rendered:
    format: str
    data: bytes
    ext: str
    content_type: str
    width: int
    height: int


def render(
    settings: Settings, image: bytes | Image.Image, pose: Any, name: str, table: dict[str, Any]
) -> Rendered:
    """One result in one format (``pose``: the pose JSON, or None without one)."""
    mod = _renderer()
    fmt = table[name]
    data: bytes = mod.render_export(image, pose, fmt)
    with Image.open(io.BytesIO(data)) as out:
        width, height = out.size
    ext = str(mod.file_extension(fmt)).lstrip(".").lower()
    if ext == "jpeg":
        ext = "jpg"
    if ext == "tiff":
        ext = "tif"
    return Rendered(name, data, ext, str(mod.content_type(fmt)), width, height)
