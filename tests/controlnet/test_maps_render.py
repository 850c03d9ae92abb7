"""OpenPose rendering: deterministic bytes, the reference colours, snapped sizes."""

from __future__ import annotations

import hashlib
import io
import json

from PIL import Image

from posegen.controlnet import render_keypoints
from posegen.controlnet.render import COLOURS, LIMBS, limb_colour
from posegen.library import builtin_library


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_same_keypoints_give_identical_bytes() -> None:
    _cats, poses = builtin_library()
    for pose in poses[:6]:
        a = _png(render_keypoints(pose.keypoints, 512, 768))
        b = _png(render_keypoints(json.loads(json.dumps(pose.keypoints)), 512, 768))
        assert hashlib.sha256(a).digest() == hashlib.sha256(b).digest()


def test_joint_and_limb_colours_match_openpose() -> None:
    # Neck (1) and right shoulder (2) only: limb 0 joins them.
    points = [None] * 18
    points[1] = [0.5, 0.5]
    points[2] = [0.25, 0.5]
    img = render_keypoints(points, 512, 512)
    assert img.mode == "RGB" and img.size == (512, 512)
    assert img.getpixel((256, 256)) == COLOURS[1]  # neck joint, full colour
    assert img.getpixel((128, 256)) == COLOURS[2]  # shoulder joint
    assert LIMBS[0] == (1, 2)
    assert img.getpixel((192, 256)) == limb_colour(0) == (153, 0, 0)  # limb at 0.6
    assert img.getpixel((192, 256 + 10)) == (0, 0, 0)  # 4 px half-width: background beyond
    assert img.getpixel((10, 10)) == (0, 0, 0)


def test_every_colour_of_a_full_pose_appears() -> None:
    _cats, poses = builtin_library()
    neutral = next(p for p in poses if p.slug == "standing-neutral")
    img = render_keypoints(neutral.keypoints, 512, 512)
    colours = {c for _n, c in img.getcolors(maxcolors=100000) or []}
    for index in range(18):
        assert COLOURS[index] in colours, index


def test_missing_points_are_skipped_and_empty_pose_is_black() -> None:
    img = render_keypoints([None] * 18, 128, 128)
    assert img.getextrema() == ((0, 0), (0, 0), (0, 0))
    points = [None] * 18
    points[4] = [0.5, 0.5, 0.0]  # zero confidence = missing
    assert render_keypoints(points, 128, 128).getbbox() is None


def test_sizes_snap_to_multiples_of_64() -> None:
    assert render_keypoints([None] * 18, 500, 700).size == (512, 704)
    assert render_keypoints([None] * 18, 10, 10).size == (64, 64)


def test_several_persons() -> None:
    one = [None] * 18
    one[0] = [0.25, 0.5]
    two = [None] * 18
    two[0] = [0.75, 0.5]
    img = render_keypoints([one, two], 256, 256)
    assert img.getpixel((64, 128)) == COLOURS[0]
    assert img.getpixel((192, 128)) == COLOURS[0]
