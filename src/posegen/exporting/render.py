"""The one place that calls the export renderer (``posegen.exports``: formats as data, framing
by the pose's keypoints). Everything else in this package sees only names and bytes."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from PIL import Image

from posegen.config import Settings
from posegen.exceptions import InvalidInput
from posegen.exports import (
    ExportFormat,
    content_type,
    file_extension,
    load_formats,
    render_exports,
)


def formats(settings: Settings) -> dict[str, ExportFormat]:
    """The export formats this deployment offers, by name (built-in table + settings)."""
    return load_formats(settings)


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


def render_many(
    image: bytes | Image.Image,
    pose: Any,
    names: Sequence[str],
    table: dict[str, ExportFormat],
) -> list[Rendered]:
    """One result in each of ``names`` (``pose``: its pose JSON, or None without one), the
    image decoded and the figure placed once for all of them."""
    if not names:
        return []
    chosen = [table[n] for n in names]
    files = render_exports(image, pose, chosen)
    out = []
    for fmt in chosen:
        data = files[fmt.name]
        with Image.open(io.BytesIO(data)) as made:
            width, height = made.size
        out.append(Rendered(fmt.name, data, file_extension(fmt), content_type(fmt), width, height))
    return out
