"""Poses from photos through the real helper process: the test photo against hand-labelled
keypoints, a drawn figure, no person, two people, rejected photos, and the helper's life
(killed -> restarted, overrun -> stopped with a clean error, missing -> vision-not-installed)."""

from __future__ import annotations

import io
import math
import os
import signal
import sys
from collections.abc import Sequence

import pytest
from grace_hopper_truth import ABSENT, KEYPOINTS, SIZE
from PIL import Image
from vision_helpers import FIGURE_JOINTS, drawn_figure, encode, waving

from posegen import vision
from posegen.config import Settings, load_settings
from posegen.exceptions import FetchError, InvalidInput, PosegenError
from posegen.pose import parse_pose
from posegen.vision import client

#: "Within a few percent": distance to the hand label, as a fraction of the photo's width.
TOLERANCE = 0.05


def _distance(
    point: Sequence[float] | None, pixel: tuple[int, int], size: tuple[int, int]
) -> float:
    assert point is not None
    return math.hypot(
        point[0] - pixel[0] / size[0], (point[1] - pixel[1] / size[1]) * size[1] / size[0]
    )


def test_keypoints_on_the_photo_match_hand_labels(vision_settings: Settings, photo: bytes) -> None:
    found = vision.extract(vision_settings, photo)
    assert (found.width, found.height) == SIZE
    keypoints = found.keypoints()
    errors = {i: _distance(keypoints[i], px, SIZE) for i, px in KEYPOINTS.items()}
    assert max(errors.values()) <= TOLERANCE, errors
    assert all(keypoints[i][2] >= 0.5 for i in KEYPOINTS)  # type: ignore[index]
    # A head-and-shoulders portrait: the arms, hips and legs are null, and the neck is present.
    assert [keypoints[i] for i in ABSENT] == [None] * len(ABSENT)
    assert keypoints[1] is not None
    assert [w.kind for w in found.warnings] == ["partial-body"]
    assert "r_elbow" in found.warnings[0].message
    assert found.people_seen == 1
    # The canonical pose: the photo's own canvas, framed as a portrait, valid on input again.
    assert found.pose is not None
    pose_json = found.pose.to_json()
    assert pose_json["canvas"] == [512.0, 600.0] and pose_json["framing"] == "portrait"
    assert parse_pose(pose_json) == found.pose
    # The models ran in the helper: this process never imported mediapipe.
    assert "mediapipe" not in sys.modules


def test_a_drawn_figure_gets_its_joints(vision_settings: Settings) -> None:
    found = vision.extract(vision_settings, encode(drawn_figure()))
    keypoints = found.keypoints()
    errors = {i: _distance(keypoints[i], px, (512, 512)) for i, px in FIGURE_JOINTS.items()}
    assert max(errors.values()) <= 0.08, errors
    assert found.warnings == () and found.pose is not None
    assert found.pose.framing == "full_body"


def test_hands_come_as_openpose_hands_on_the_right_side(
    vision_settings: Settings, photo: bytes
) -> None:
    image, drawn = waving(photo)  # the subject's right hand raised (image left)
    found = vision.extract(vision_settings, encode(image))
    assert found.pose is not None
    hands = found.pose.people[0].hands
    assert hands is not None and hands[0] is None  # no left hand in the picture
    right = hands[1]
    assert right is not None and len(right) == 21
    assert sum(p is not None for p in right) >= 18
    errors = {i: _distance(right[i], drawn[i], (900, 900)) for i in drawn}
    assert max(errors.values()) <= TOLERANCE, errors
    # The wrist of the body and of the hand agree, and the hand is drawn in the map.
    assert _distance(found.keypoints()[4], drawn[0], (900, 900)) <= 2 * TOLERANCE
    assert found.pose.to_json()["people"][0]["hands"][0] is None


def test_no_person(vision_settings: Settings) -> None:
    sky = Image.linear_gradient("L").resize((400, 300)).convert("RGB")
    found = vision.extract(vision_settings, encode(sky, "JPEG"))
    assert found.pose is None and found.people_seen == 0
    assert found.keypoints() == [None] * 18
    assert [w.kind for w in found.warnings] == ["no-person"]


