"""The one pose JSON shape: what is accepted, what is stored, and what a bad pose is told."""

from __future__ import annotations

from typing import Any

import pytest

from posegen.exceptions import InvalidInput
from posegen.library import builtin_library
from posegen.pose import parse_pose, pose_json

BODY = [[0.5, 0.1 + i * 0.04] for i in range(18)]


def test_legacy_list_becomes_the_canonical_shape() -> None:
    pose = pose_json([*BODY[:17], None])
    assert pose["canvas"] == [512.0, 512.0]  # authored on the default square
    assert pose["framing"] == "full_body"  # knees and ankles are there
    body = pose["people"][0]["body"]
    assert body[0] == [0.5, 0.1, 1.0] and body[17] is None
    assert "hands" not in pose["people"][0] and "face" not in pose["people"][0]
    # Canonical in, the same out.
    assert pose_json(pose) == pose


def test_every_accepted_input_shape_gives_one_pose() -> None:
    canonical = pose_json({"canvas": [512, 512], "people": [{"body": BODY}]})
    assert pose_json(BODY) == canonical
    assert pose_json({"keypoints": BODY}) == canonical
    assert pose_json({"persons": [BODY]}) == canonical
    assert pose_json({"body": BODY}) == canonical
    assert pose_json({"body": [[*p, 1.0] for p in BODY]}) == canonical
    assert pose_json({"aspect": 0.75, "body": BODY})["canvas"] == [0.75, 1.0]


def test_a_list_of_persons_whose_first_point_is_missing() -> None:
    first = [None, *BODY[1:]]
    pose = parse_pose([first, BODY])
    assert len(pose.people) == 2 and pose.people[0].body[0] is None


def test_confidence_zero_is_missing_and_framing_is_inferred() -> None:
    body: list[Any] = [None] * 18
    body[0], body[1], body[2], body[5] = [0.5, 0.2, 0.9], [0.5, 0.4], [0.3, 0.45], [0.7, 0.45]
    pose = parse_pose({"body": body})
    assert pose.framing == "portrait"
    body[8] = [0.45, 0.9]
    assert parse_pose({"body": body}).framing == "half_body"
    body[9] = [0.45, 0.95, 0.0]  # undetected knee
    assert parse_pose({"body": body}).people[0].body[9] is None
    assert parse_pose({"body": body}).framing == "half_body"
    assert parse_pose({"body": body, "framing": "full_body"}).framing == "full_body"


def test_hands_and_face() -> None:
    hand = [[0.3 + i * 0.005, 0.5, 1.0] for i in range(21)]
    face = [[0.5 + i * 0.001, 0.15, 1.0] for i in range(70)]
    pose = pose_json({"body": BODY, "hands": [hand, None], "face": face})
    person = pose["people"][0]
    assert len(person["hands"][0]) == 21 and person["hands"][1] is None
    assert len(person["face"]) == 70


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ("a string", "pose"),
        ([], "keypoints"),
        (BODY[:5], "keypoints"),
        ({"body": BODY[:17]}, "pose.body"),
        ({"people": [{"body": [["x", 0.5], *BODY[1:]]}]}, "pose.people[0].body[0]"),
        ({"body": [[float("nan"), 0.5], *BODY[1:]]}, "pose.body[0]"),
        ({"body": [[9.0, 0.5], *BODY[1:]]}, "pose.body[0]"),
        ({"body": [[0.5, 0.5, 2.0], *BODY[1:]]}, "pose.body[0]"),
        ({"body": BODY, "framing": "close_up"}, "pose.framing"),
        ({"body": BODY, "canvas": [512]}, "pose.canvas"),
        ({"body": BODY, "canvas": [512, 0]}, "pose.canvas"),
        ({"body": BODY, "canvas": [5000, 10]}, "pose.canvas"),
        ({"body": BODY, "aspect": 0.5, "canvas": [1, 2]}, "pose"),
        ({"body": BODY, "hands": [[[0.5, 0.5]] * 20, None]}, "pose.hands[0]"),
        ({"body": BODY, "hands": [None]}, "pose.hands"),
        ({"body": BODY, "face": [[0.5, 0.5]] * 68}, "pose.face"),
        ({"body": BODY, "colour": "red"}, "pose"),
        ({"body": BODY, "people": [{"body": BODY}]}, "pose"),
        ({"people": [{"body": BODY}] * 17}, "pose.people"),
        ({"keypoints": BODY, "face": [[0.5, 0.5]] * 70}, "pose"),
    ],
)
def test_bad_poses_say_what_and_where(raw: Any, where: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_pose(raw)
    assert err.value.kind == "invalid-pose"
    assert err.value.message.startswith(f"{where}:"), err.value.message


def test_builtin_library_records_canvas_and_framing() -> None:
    _cats, poses = builtin_library()
    assert len(poses) >= 30
    framings = {p.slug: p.keypoints["framing"] for p in poses}
    for pose in poses:
        assert pose.keypoints["canvas"] == [512.0, 512.0]
        assert pose_json(pose.keypoints) == pose.keypoints  # stored canonical
    assert framings["portrait-front"] == "portrait"
    assert framings["portrait-half-body-arms-folded"] == "half_body"
    assert framings["standing-neutral"] == "full_body"
    assert framings["sitting-cross-legged"] == "full_body"
