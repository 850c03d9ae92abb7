"""One human skeleton, posed by joint angles (forward kinematics) and projected to COCO-18.

Lengths are in head heights (H) of an adult of about 7.5 heads. Every built-in pose is this one
skeleton at other angles, so its proportions are human by construction; a pose only says how
its joints are turned.

Frames. World: x to the image's right, y up, z towards the camera (orthographic, looking down
-z). Body frame (the pelvis): x to the figure's left, y up, z forwards; at yaw 0 the figure faces
the camera, so its right side is on the image's left (as OpenPose draws a person facing you).
The chest frame is the body frame bent by the spine; the head frame is the chest frame turned
by the neck.

A limb direction is two angles in its parent frame: ``elev`` from straight down (0) through
horizontal (90) to straight up (180), and ``az`` around the vertical from out to the limb's own
side (0) to forwards (90) or backwards (-90); left and right mirror, so one pair of angles means
the same movement on either side. Arms hang from the chest frame, legs from the body frame.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

Vec = NDArray[np.float64]

#: Segment lengths in head heights.
TORSO = 2.2  # neck (between the shoulders) to the middle of the hips
SHOULDER_HALF = 0.9
HIP_HALF = 0.6
UPPER_ARM = 1.45
FOREARM = 1.2
THIGH = 1.95
SHIN = 1.85
#: Face points in the head frame, from the neck: nose, eyes, ears; and the top of the head.
NOSE = (0.0, 0.72, 0.5)
EYE = (0.2, 0.92, 0.4)
EAR = (0.4, 0.8, -0.05)
HEAD_TOP = (0.0, 1.45, 0.0)
FOOT = 0.3  # the sole below the ankle, for fitting a full body to its canvas

#: COCO-18 order.
COCO = (
    "nose", "neck", "r_shoulder", "r_elbow", "r_wrist", "l_shoulder", "l_elbow", "l_wrist",
    "r_hip", "r_knee", "r_ankle", "l_hip", "l_knee", "l_ankle", "r_eye", "l_eye", "r_ear", "l_ear",
)  # fmt: skip
#: Nominal lengths of the segments between COCO points, for checks on any pose.
SEGMENTS: dict[str, tuple[str, str, float]] = {
    "right upper arm": ("r_shoulder", "r_elbow", UPPER_ARM),
    "right forearm": ("r_elbow", "r_wrist", FOREARM),
    "left upper arm": ("l_shoulder", "l_elbow", UPPER_ARM),
    "left forearm": ("l_elbow", "l_wrist", FOREARM),
    "right thigh": ("r_hip", "r_knee", THIGH),
    "right shin": ("r_knee", "r_ankle", SHIN),
    "left thigh": ("l_hip", "l_knee", THIGH),
    "left shin": ("l_knee", "l_ankle", SHIN),
    "shoulders": ("r_shoulder", "l_shoulder", 2 * SHOULDER_HALF),
    "hips": ("r_hip", "l_hip", 2 * HIP_HALF),
    "right collar": ("neck", "r_shoulder", SHOULDER_HALF),
    "left collar": ("neck", "l_shoulder", SHOULDER_HALF),
    # The face is rigid on the neck: these distances do not change as the head turns.
    "neck to nose": ("neck", "nose", math.hypot(*NOSE)),
    "neck to right eye": ("neck", "r_eye", math.hypot(*EYE)),
    "neck to left eye": ("neck", "l_eye", math.hypot(*EYE)),
    "neck to right ear": ("neck", "r_ear", math.hypot(*EAR)),
    "neck to left ear": ("neck", "l_ear", math.hypot(*EAR)),
}


def rot_x(deg: float) -> Vec:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]], dtype=np.float64)


def rot_y(deg: float) -> Vec:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]], dtype=np.float64)


def rot_z(deg: float) -> Vec:
    c, s = math.cos(math.radians(deg)), math.sin(math.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]], dtype=np.float64)


def direction(elev: float, az: float, side: float) -> Vec:
    """Unit vector in a parent frame: ``side`` +1 for a left limb, -1 for a right one."""
    e, a = math.radians(elev), math.radians(az)
    return np.array([side * math.sin(e) * math.cos(a), -math.cos(e), math.sin(e) * math.sin(a)])


@dataclass(frozen=True)
class Limb:
    """Upper and lower segment directions, ``(elev, az)`` each (see the module doc)."""

    upper: tuple[float, float]
    lower: tuple[float, float]


@dataclass(frozen=True)
class Angles:
    """Everything a pose says: root orientation, spine, head, and the four limbs (degrees)."""

    yaw: float = 0.0  # the whole body around the vertical; +90 faces the image's right
    pitch: float = 0.0  # the whole body tipped forwards (+) or back (-): -90 lies on its back
    roll: float = 0.0  # the whole body tipped to its left (+)
    bend: float = 0.0  # spine: forwards (+) / arched back (-)
    side: float = 0.0  # spine: leaning to the figure's left (+)
    twist: float = 0.0  # spine: chest turned to the figure's left (+)
    head_yaw: float = 0.0  # head turned to the figure's left (+)
    head_pitch: float = 0.0  # chin down (+) / up (-)
    head_roll: float = 0.0  # head tilted towards the figure's left shoulder (+)
    r_arm: Limb = Limb((8, 0), (8, 10))
    l_arm: Limb = Limb((8, 0), (8, 10))
    r_leg: Limb = Limb((2, 0), (2, 0))
    l_leg: Limb = Limb((2, 0), (2, 0))
    #: Legs hang from the upright (only yawed) frame, not the tipped body: a body bent over or
    #: tipped sideways on legs that stand on the floor (triangle pose, a cartwheel's landing).
    legs_upright: bool = False


@dataclass
class Skeleton:
    """The posed skeleton in world coordinates, with what the checks need to know."""

    joints: dict[str, Vec]
    head_top: Vec
    visible: dict[str, bool]
    body: Vec  # body frame (columns x, y, z) in the world
    chest: Vec
    head: Vec
    angles: Angles
    extra: dict[str, Any] = field(default_factory=dict)


def pose(angles: Angles) -> Skeleton:
    """Forward kinematics: the joints of ``angles`` in world coordinates (pelvis at the origin)."""
    a = angles
    # Positive pitch tips the figure forwards: the up axis towards +z (its front). rot_x(+t)
    # takes +y towards +z, so body pitch and spine bend use rot_x(+); roll/side lean to the
    # figure's left (+x): rot_z(-t) takes +y towards +x.
    body = rot_y(a.yaw) @ rot_x(a.pitch) @ rot_z(-a.roll)
    chest = body @ rot_y(a.twist) @ rot_x(a.bend) @ rot_z(-a.side)
    head = chest @ rot_y(a.head_yaw) @ rot_x(a.head_pitch) @ rot_z(-a.head_roll)
    pelvis = np.zeros(3)
    neck = pelvis + chest @ np.array([0.0, TORSO, 0.0])
    j: dict[str, Vec] = {"neck": neck}
    for name, side in (("l", 1.0), ("r", -1.0)):
        shoulder = neck + chest @ np.array([side * SHOULDER_HALF, -0.05, 0.0])
        arm = a.l_arm if side > 0 else a.r_arm
        elbow = shoulder + chest @ direction(*arm.upper, side) * UPPER_ARM
        wrist = elbow + chest @ direction(*arm.lower, side) * FOREARM
        hip = pelvis + body @ np.array([side * HIP_HALF, 0.0, 0.0])
        leg = a.l_leg if side > 0 else a.r_leg
        legs = rot_y(a.yaw) if a.legs_upright else body
        knee = hip + legs @ direction(*leg.upper, side) * THIGH
        ankle = knee + legs @ direction(*leg.lower, side) * SHIN
        j.update(
            {
                f"{name}_shoulder": shoulder,
                f"{name}_elbow": elbow,
                f"{name}_wrist": wrist,
                f"{name}_hip": hip,
                f"{name}_knee": knee,
                f"{name}_ankle": ankle,
            }
        )
        ex, ey, ez = EYE
        j[f"{name}_eye"] = neck + head @ np.array([side * ex, ey, ez])
        rx, ry, rz = EAR
        j[f"{name}_ear"] = neck + head @ np.array([side * rx, ry, rz])
    j["nose"] = neck + head @ np.array(NOSE)
    visible = {k: True for k in COCO}
    # Face points are seen when their surface faces the camera (+z): the nose and eyes look
    # forwards (the eyes a little outwards), the ears sideways.
    forward, left = head[:, 2], head[:, 0]
    visible["nose"] = float(forward[2]) > -0.2
    for name, side in (("l", 1.0), ("r", -1.0)):
        out = side * left
        eye_normal = math.cos(math.radians(30)) * forward + math.sin(math.radians(30)) * out
        visible[f"{name}_eye"] = float(eye_normal[2]) > -0.1
        ear_normal = 0.9 * out - 0.3 * forward
        visible[f"{name}_ear"] = float(ear_normal[2]) > -0.35
    return Skeleton(j, neck + head @ np.array(HEAD_TOP), visible, body, chest, head, angles)


def to_angles(d: Vec, side: float) -> tuple[float, float]:
    """``(elev, az)`` of a unit direction in a parent frame (inverse of :func:`direction`)."""
    elev = math.degrees(math.acos(max(-1.0, min(1.0, -float(d[1])))))
    az = math.degrees(math.atan2(float(d[2]), side * float(d[0])))
    return round(elev, 1), round(az, 1)


def reach(root: Vec, target: Vec, upper: float, lower: float, pole: Vec, side: float) -> Limb:
    """Two-bone inverse kinematics in a parent frame: the limb from ``root`` whose end is at
    ``target`` (or as near as it reaches), its middle joint bent towards ``pole``. Only an
    authoring aid: the result is angles, and the pose is then built by forward kinematics."""
    to = target - root
    dist = float(np.linalg.norm(to))
    dist = min(max(dist, abs(upper - lower) + 1e-3), upper + lower - 1e-3)
    u = to / float(np.linalg.norm(to))
    p = pole - float(pole @ u) * u
    p = p / float(np.linalg.norm(p))
    cos_a = (upper**2 + dist**2 - lower**2) / (2 * upper * dist)
    sin_a = math.sqrt(max(0.0, 1 - cos_a**2))
    mid = root + upper * (cos_a * u + sin_a * p)
    end = root + dist * u
    first = (mid - root) / upper
    second = (end - mid) / float(np.linalg.norm(end - mid))
    return Limb(to_angles(first, side), to_angles(second, side))


def _mirror(v: Any, side: float) -> Vec:
    x, y, z = (float(c) for c in v)
    return np.array([side * x, y, z])


def angles_from_spec(spec: Mapping[str, Any]) -> Angles:
    """:class:`Angles` from a spec's compact keys (see ``pose_specs``).

    A limb is given by angles (``r_arm``: ``((elev, az), (elev, az))``) or, as an authoring aid,
    by where its end goes: ``r_hand`` relative to the neck in the chest frame, ``r_foot``
    relative to the pelvis in the body frame, x mirrored (positive = out to that limb's side),
    with an optional ``r_elbow`` / ``r_knee`` direction the middle joint bends towards. A hand
    may also go to a joint: ``("l_knee", x, y, z)`` is that offset from the left knee, in the
    body frame (a hand on a knee, arms round the shins)."""
    kwargs: dict[str, Any] = {}
    for key in ("yaw", "pitch", "roll", "bend", "side", "twist"):
        if key in spec:
            kwargs[key] = float(spec[key])
    for key in ("yaw", "pitch", "roll"):
        if f"head_{key}" in spec:
            kwargs[f"head_{key}"] = float(spec[f"head_{key}"])
    if spec.get("legs_upright"):
        kwargs["legs_upright"] = True
    for key in ("r_arm", "l_arm", "r_leg", "l_leg"):
        if key in spec:
            (ue, ua), (le, la) = spec[key]
            kwargs[key] = Limb((float(ue), float(ua)), (float(le), float(la)))
    for name, side in (("r", -1.0), ("l", 1.0)):
        if f"{name}_foot" in spec:
            root = np.array([side * HIP_HALF, 0.0, 0.0])
            pole = _mirror(spec.get(f"{name}_knee", (0.1, 0.0, 1.0)), side)
            target = _mirror(spec[f"{name}_foot"], side)
            kwargs[f"{name}_leg"] = reach(root, target, THIGH, SHIN, pole, side)
    legs_done = pose(Angles(**kwargs))
    for name, side in (("r", -1.0), ("l", 1.0)):
        if f"{name}_hand" in spec:
            root = np.array([side * SHOULDER_HALF, -0.05, 0.0])
            pole = _mirror(spec.get(f"{name}_elbow", (1.0, -1.0, -0.6)), side)
            hand = spec[f"{name}_hand"]
            if isinstance(hand[0], str):
                world = legs_done.joints[hand[0]] + legs_done.body @ _mirror(hand[1:], side)
                target = legs_done.chest.T @ (world - legs_done.joints["neck"])
            else:
                target = _mirror(hand, side)
            kwargs[f"{name}_arm"] = reach(root, target, UPPER_ARM, FOREARM, pole, side)
    return Angles(**kwargs)
