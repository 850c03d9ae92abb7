"""Generate the OpenPose raster fixtures from the reference preprocessor (run once, by hand).

The PNGs beside this script are what the ControlNet auxiliary preprocessors' own
``draw_bodypose`` / ``draw_handpose`` / ``draw_facepose`` (controlnet_aux, ``open_pose/util.py``,
called in ``draw_poses`` order: body, left hand, right hand, face per person) draw for the
inputs in ``cases.json``. ``test_openpose_fixtures.py`` asserts posegen draws identical bytes.

Needs packages posegen does not depend on: ``controlnet_aux`` (installed with ``--no-deps``: its
package ``__init__`` imports torch, so only ``open_pose/util.py`` is loaded, by file path) and
``matplotlib`` (``draw_handpose`` colours), plus opencv-python-headless and numpy::

    python -m venv /tmp/refvenv
    /tmp/refvenv/bin/pip install matplotlib opencv-python-headless numpy
    /tmp/refvenv/bin/pip install --no-deps controlnet_aux==0.0.10
    /tmp/refvenv/bin/python tests/controlnet/openpose_fixtures/make_fixtures.py

The inputs are seeded, so running it again rewrites the same files.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import random
import sys
import types
from pathlib import Path
from typing import Any, NamedTuple

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
# (width, height): square, the portrait and landscape sizes people ask for, 16:9, a tiny one.
SIZES = [(512, 512), (512, 768), (768, 512), (1024, 576), (64, 128)]


class Keypoint(NamedTuple):  # the reference's ``open_pose.body.Keypoint``
    x: float
    y: float
    score: float = 1.0
    id: int = -1


def load_reference() -> Any:
    spec = importlib.util.find_spec("controlnet_aux")
    if spec is None or not spec.submodule_search_locations:
        sys.exit("controlnet_aux is not installed (pip install --no-deps controlnet_aux)")
    util_py = Path(next(iter(spec.submodule_search_locations))) / "open_pose" / "util.py"
    # util.py only needs ``Keypoint`` from its sibling body.py (which imports torch): give it
    # that through stand-in parent packages, then load util.py itself unchanged.
    for name in ("controlnet_aux", "controlnet_aux.open_pose"):
        pkg = types.ModuleType(name)
        pkg.__path__ = [str(util_py.parent)]
        sys.modules[name] = pkg
    body = types.ModuleType("controlnet_aux.open_pose.body")
    body.Keypoint = Keypoint  # type: ignore[attr-defined]
    body.BodyResult = tuple  # type: ignore[attr-defined]
    sys.modules[body.__name__] = body
    util_spec = importlib.util.spec_from_file_location("controlnet_aux.open_pose.util", util_py)
    assert util_spec is not None and util_spec.loader is not None
    util = importlib.util.module_from_spec(util_spec)
    util_spec.loader.exec_module(util)
    return util


def r6(v: float) -> float:
    return round(v, 6)  # posegen keeps six decimals; fixtures use exactly what it stores


def jitter_person(rng: random.Random, cx: float, cy: float, scale: float) -> dict[str, Any]:
    """A plausible random body around (cx, cy), some points missing, some off the canvas."""
    template = [
        (0, -0.38), (0, -0.3), (-0.09, -0.29), (-0.13, -0.15), (-0.15, -0.02), (0.09, -0.29),
        (0.13, -0.15), (0.15, -0.02), (-0.06, 0.0), (-0.07, 0.2), (-0.07, 0.4), (0.06, 0.0),
        (0.07, 0.2), (0.07, 0.4), (-0.02, -0.4), (0.02, -0.4), (-0.04, -0.39), (0.04, -0.39),
    ]  # fmt: skip
    body: list[Any] = []
    for dx, dy in template:
        if rng.random() < 0.08:
            body.append(None)
            continue
        x = cx + (dx + rng.uniform(-0.04, 0.04)) * scale
        y = cy + (dy + rng.uniform(-0.04, 0.04)) * scale
        body.append([r6(x), r6(y), r6(rng.uniform(0.3, 1.0))])
    return {"body": body}


def hand(rng: random.Random, wx: float, wy: float, size: float) -> list[Any]:
    points: list[Any] = [[r6(wx), r6(wy), 1.0]]
    for finger in range(5):
        angle = -2.4 + finger * 0.35 + rng.uniform(-0.1, 0.1)
        for joint in range(1, 5):
            reach = size * (0.3 + 0.18 * joint)
            x = wx + reach * np.cos(angle) + rng.uniform(-0.004, 0.004)
            y = wy + reach * np.sin(angle) + rng.uniform(-0.004, 0.004)
            points.append([r6(float(x)), r6(float(y)), 1.0])
    return points


def face(rng: random.Random, cx: float, cy: float, size: float) -> list[Any]:
    points: list[Any] = []
    for i in range(70):
        t = i / 70 * 2 * np.pi
        ring = 1.0 if i < 27 else 0.55 if i < 48 else 0.3
        x = cx + size * ring * np.cos(t) * 0.8 + rng.uniform(-0.003, 0.003)
        y = cy + size * ring * np.sin(t) + rng.uniform(-0.003, 0.003)
        points.append([r6(float(x)), r6(float(y)), 1.0])
    return points


def cases() -> list[dict[str, Any]]:
    rng = random.Random(20261130)
    library = json.loads((ROOT / "src/posegen/library/builtin_poses.json").read_text())
    out: list[dict[str, Any]] = []
    # Every built-in pose, drawn on its own canvas at a pixel size of that aspect.
    for pose in library["poses"]:
        k = pose["keypoints"]
        w, h = k["canvas"]
        scale = 512 / min(w, h)
        size = (round(w * scale / 64) * 64, round(h * scale / 64) * 64)
        out.append({"name": f"library-{pose['slug']}", "size": size, "pose": k})
    # Random bodies (missing and off-canvas points, several people) at every size.
    for w, h in SIZES:
        for n in range(3):
            people = [
                jitter_person(
                    rng, rng.uniform(0.2, 0.8), rng.uniform(0.4, 0.6), rng.uniform(0.5, 1.3)
                )
                for _ in range(1 + n)
            ]
            out.append(
                {
                    "name": f"random-{w}x{h}-{n}",
                    "size": [w, h],
                    "pose": {"canvas": [w, h], "people": people},
                }
            )
    # openpose_full: hands and face, one hand missing, points at 0 (skipped), nulls.
    for w, h in SIZES:
        person = jitter_person(rng, 0.5, 0.5, 0.9)
        left = hand(rng, 0.3, 0.55, 0.12)
        right = hand(rng, 0.72, 0.5, 0.1)
        left[7] = None
        right[3] = [0.0, 0.0, 1.0]
        person["hands"] = [left, right if w != 64 else None]
        f = face(rng, 0.5, 0.17, 0.05)
        f[5] = None
        person["face"] = f
        out.append(
            {
                "name": f"full-{w}x{h}",
                "size": [w, h],
                "pose": {"canvas": [w, h], "people": [person]},
            }
        )
    # Degenerate limbs: both ends on one pixel, and exactly vertical / horizontal limbs.
    body: list[Any] = [None] * 18
    body[1], body[2], body[5], body[8] = [0.5, 0.25], [0.5, 0.25], [0.7, 0.25], [0.5, 0.75]
    out.append(
        {"name": "degenerate", "size": [256, 256], "pose": {"canvas": [256, 256], "body": body}}
    )
    return out


def reference_points(points: Any, missing: Any) -> Any:
    """Null -> the reference's None (body) or (0, 0) (hands, face: what its detector writes)."""
    if points is None:
        return None
    return [missing if p is None else Keypoint(p[0], p[1]) for p in points]


