"""OpenPose's 70 face points from mediapipe's face mesh: the index table (no helper needed), and
on the real photo against hand-labelled points, in the iBUG order, drawn on the map."""

from __future__ import annotations

import dataclasses
import itertools
import math

import numpy as np
import pytest
from grace_hopper_truth import FACE_BOX, FACE_POINTS, SIZE

from posegen import vision
from posegen.config import Settings
from posegen.controlnet.render import render_pose
from posegen.vision import mapping

#: Hand labels are a few pixels wide: 3 % of the photo's width (15 px at 512).
TOLERANCE = 0.03


def _mesh(count: int) -> list[list[float]]:
    # Landmark i sits at a position that names it.
    return [[(i % 100) / 100, (i // 100) / 10] for i in range(count)]


def test_the_table_picks_its_mesh_landmarks_and_irises_are_the_pupils() -> None:
    face = mapping.face70(_mesh(478))
    assert face is not None and len(face) == 70
    # A few rows of the documented table, written out: jaw ends and chin, eye corners, nose
    # tip, mouth corners, pupils (refined mesh irises).
    for point, mesh in {0: 162, 8: 152, 16: 389, 30: 4, 36: 33, 39: 133, 42: 362, 45: 263,
                        48: 61, 54: 291, 68: 468, 69: 473}.items():  # fmt: skip
        assert face[point] == ((mesh % 100) / 100, (mesh // 100) / 10, 1.0), point
    assert len(set(mapping.FACE70_FROM_MESH)) == 70
    # Without irises (468 landmarks) a pupil is its eye's six points' centre.
    plain = mapping.face70(_mesh(468))
    assert plain is not None
    for pupil, eye in ((68, range(36, 42)), (69, range(42, 48))):
        ring = [plain[i] for i in eye]
        centre = (sum(p[0] for p in ring) / 6, sum(p[1] for p in ring) / 6)  # type: ignore[index]
        assert plain[pupil] == pytest.approx((*centre, 1.0), abs=1e-6)
    # Off the image: null; no face: None; a wrong count: an error.
    off = _mesh(478)
    off[152] = [0.5, 1.2]
    assert mapping.face70(off)[8] is None  # type: ignore[index]
    assert mapping.face70(None) is None
    with pytest.raises(ValueError):
        mapping.face70(_mesh(100))


def test_face_points_on_the_photo(vision_settings: Settings, photo: bytes) -> None:
    found = vision.extract(vision_settings, photo)
    assert found.pose is not None
    face = found.pose.people[0].face
    assert face is not None and all(p is not None for p in face)
    px = [(p[0] * SIZE[0], p[1] * SIZE[1]) for p in face]  # type: ignore[index]
    # Every point inside the hand-drawn face box.
    x0, y0, x1, y1 = FACE_BOX
    assert all(x0 <= x <= x1 and y0 <= y <= y1 for x, y in px), px
    # Against the hand labels.
    errors = {
        i: math.hypot(px[i][0] - lx, px[i][1] - ly) / SIZE[0] for i, (lx, ly) in FACE_POINTS.items()
    }
    assert max(errors.values()) <= TOLERANCE, errors
    # In the iBUG order: the jaw runs image left to right with the chin lowest; brows above the
    # eyes, the eyes above the nose tip, the nose bridge downwards, the mouth below the nose;
    # the right eye (36..41, pupil 68) on the image's left.
    # The jaw's ends run almost straight down, so neighbours there may swap by a pixel between
    # CPUs (CI's put point 0 a quarter pixel right of point 1): 2 px of slack, a wide span.
    jaw_x = [px[i][0] for i in range(17)]
    assert all(b >= a - 2 for a, b in itertools.pairwise(jaw_x)), jaw_x
    assert jaw_x[16] - jaw_x[0] > 0.5 * (x1 - x0), jaw_x
    assert max(range(17), key=lambda i: px[i][1]) in (7, 8, 9)
    brows = max(px[i][1] for i in range(17, 27))
    eyes = [px[i][1] for i in range(36, 48)]
    assert brows < min(eyes) and max(eyes) < px[30][1]
    assert [px[i][1] for i in range(27, 31)] == sorted(px[i][1] for i in range(27, 31))
    assert min(px[i][1] for i in range(48, 68)) > px[33][1]
    assert max(px[i][0] for i in range(36, 42)) < min(px[i][0] for i in range(42, 48))
    for pupil, eye in ((68, range(36, 42)), (69, range(42, 48))):
        assert min(px[i][0] for i in eye) < px[pupil][0] < max(px[i][0] for i in eye)
    assert px[48][0] < px[51][0] < px[54][0]  # mouth corners either side of the upper lip


def test_face_points_are_drawn_on_the_map(vision_settings: Settings, photo: bytes) -> None:
    found = vision.extract(vision_settings, photo)
    assert found.pose is not None
    person = found.pose.people[0]
    without = dataclasses.replace(found.pose, people=(dataclasses.replace(person, face=None),))
    drawn = np.asarray(render_pose(found.pose, found.width, found.height))
    bare = np.asarray(render_pose(without, found.width, found.height))
    changed = np.any(drawn != bare, axis=2)
    assert changed.sum() > 70 * 9  # 70 dots of radius 3, some overlapping
    assert np.all(drawn[changed] == 255)  # white, as openpose_full draws faces
    ys, xs = np.nonzero(changed)
    scale_x, scale_y = drawn.shape[1] / SIZE[0], drawn.shape[0] / SIZE[1]
    x0, y0, x1, y1 = FACE_BOX
    # Placed without distortion on the snapped canvas: within the face box, give or take.
    assert x0 * scale_x - 8 <= xs.min() and xs.max() <= x1 * scale_x + 8
    assert y0 * min(scale_x, scale_y) - 8 <= ys.min() and ys.max() <= y1 * max(scale_x, scale_y) + 8
