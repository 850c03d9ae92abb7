"""Build ``builtin_poses.json`` from the pose specs (joint angles on one skeleton).

    python -m posegen.library.author --write        # regenerate the shipped JSON
    python -m posegen.library.author --check        # exit 1 if the JSON is not the specs' output
    python -m posegen.library.author --sheet test-output/library-sheet.png   # contact sheet

The JSON is generated, never edited by hand: a test asserts it equals :func:`library_json`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from posegen.library.pose_specs import ATTRIBUTES, CATEGORIES, POSES
from posegen.library.skeleton import COCO, FOOT, Skeleton, angles_from_spec, pose

DATA_PATH = Path(__file__).with_name("builtin_poses.json")
CANVAS = (512, 512)
MARGIN = 0.07
#: How far below the hips (half body) or the neck (portrait) the frame ends, in head heights.
HALF_BODY_BELOW_HIPS = 0.9
PORTRAIT_BELOW_NECK = 1.9
#: Keys a spec may have besides its attributes (a typo must not pass silently).
SPEC_KEYS = frozenset(
    {"slug", "name", "category", "description", "tags", "legs_upright"}
    | {"yaw", "pitch", "roll", "bend", "side", "twist", "head_yaw", "head_pitch", "head_roll"}
    | {f"{s}_{part}" for s in "rl" for part in ("arm", "leg", "hand", "foot", "elbow", "knee")}
)


def skeleton_of(spec: Mapping[str, Any]) -> Skeleton:
    return pose(angles_from_spec(spec))


def keypoints(skel: Skeleton, framing: str) -> dict[str, Any]:
    """The canonical pose JSON of a posed skeleton, fitted to its canvas for ``framing``."""
    # Orthographic projection: image x = world x, image y = -world y (down).
    proj = {k: np.array([v[0], -v[1]]) for k, v in skel.joints.items()}
    top = np.array([skel.head_top[0], -skel.head_top[1]])
    seen = [proj[k] for k in COCO if skel.visible[k]]
    fit = [*seen, top]
    fit += [proj[a] + np.array([0.0, FOOT]) for a in ("r_ankle", "l_ankle")]
    if framing == "full_body":
        lo = np.min(fit, axis=0)
        hi = np.max(fit, axis=0)
        bottom = None
    else:
        if framing == "half_body":
            bottom = max(proj["r_hip"][1], proj["l_hip"][1]) + HALF_BODY_BELOW_HIPS
        else:
            bottom = proj["neck"][1] + PORTRAIT_BELOW_NECK
        inside = [p for p in fit if p[1] <= bottom]
        lo = np.min(inside, axis=0)
        hi = np.max(inside, axis=0)
        hi = np.array([hi[0], bottom])
    width, height = CANVAS
    span = hi - lo
    # Scale in pixels per head height, the same on both axes (the canvas is not stretched).
    usable = (1 - 2 * MARGIN) if bottom is None else (1 - MARGIN)
    scale = min(width * (1 - 2 * MARGIN) / span[0], height * usable / span[1])
    centre_x = (lo[0] + hi[0]) / 2
    if bottom is None:
        offset_y = height / 2 - scale * (lo[1] + hi[1]) / 2
    else:
        offset_y = height - scale * bottom  # the frame's bottom edge cuts the body
    body: list[list[float] | None] = []
    for name in COCO:
        x = (width / 2 + scale * (proj[name][0] - centre_x)) / width
        y = (offset_y + scale * proj[name][1]) / height
        if not skel.visible[name] or not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            body.append(None)
        else:
            body.append([round(float(x), 4), round(float(y), 4), 1.0])
    return {"canvas": [width, height], "framing": framing, "people": [{"body": body}]}


def pose_entry(spec: Mapping[str, Any]) -> dict[str, Any]:
    """One pose of ``builtin_poses.json``: its metadata, attributes and keypoints."""
    unknown = sorted(set(spec) - SPEC_KEYS - set(ATTRIBUTES))
    if unknown:
        raise ValueError(f"pose spec {spec['slug']}: unknown key(s) {', '.join(unknown)}")
    entry: dict[str, Any] = {
        "slug": spec["slug"],
        "name": spec["name"],
        "category": spec["category"],
        "description": spec["description"],
        "tags": list(spec["tags"]),
    }
    for key, default in ATTRIBUTES.items():
        entry[key] = spec.get(key, default)
    entry["keypoints"] = keypoints(skeleton_of(spec), entry["framing"])
    return entry


def library_json() -> str:
    """The text of ``builtin_poses.json``: one category or pose per line (readable diffs)."""
    lines = ['{\n "version": 3,\n "generated_by": "python -m posegen.library.author --write",']
    lines.append(' "categories": [')
    lines.append(",\n".join("  " + json.dumps(c, ensure_ascii=False) for c in CATEGORIES))
    lines.append(" ],")
    lines.append(' "poses": [')
    lines.append(",\n".join("  " + json.dumps(pose_entry(p), ensure_ascii=False) for p in POSES))
    lines.append(" ]\n}\n")
    return "\n".join(lines)


def contact_sheet(path: Path, columns: int = 12, tile: int = 160) -> Path:
    """Every built-in pose drawn as its OpenPose map with its slug, on one PNG."""
    from PIL import Image, ImageDraw

    from posegen.controlnet import render_keypoints

    entries = [pose_entry(p) for p in POSES]
    rows = -(-len(entries) // columns)
    label = 14
    sheet = Image.new("RGB", (columns * tile, rows * (tile + label)), (40, 40, 40))
    draw = ImageDraw.Draw(sheet)
    for i, entry in enumerate(entries):
        x, y = (i % columns) * tile, (i // columns) * (tile + label)
        img = render_keypoints(entry["keypoints"], 512, 512).convert("RGB").resize((tile, tile))
        sheet.paste(img, (x, y))
        draw.rectangle((x, y, x + tile - 1, y + tile - 1), outline=(90, 90, 90))
        draw.text((x + 2, y + tile), entry["slug"][:26], fill=(230, 230, 230))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path


def _say(line: str, stream: TextIO = sys.stdout) -> None:
    """A line for the person running this script (a tool, not the service: no logging)."""
    stream.write(line + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--write", action="store_true", help="Rewrite builtin_poses.json.")
    parser.add_argument("--check", action="store_true", help="Fail if the JSON is stale.")
    parser.add_argument("--sheet", type=Path, help="Draw a contact sheet of every pose here.")
    args = parser.parse_args(argv)
    text = library_json()
    if args.write:
        DATA_PATH.write_text(text, "utf-8")
        _say(f"wrote {len(POSES)} poses in {len(CATEGORIES)} categories to {DATA_PATH}")
        _say(
            "now redraw the OpenPose reference fixtures of the library poses: see "
            "tests/controlnet/openpose_fixtures/make_fixtures.py"
        )
    if args.check and DATA_PATH.read_text("utf-8") != text:
        _say(f"{DATA_PATH} is stale: run python -m posegen.library.author --write", sys.stderr)
        return 1
    if args.sheet:
        _say(f"contact sheet: {contact_sheet(args.sheet)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