def draw(util: Any, case: dict[str, Any]) -> np.ndarray:
    w, h = case["size"]
    pose = case["pose"]
    people = pose.get("people") or [{"body": pose.get("body") or pose.get("keypoints")}]
    if isinstance(people[0], list):  # the library's legacy list shape
        people = (
            [{"body": people}]
            if not isinstance(people[0][0], list)
            else [{"body": p} for p in people]
        )
    canvas = np.zeros((h, w, 3), dtype=np.uint8)
    for person in people:
        canvas = util.draw_bodypose(canvas, reference_points(person["body"], None))
        hands = person.get("hands") or [None, None]
        zero = Keypoint(0.0, 0.0)
        canvas = util.draw_handpose(canvas, reference_points(hands[0], zero))
        canvas = util.draw_handpose(canvas, reference_points(hands[1], zero))
        canvas = util.draw_facepose(canvas, reference_points(person.get("face"), zero))
    return canvas


def main() -> None:
    parser = argparse.ArgumentParser(description="Draw the OpenPose fixtures with the reference.")
    parser.add_argument("--out", type=Path, default=HERE, help="Folder to write (default: here).")
    out = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    util = load_reference()
    all_cases = cases()
    for case in all_cases:
        image = draw(util, case)
        # The canvas is RGB; cv2 writes BGR, so swap to store what the reference returns.
        cv2.imwrite(
            str(out / f"{case['name']}.png"), image[:, :, ::-1], [cv2.IMWRITE_PNG_COMPRESSION, 9]
        )
    (out / "cases.json").write_text(json.dumps(all_cases, separators=(",", ":")) + "\n")
    print(f"wrote {len(all_cases)} fixtures to {out} (opencv {cv2.__version__})")


if __name__ == "__main__":
    main()
