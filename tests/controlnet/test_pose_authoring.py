"""The built-in poses are one skeleton at other joint angles, and every pose is a human body.

``builtin_poses.json`` is generated from ``pose_specs`` (never edited by hand); every pose in
it passes the 2D plausibility checks the importer applies, and every spec passes the 3D ones
(joint ranges, no body part through another). Each check is shown to fail on a broken pose.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from posegen.library import builtin_library
from posegen.library.author import DATA_PATH, contact_sheet, library_json, pose_entry
from posegen.library.plausibility import problems, skeleton_problems
from posegen.library.pose_specs import POSES
from posegen.library.skeleton import COCO, THIGH, UPPER_ARM, Angles, Limb, angles_from_spec, pose

I = {name: i for i, name in enumerate(COCO)}  # noqa: E741
SPECS = {s["slug"]: s for s in POSES}


def test_the_shipped_json_is_the_generators_output() -> None:
    assert DATA_PATH.read_text("utf-8") == library_json(), (
        "builtin_poses.json differs from the specs: run python -m posegen.library.author --write"
    )


def test_every_library_pose_is_a_plausible_human_body() -> None:
    _cats, poses = builtin_library()
    assert len(poses) >= 120
    failing = {p.slug: problems(p.keypoints) for p in poses}
    assert {slug: found for slug, found in failing.items() if found} == {}


def test_independently_drawn_poses_pass_the_2d_checks() -> None:
    # The library's first 33 poses were typed in by hand, not built on this skeleton (kept in
    # hand_authored_poses.json): the importer's checks must not reject such human poses.
    drawn = json.loads((Path(__file__).parent / "hand_authored_poses.json").read_text())
    assert len(drawn) == 33
    assert {p["slug"]: problems(p["keypoints"]) for p in drawn if problems(p["keypoints"])} == {}


def test_every_spec_keeps_joint_ranges_and_no_part_passes_through_another() -> None:
    failing = {slug: skeleton_problems(pose(angles_from_spec(s))) for slug, s in SPECS.items()}
    assert {slug: found for slug, found in failing.items() if found} == {}


def test_limb_proportions_measured_in_3d_are_human() -> None:
    # Forward kinematics keeps the skeleton's lengths whatever the angles: measured on every
    # posed skeleton, upper arm : forearm, thigh : shin and left : right are the human ones.
    for slug, spec in SPECS.items():
        j = pose(angles_from_spec(spec)).joints

        def length(a: str, b: str, j: dict[str, Any] = j) -> float:
            return float(np.linalg.norm(j[a] - j[b]))

        for side in ("r", "l"):
            upper, fore = (
                length(f"{side}_shoulder", f"{side}_elbow"),
                length(f"{side}_elbow", f"{side}_wrist"),
            )
            thigh, shin = (
                length(f"{side}_hip", f"{side}_knee"),
                length(f"{side}_knee", f"{side}_ankle"),
            )
            assert 1.1 <= upper / fore <= 1.35, slug
            assert 0.95 <= thigh / shin <= 1.15, slug
            assert math.isclose(upper, UPPER_ARM) and math.isclose(thigh, THIGH), slug
        assert math.isclose(length("r_wrist", "r_elbow"), length("l_wrist", "l_elbow")), slug
        assert math.isclose(length("r_knee", "r_ankle"), length("l_knee", "l_ankle")), slug
        torso = float(np.linalg.norm(j["neck"] - (j["r_hip"] + j["l_hip"]) / 2))
        legs = length("r_hip", "r_knee") + length("r_knee", "r_ankle")
        assert 0.5 <= torso / legs <= 0.65, slug
        shoulders, hips = length("r_shoulder", "l_shoulder"), length("r_hip", "l_hip")
        assert 1.3 <= shoulders / hips <= 1.7, slug


def _body(slug: str) -> list[Any]:
    return copy.deepcopy(pose_entry(SPECS[slug])["keypoints"])


def test_a_stretched_limb_fails_the_proportion_check() -> None:
    kp = _body("standing-neutral")
    body = kp["people"][0]["body"]
    elbow, wrist = body[I["l_elbow"]], body[I["l_wrist"]]
    # The left forearm drawn twice as long (the wrist moved on along the forearm).
    body[I["l_wrist"]] = [
        elbow[0] + 2 * (wrist[0] - elbow[0]),
        elbow[1] + 2 * (wrist[1] - elbow[1]),
        1,
    ]
    assert any("left forearm" in p for p in problems(kp))
    # Both shins stretched at once: two bad segments cannot set the scale either.
    kp = _body("standing-neutral")
    body = kp["people"][0]["body"]
    for knee, ankle in (("r_knee", "r_ankle"), ("l_knee", "l_ankle")):
        k, a = body[I[knee]], body[I[ankle]]
        body[I[ankle]] = [k[0] + 1.8 * (a[0] - k[0]), k[1] + 1.8 * (a[1] - k[1]), 1]
    found = problems(kp)
    assert any("right shin" in p for p in found) and any("left shin" in p for p in found)
    # Whole legs 1.6 times too long for the torso (all four leg segments at once).
    kp = _body("standing-neutral")
    body = kp["people"][0]["body"]
    for hip, knee, ankle in (("r_hip", "r_knee", "r_ankle"), ("l_hip", "l_knee", "l_ankle")):
        h = body[I[hip]]
        for joint in (knee, ankle):
            p = body[I[joint]]
            body[I[joint]] = [h[0] + 1.6 * (p[0] - h[0]), h[1] + 1.6 * (p[1] - h[1]), 1]
    found = problems(kp)
    assert any("thigh" in p for p in found) and any("shin" in p for p in found)


def test_a_crossed_skeleton_fails() -> None:
    kp = _body("standing-neutral")
    body = kp["people"][0]["body"]
    # Hips swapped: the shoulders face the camera, the hips face away (a 180-degree twist).
    body[I["r_hip"]], body[I["l_hip"]] = body[I["l_hip"]], body[I["r_hip"]]
    assert any("crossed skeleton" in p for p in problems(kp))
    # A face turned fully round on a back seen from behind.
    kp = _body("standing-back-view")
    body = kp["people"][0]["body"]
    nose, neck = body[I["nose"]] or [body[I["neck"]][0], body[I["neck"]][1] - 0.08, 1], body[1]
    body[I["nose"]] = nose
    body[I["r_eye"]] = [neck[0] - 0.025, nose[1] - 0.02, 1]
    body[I["l_eye"]] = [neck[0] + 0.025, nose[1] - 0.02, 1]
    assert any("face looks one way" in p for p in problems(kp))
    # The head hung down between the hips.
    kp = _body("standing-neutral")
    body = kp["people"][0]["body"]
    body[I["nose"]] = [0.5, 0.5, 1]
    assert any("head hangs" in p for p in problems(kp))


def test_a_limb_without_its_root_fails() -> None:
    kp = _body("standing-neutral")
    kp["people"][0]["body"][I["r_knee"]] = None
    assert any("right ankle without its knee" in p for p in problems(kp))


def test_joint_ranges_and_pass_through_fail_on_broken_angles() -> None:
    straight = ((2, 0), (2, 0))
    # A knee bent forwards (the shin kicked up in front of a hanging thigh).
    knee = pose(Angles(r_leg=Limb((5, 90), (60, 90))))
    assert "right knee bends forwards" in skeleton_problems(knee)
    # The same bend backwards is a knee: fine.
    assert skeleton_problems(pose(Angles(r_leg=Limb((5, 90), (60, -90))))) == []
    # An elbow folded back on itself, a thigh swung far behind, a head turned round.
    assert "left elbow folded past 160 degrees" in skeleton_problems(
        pose(Angles(l_arm=Limb((10, 0), (175, 180))))
    )
    assert any("behind the body" in p for p in skeleton_problems(
        pose(Angles(l_leg=Limb((85, -90), straight[1])))
    ))  # fmt: skip
    assert any("head turn" in p for p in skeleton_problems(pose(Angles(head_yaw=150))))
    # A forearm driven through the chest, and one leg through the other.
    through = angles_from_spec({"r_hand": (-0.2, -1.0, 0.0), "r_elbow": (1, -1, 0.5)})
    assert any("passes through the torso" in p or "torso passes through" in p
               for p in skeleton_problems(pose(through)))  # fmt: skip
    crossed = pose(Angles(r_leg=Limb((20, 180), (5, 0)), l_leg=Limb((20, 180), (5, 0))))
    assert any("thigh passes through" in p for p in skeleton_problems(crossed))


def test_turned_heads_hide_what_is_behind() -> None:
    def seen(slug: str) -> set[str]:
        body = pose_entry(SPECS[slug])["keypoints"]["people"][0]["body"]
        return {name for name, p in zip(COCO, body, strict=True) if p is not None}

    assert {"nose", "r_eye", "l_eye", "r_ear", "l_ear"} <= seen("standing-neutral")
    # Profile to the image right: the right side faces the camera, the left ear is hidden.
    profile = seen("standing-side-profile")
    assert {"nose", "r_eye", "r_ear"} <= profile and "l_ear" not in profile
    back = seen("standing-back-view")
    assert {"r_ear", "l_ear"} <= back and not {"nose", "r_eye", "l_eye"} & back


def test_framings_crop_the_body() -> None:
    _cats, poses = builtin_library()
    legs = {"r_knee", "l_knee", "r_ankle", "l_ankle"}
    for p in poses:
        body = p.keypoints["people"][0]["body"]
        shown = {name for name, pt in zip(COCO, body, strict=True) if pt is not None}
        if p.keypoints["framing"] == "half_body":
            assert not shown & {"r_ankle", "l_ankle"} and {"r_hip", "l_hip"} <= shown, p.slug
        if p.keypoints["framing"] == "portrait":
            assert not shown & (legs | {"r_hip", "l_hip"}), p.slug
        # Drawn large: the figure spans most of its canvas one way or the other.
        xs = [pt[0] for pt in body if pt]
        ys = [pt[1] for pt in body if pt]
        assert max(max(xs) - min(xs), max(ys) - min(ys)) > 0.5, p.slug


def test_contact_sheet_of_every_pose() -> None:
    # For people to look at: test-output/library-contact-sheet.png (gitignored).
    out = Path(__file__).parents[2] / "test-output" / "library-contact-sheet.png"
    contact_sheet(out, columns=12, tile=128)
    with Image.open(out) as sheet:
        arr = np.asarray(sheet.convert("RGB"))
    tile_h = 128 + 14
    for i in range(len(POSES)):
        x, y = (i % 12) * 128, (i // 12) * tile_h
        tile = arr[y + 2 : y + 126, x + 2 : x + 126]
        assert (tile.max(axis=2) > 100).sum() > 100, POSES[i]["slug"]


def test_forward_kinematics_reaches_inverse_kinematics_targets() -> None:
    # Specs that place a hand by a target get angles whose forward kinematics put it there.
    spec = {"r_hand": (0.3, -1.0, 1.0), "l_foot": (0.7, -3.4, 0.6)}
    skel = pose(angles_from_spec(spec))
    wrist = skel.chest.T @ (skel.joints["r_wrist"] - skel.joints["neck"])
    assert np.allclose(wrist, [-0.3, -1.0, 1.0], atol=0.02)
    ankle = skel.body.T @ skel.joints["l_ankle"]
    assert np.allclose(ankle, [0.7, -3.4, 0.6], atol=0.02)
