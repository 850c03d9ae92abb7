"""Archive member names for exports: ``<format>/<pose name>-v<n>.<ext>``, and
``<format>/<pose name>-v<n>.bg-<digest>.<ext>`` for a background variant of that result;
readable (the pose's name, variations from 1), safe (lower-case ASCII letters, digits, dashes
and the dots shown: no path separators, no dot-dot, no control characters) and unique (a pose
id is added where two poses share a name)."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence

from posegen.exporting.records import ExportRow

_NOT_SAFE = re.compile(r"[^a-z0-9]+")
_VARIANT = re.compile(r"[^a-z0-9-]+")


def slug(name: str | None, fallback: str) -> str:
    """``"Warrior II (left)"`` -> ``"warrior-ii-left"``; ``fallback`` when nothing is left."""
    text = unicodedata.normalize("NFKD", name or "").encode("ascii", "ignore").decode()
    out = _NOT_SAFE.sub("-", text.lower()).strip("-")[:60].strip("-")
    return out or fallback


def member_names(rows: Sequence[ExportRow], pose_names: Mapping[int, str]) -> list[str]:
    """One name per row, in order (see the module docstring)."""
    base: dict[int | None, str] = {}
    for r in rows:
        if r.pose_id not in base:
            base[r.pose_id] = (
                "text"
                if r.pose_id is None
                else slug(pose_names.get(r.pose_id), f"pose-{r.pose_id}")
            )
    owners: dict[str, set[int | None]] = {}
    for pid, b in base.items():
        owners.setdefault(b, set()).add(pid)
    stem = {
        pid: (b if len(owners[b]) == 1 else f"{b}-{pid if pid is not None else 'text'}")
        for pid, b in base.items()
    }
    names: list[str] = []
    seen: set[str] = set()
    for r in rows:
        ext = r.file.path.rsplit(".", 1)[-1]
        variant = _VARIANT.sub("-", r.variant_key.lower()).strip("-")
        tail = f".{variant}.{ext}" if variant else f".{ext}"
        name = f"{r.file.format}/{stem[r.pose_id]}-v{r.variation_index + 1}{tail}"
        n = 2
        while name in seen:  # defensive: never two members with one name
            name = f"{r.file.format}/{stem[r.pose_id]}-v{r.variation_index + 1}-{n}{tail}"
            n += 1
        seen.add(name)
        names.append(name)
    return names
