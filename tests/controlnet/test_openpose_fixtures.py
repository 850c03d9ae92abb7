"""posegen's OpenPose maps are byte-identical to the reference preprocessor's.

The fixtures were drawn once by controlnet_aux's own ``draw_bodypose`` / ``draw_handpose`` /
``draw_facepose`` (``openpose_fixtures/make_fixtures.py``): every built-in pose at its authored
canvas, random bodies with missing and off-canvas points at five sizes, several people, hands and
face ("openpose_full"), degenerate limbs. posegen draws the same points and must give the same
pixels; where the pose fits its canvas, the public path (parse, place, draw) gives them too.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from posegen.controlnet import render_keypoints
from posegen.controlnet.render import draw_openpose
from posegen.pose import parse_pose, placement

FIXTURES = Path(__file__).parent / "openpose_fixtures"
CASES: list[dict[str, Any]] = json.loads((FIXTURES / "cases.json").read_text())


def test_the_fixtures_cover_bodies_hands_faces_and_every_library_pose() -> None:
    library = json.loads(
        (Path(__file__).parents[2] / "src/posegen/library/builtin_poses.json").read_text()
    )
    names = {c["name"] for c in CASES}
    assert {f"library-{p['slug']}" for p in library["poses"]} <= names
    people = [p for c in CASES for p in c["pose"].get("people", [])]
    assert any(p.get("hands") and all(p["hands"]) for p in people)
    assert any(p.get("face") for p in people)
    assert any(len(c["pose"].get("people", [])) > 1 for c in CASES)
    assert len({tuple(c["size"]) for c in CASES}) >= 5


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_identical_pixels_to_the_reference(case: dict[str, Any]) -> None:
    width, height = case["size"]
    with Image.open(FIXTURES / f"{case['name']}.png") as ref:
        expected = np.asarray(ref.convert("RGB"))
    assert expected.any(), "a fixture must draw something"
    pose = parse_pose(case["pose"])
    got = draw_openpose(pose.people, width, height)
    assert got.shape == expected.shape
    differing = int((got != expected).any(axis=2).sum())
    assert differing == 0, f"{differing} pixels differ from the reference"
    assert got.tobytes() == expected.tobytes()
    if placement(pose, width, height).identity:
        # Drawn on the canvas it was authored for, the map is the reference's, bit for bit.
        assert render_keypoints(case["pose"], width, height).tobytes() == expected.tobytes()


def test_poses_inside_their_canvas_take_the_public_path_unchanged() -> None:
    # Only poses with points off their canvas are moved (a full body must not be cut).
    for case in CASES:
        pose = parse_pose(case["pose"])
        inside = all(0 < x < 1 and 0 < y < 1 for x, y, _c in pose.points())
        assert placement(pose, *case["size"]).identity == inside, case["name"]