def test_two_people_warn_and_the_pose_is_the_larger_ones(
    vision_settings: Settings, photo: bytes
) -> None:
    person = Image.open(io.BytesIO(photo)).convert("RGB")
    scene = Image.new("RGB", (1064, 600), (128, 128, 128))
    scene.paste(person, (0, 0))
    scene.paste(person.resize((400, 469)), (662, 131))  # a smaller second person on the right
    found = vision.extract(vision_settings, encode(scene, "JPEG"))
    assert found.people_seen == 2
    assert [w.kind for w in found.warnings] == ["several-people", "partial-body"]
    nose = found.keypoints()[0]
    assert nose is not None and abs(nose[0] * 1064 - KEYPOINTS[0][0]) <= TOLERANCE * 1064


def test_corrupt_and_huge_photos_are_refused_before_the_helper(vision_settings: Settings) -> None:
    helper = client.helper_for(vision_settings)
    starts = helper.starts
    good = encode(drawn_figure(64), "JPEG")
    with pytest.raises(FetchError) as corrupt:
        vision.extract(vision_settings, good[: len(good) // 2])
    assert corrupt.value.http_status == 422  # truncated
    with pytest.raises(PosegenError) as huge:
        vision.extract(vision_settings.model_copy(update={"image_max_pixels": 64 * 63}), good)
    assert huge.value.http_status == 422
    with pytest.raises(InvalidInput) as big:
        vision.extract(vision_settings.model_copy(update={"upload_max_bytes": 100}), good)
    assert big.value.kind == "upload-too-large"
    assert helper.starts == starts  # none of them reached the models


def test_a_killed_helper_is_restarted_and_an_overrun_is_a_clean_error(
    vision_settings: Settings,
) -> None:
    figure = encode(drawn_figure(256))
    pool = client.helper_for(vision_settings)
    assert vision.extract(vision_settings, figure).pose is not None
    (first,) = pool.pids
    os.kill(first, signal.SIGKILL)
    assert vision.extract(vision_settings, figure).pose is not None  # a new helper answers
    assert pool.pids not in ([], [first])
    # An overrun: the helper is stopped and the caller gets vision-timeout; the next call works.
    hasty = vision_settings.model_copy(update={"vision_timeout_seconds": 0.001})
    hasty_pool = client.helper_for(hasty)
    hasty_pool.timeout = 60.0  # start it with time to load the models...
    vision.extract(hasty, figure)
    hasty_pool.timeout = 0.001  # ...then give one request no time at all
    with pytest.raises(vision.VisionFailed) as late:
        vision.extract(hasty, figure)
    assert late.value.kind == "vision-timeout" and late.value.http_status == 503
    assert hasty_pool.pids == []
    hasty_pool.timeout = 60.0
    assert vision.extract(hasty, figure).pose is not None
    # Requests wait for a free helper one timeout long at most.
    hasty_pool.timeout = 0.2
    borrowed = hasty_pool._borrow()
    try:
        with pytest.raises(vision.VisionFailed) as busy:
            vision.extract(hasty, figure)
    finally:
        hasty_pool._idle.append(borrowed)
    assert busy.value.kind == "vision-busy"
    hasty_pool.close()


def test_without_the_environment_vision_is_a_clear_503(tmp_path: os.PathLike[str]) -> None:
    settings = load_settings(data_dir=tmp_path, vision_python=f"{tmp_path}/nowhere/python")
    assert not vision.available(settings)
    with pytest.raises(vision.VisionUnavailable) as missing:
        vision.extract(settings, encode(drawn_figure(64)))
    assert missing.value.http_status == 503 and missing.value.kind == "vision-not-installed"
    assert "make install-vision" in missing.value.message
    # An environment without mediapipe (here: the main one) is reported the same way.
    broken = load_settings(data_dir=tmp_path, vision_python=os.path.realpath("/proc/self/exe"))
    with pytest.raises(vision.VisionUnavailable) as no_models:
        vision.extract(broken, encode(drawn_figure(64)))
    assert "broken (ModuleNotFoundError" in no_models.value.message
