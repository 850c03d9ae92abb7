"""BlazePose-33 -> COCO-18 (the issue's table, index by index), the visibility and
outside-the-image rules, the neck, and mediapipe hands as OpenPose hands. No helper needed."""

from __future__ import annotations

import pytest

from posegen.pose import parse_pose
from posegen.pose.schema import Person, Pose
from posegen.vision import mapping

# The table, written out independently of the module's tuple.
TABLE = {0: 0, 2: 12, 3: 14, 4: 16, 5: 11, 6: 13, 7: 15, 8: 24, 9: 26, 10: 28, 11: 23, 12: 25,
         13: 27, 14: 5, 15: 2, 16: 8, 17: 7}  # fmt: skip


def _landmarks(visibility: float = 0.9) -> list[list[float]]:
    # Landmark i sits at a position that names it: x = i / 40, y = 1 - i / 40.
    return [[i / 40, 1 - i / 40, visibility] for i in range(33)]


def test_every_coco_point_comes_from_its_blazepose_landmark() -> None:
    body = mapping.coco18(_landmarks())
    assert len(body) == 18
    for coco, blaze in TABLE.items():
        assert body[coco] == (round(blaze / 40, 6), round(1 - blaze / 40, 6), 0.9), coco
    # The neck is the shoulders' midpoint (BlazePose 11 and 12), with the weaker confidence.
    assert body[1] == pytest.approx((11.5 / 40, 1 - 11.5 / 40, 0.9))


def test_low_visibility_and_outside_points_are_null_and_the_neck_needs_both_shoulders() -> None:
    lms = _landmarks()
    lms[12][2] = 0.49  # right shoulder barely hidden
    lms[0] = [0.5, -0.01, 0.99]  # nose above the top edge
    lms[28] = [1.2, 0.5, 0.99]  # right ankle off the right edge
    lms[15][2] = 0.5  # left wrist exactly at the threshold: kept
    body = mapping.coco18(lms)
    assert body[2] is None and body[0] is None and body[10] is None
    assert body[1] is None  # one shoulder only: no neck
    assert body[7] == (round(15 / 40, 6), round(1 - 15 / 40, 6), 0.5)
    with pytest.raises(ValueError):
        mapping.coco18(lms[:17])


def test_hands_keep_openpose_order_and_drop_points_off_the_image() -> None:
    hand = [[0.1 + i / 100, 0.2 + i / 100] for i in range(21)]
    hand[20] = [1.01, 0.5]
    points = mapping.hand21(hand)
    assert points is not None and len(points) == 21
    assert points[0] == (0.1, 0.2, 1.0) and points[8] == (0.18, 0.28, 1.0)
    assert points[20] is None
    assert mapping.hand21(None) is None
    assert mapping.hand21([[2.0, 2.0]] * 21) is None  # every point off the photo: no hand


def test_a_mapped_pose_is_a_valid_canonical_pose() -> None:
    body = mapping.coco18(_landmarks())
    hand = mapping.hand21([[0.3 + i / 100, 0.4] for i in range(21)])
    pose = Pose((640.0, 480.0), "full_body", (Person(body, (hand, None)),))
    again = parse_pose(pose.to_json())
    assert again == pose
