"""Is a pose a human body? Checks that every library pose (built-in or imported) passes.

On any pose (2D keypoints, the only thing an imported pose has):

- **proportions**: each segment's drawn length, in units of the figure's scale, within what a
  human body allows. A drawn segment can be shorter than the real one (it points towards the
  camera), never longer; so the scale is taken from the least foreshortened segment of each
  part (arms, legs, torso, shoulders, hips, head), as the lower median over the parts (a
  wrong part, say legs twice as long as the torso, cannot set it), and no segment may exceed
  its nominal length at that scale by more than human variation allows. Needs three parts.
  Limbs are bounded from above only: a short drawn limb may be foreshortened, so left and
  right are not compared in 2D (they are in 3D, for the built-in specs).
- **not crossed**: the torso's left-right order is one order. Relative to the torso's axis
  (hips to neck), the shoulders and the hips run the same way (a spine twists at most about 90
  degrees, not 180), the eyes run the same way as the shoulders when both are clearly apart
  (the head turns at most about 80 degrees on the chest), and the nose is not down at the hips.
- **limbs attached**: an elbow or wrist needs its shoulder, a knee or ankle its hip.

On a pose built from joint angles (:mod:`posegen.library.skeleton`), also in 3D:

- **joint ranges**: elbows and knees bend one way and at most 160 degrees, a knee never bends
  forwards, a thigh does not swing far behind the body, spine and neck angles within reach;
- **no body part through another**: limbs and torso as capsules of human thickness; two that
  are not joined may touch but not pass through each other.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from posegen.library.skeleton import (
    COCO,
    SEGMENTS,
    TORSO,
    Skeleton,
    Vec,
)
from posegen.pose import Pose, parse_pose

#: A segment may be this much longer than nominal at the figure's scale (people differ).
LENGTH_TOLERANCE = 1.3
#: Torso nominal length for the 2D scale (neck to the middle of the hips).
_TORSO = ("neck", "mid_hip", TORSO)
_INDEX = {name: i for i, name in enumerate(COCO)}


def problems(raw: Any) -> list[str]:
    """Every reason ``raw`` (any accepted pose shape) is not a plausible human pose; empty if
    it is. Schema errors raise :class:`~posegen.exceptions.InvalidInput` as usual."""
    pose = raw if isinstance(raw, Pose) else parse_pose(raw)
    out: list[str] = []
    for n, person in enumerate(pose.people):
        who = f"person {n + 1}: " if len(pose.people) > 1 else ""
        # Points in canvas pixels' proportions, so a non-square canvas does not bend lengths.
        w, h = pose.canvas
        pts: dict[str, Vec] = {
            name: np.array([p[0] * w, p[1] * h])
            for name, p in zip(COCO, person.body, strict=True)
            if p is not None
        }
        out += [who + p for p in _attached(pts)]
        out += [who + p for p in _proportions(pts)]
        out += [who + p for p in _crossed(pts)]
    return out


def _attached(pts: dict[str, Vec]) -> list[str]:
    out = []
    if "neck" not in pts:
        out.append("no neck point: the body cannot be checked")
    chains = (
        ("r_shoulder", "r_elbow", "r_wrist"),
        ("l_shoulder", "l_elbow", "l_wrist"),
        ("r_hip", "r_knee", "r_ankle"),
        ("l_hip", "l_knee", "l_ankle"),
    )

    def label(name: str) -> str:
        side, part = name.split("_")
        return f"{'right' if side == 'r' else 'left'} {part}"

    for root, mid, end in chains:
        if mid in pts and root not in pts:
            out.append(f"{label(mid)} without its {root.split('_')[1]}")
        if end in pts and mid not in pts:
            out.append(f"{label(end)} without its {mid.split('_')[1]}")
    return out


def _lengths(pts: dict[str, Vec]) -> dict[str, float]:
    """Drawn length / nominal length of every segment present."""
    ratios: dict[str, float] = {}
    for label, (a, b, nominal) in SEGMENTS.items():
        if a in pts and b in pts:
            ratios[label] = float(np.linalg.norm(pts[a] - pts[b])) / nominal
    if "neck" in pts and "r_hip" in pts and "l_hip" in pts:
        mid = (pts["r_hip"] + pts["l_hip"]) / 2
        ratios["torso"] = float(np.linalg.norm(pts["neck"] - mid)) / _TORSO[2]
    return ratios


#: Body parts whose segments share one scale estimate (one stretched part cannot set it).
_GROUPS = {
    "arms": ("right upper arm", "right forearm", "left upper arm", "left forearm"),
    "legs": ("right thigh", "right shin", "left thigh", "left shin"),
    "torso": ("torso",),
    "shoulders": ("shoulders", "right collar", "left collar"),
    "hips": ("hips",),
    "head": ("neck to nose", "neck to right eye", "neck to left eye", "neck to right ear",
             "neck to left ear"),
}  # fmt: skip


def _scale(ratios: dict[str, float]) -> float | None:
    """The body's scale (drawn length per nominal length): each part's least foreshortened
    segment, then the lower median over the parts. A wrong part (both legs twice as long, both
    forearms) is outvoted; a part seen end-on (shoulders in profile) only lowers one vote.
    None when fewer than three parts are drawn."""
    votes = [
        max(ratios[label] for label in labels if label in ratios)
        for labels in _GROUPS.values()
        if any(label in ratios for label in labels)
    ]
    if len(votes) < 3:
        return None
    return sorted(votes, reverse=True)[len(votes) // 2]


def _proportions(pts: dict[str, Vec]) -> list[str]:
    ratios = _lengths(pts)
    scale = _scale(ratios)
    if scale is None:
        return []
    if scale <= 0:
        return ["the body has no size (its points coincide)"]
    return [
        f"{label} is {ratio / scale:.2f} times its length at the body's scale "
        f"(at most {LENGTH_TOLERANCE})"
        for label, ratio in ratios.items()
        if ratio > LENGTH_TOLERANCE * scale
    ]


def _cross(a: Vec, b: Vec) -> float:
    return float(a[0] * b[1] - a[1] * b[0])


def _crossed(pts: dict[str, Vec]) -> list[str]:
    if "neck" not in pts:
        return []
    ratios = _lengths(pts)
    scale = _scale(ratios) or max(ratios.values(), default=0.0)
    if scale <= 0:
        return []
    out = []
    hips = "r_hip" in pts and "l_hip" in pts
    if hips:
        axis = pts["neck"] - (pts["r_hip"] + pts["l_hip"]) / 2
    elif "nose" in pts:
        axis = pts["nose"] - pts["neck"]
    else:
        return []
    norm = float(np.linalg.norm(axis))
    if norm == 0:
        return ["the neck sits on the hips"]
    axis = axis / norm

    def across(right: str, left: str, nominal: float) -> float:
        """Signed left-right spread of a pair across the axis, in nominal widths (the sine of
        how far it is turned from side-on); 0 when either point is missing."""
        if right not in pts or left not in pts:
            return 0.0
        return _cross(axis, pts[left] - pts[right]) / (nominal * scale)

    def opposed(a: float, b: float, least: float) -> bool:
        return (a > least and b < -least) or (a < -least and b > least)

    shoulders = across("r_shoulder", "l_shoulder", 1.8)
    # Each side at least 30 degrees from side-on, opposite ways: a twist of 60 degrees or
    # more between the chest and the hips. For the face, 58 degrees each way: a turn of the
    # head on the chest past 115 degrees.
    if hips and opposed(shoulders, across("r_hip", "l_hip", 1.2), 0.5):
        out.append("crossed skeleton: the shoulders face one way and the hips the other")
    if opposed(shoulders, across("r_eye", "l_eye", 0.4), 0.85):
        out.append("crossed skeleton: the face looks one way and the chest the other")
    if hips and "nose" in pts:
        down = float((pts["nose"] - pts["neck"]) @ axis) / scale
        if down < -1.0:
            out.append("the head hangs below the neck towards the hips")
    return out


# --------------------------------------------------------------------------- 3D (built-ins)

#: Capsule radii (head heights) of the body parts, for the pass-through check.
_RADII = {"torso": 0.5, "head": 0.42, "upper_arm": 0.2, "forearm": 0.16, "thigh": 0.3, "shin": 0.22}
#: Two parts that are not joined may press into each other this far (flesh gives), no more.
_CONTACT = 0.55


def _down_to(t: Vec, forward: Vec) -> Vec:
    """``forward`` carried along by the smallest rotation that takes straight down to ``t``."""
    down = np.array([0.0, -1.0, 0.0])
    axis = np.cross(down, t)
    s = float(np.linalg.norm(axis))
    c = float(down @ t)
    if s < 1e-9:
        return forward if c > 0 else -forward
    k = axis / s
    angle = math.atan2(s, c)
    f = forward
    return (
        f * math.cos(angle) + np.cross(k, f) * math.sin(angle) + k * (k @ f) * (1 - math.cos(angle))
    )


def _unit(v: Vec) -> Vec:
    return v / float(np.linalg.norm(v))


def _angle(a: Vec, b: Vec) -> float:
    return math.degrees(math.acos(max(-1.0, min(1.0, float(_unit(a) @ _unit(b))))))


def joint_problems(skel: Skeleton) -> list[str]:
    """Joint ranges of a posed skeleton (see the module doc)."""
    a, j = skel.angles, skel.joints
    out = []
    for label, value, lo, hi in (
        ("spine bend", a.bend, -50, 120),
        ("spine side bend", a.side, -45, 45),
        ("spine twist", a.twist, -60, 60),
        ("head turn", a.head_yaw, -85, 85),
        ("head nod", a.head_pitch, -50, 50),
        ("head tilt", a.head_roll, -40, 40),
    ):
        if not lo <= value <= hi:
            out.append(f"{label} {value:g} degrees is outside {lo}..{hi}")
    for side, label in (("r", "right"), ("l", "left")):
        upper = j[f"{side}_elbow"] - j[f"{side}_shoulder"]
        lower = j[f"{side}_wrist"] - j[f"{side}_elbow"]
        if _angle(upper, lower) > 160:
            out.append(f"{label} elbow folded past 160 degrees")
        thigh = j[f"{side}_knee"] - j[f"{side}_hip"]
        shin = j[f"{side}_ankle"] - j[f"{side}_knee"]
        flex = _angle(thigh, shin)
        if flex > 165:
            out.append(f"{label} knee folded past 165 degrees")
        # The kneecap faces where "forwards" is carried by the thigh; the shin folds behind.
        body_inv = skel.body.T
        t, s = _unit(body_inv @ thigh), _unit(body_inv @ shin)
        kneecap = _down_to(t, np.array([0.0, 0.0, 1.0]))
        fold = s - float(s @ t) * t
        # Up to 45 degrees of hip rotation turns the kneecap (cross-legged, lotus).
        if flex > 10 and float(fold @ kneecap) > 0.7 * float(np.linalg.norm(fold)):
            out.append(f"{label} knee bends forwards")
        if float(t[2]) < -0.91:
            out.append(f"{label} thigh swings more than 65 degrees behind the body")
        chest_inv = skel.chest.T
        u = _unit(chest_inv @ upper)
        if float(u[2]) < -0.87 and float(u[1]) > -0.5:
            out.append(f"{label} arm raised more than 60 degrees behind the body")
    return out


def _segment_distance(p1: Vec, q1: Vec, p2: Vec, q2: Vec) -> float:
    """Shortest distance between segments p1q1 and p2q2 (Ericson, Real-Time Collision
    Detection, 5.1.9)."""
    d1, d2, r = q1 - p1, q2 - p2, p1 - p2
    a, e, f = float(d1 @ d1), float(d2 @ d2), float(d2 @ r)
    if a <= 1e-12 and e <= 1e-12:
        return float(np.linalg.norm(r))
    if a <= 1e-12:
        s, t = 0.0, min(max(f / e, 0.0), 1.0)
    else:
        c = float(d1 @ r)
        if e <= 1e-12:
            t, s = 0.0, min(max(-c / a, 0.0), 1.0)
        else:
            b = float(d1 @ d2)
            denom = a * e - b * b
            s = min(max((b * f - c * e) / denom, 0.0), 1.0) if denom > 1e-12 else 0.0
            t = (b * s + f) / e
            if t < 0:
                t, s = 0.0, min(max(-c / a, 0.0), 1.0)
            elif t > 1:
                t, s = 1.0, min(max((b - c) / a, 0.0), 1.0)
    return float(np.linalg.norm((p1 + d1 * s) - (p2 + d2 * t)))


def _parts(skel: Skeleton) -> dict[str, tuple[Vec, Vec, float]]:
    j = skel.joints
    mid_hip = (j["r_hip"] + j["l_hip"]) / 2
    head_axis = skel.head[:, 1]
    parts = {
        # The torso capsule stops short of the neck and hips so the limbs' roots do not count.
        "torso": (mid_hip + 0.25 * (j["neck"] - mid_hip), j["neck"] - 0.25 * (j["neck"] - mid_hip),
                  _RADII["torso"]),
        "head": (j["neck"] + 0.55 * head_axis, j["neck"] + 1.05 * head_axis, _RADII["head"]),
    }  # fmt: skip
    for side, label in (("r", "right"), ("l", "left")):
        parts[f"{label} upper arm"] = (
            j[f"{side}_shoulder"], j[f"{side}_elbow"], _RADII["upper_arm"])  # fmt: skip
        # Hands and feet touch things (each other, knees, hips, the face): the forearm and shin
        # capsules stop short of the wrist and ankle.
        elbow, wrist = j[f"{side}_elbow"], j[f"{side}_wrist"]
        parts[f"{label} forearm"] = (elbow, elbow + 0.8 * (wrist - elbow), _RADII["forearm"])
        parts[f"{label} thigh"] = (j[f"{side}_hip"], j[f"{side}_knee"], _RADII["thigh"])
        knee, ankle = j[f"{side}_knee"], j[f"{side}_ankle"]
        parts[f"{label} shin"] = (knee, knee + 0.9 * (ankle - knee), _RADII["shin"])
    return parts


#: Parts that meet at a joint (or always touch there) are not checked against each other.
_JOINED = {
    frozenset(p)
    for p in (
        ("torso", "head"), ("right upper arm", "right forearm"),
        ("left upper arm", "left forearm"), ("right thigh", "right shin"),
        ("left thigh", "left shin"),
    )
}  # fmt: skip


def collision_problems(skel: Skeleton) -> list[str]:
    """Body parts that pass through each other (see the module doc)."""
    parts = _parts(skel)
    names = list(parts)
    out = []
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            if frozenset((a, b)) in _JOINED:
                continue
            p1, q1, r1 = parts[a]
            p2, q2, r2 = parts[b]
            if _segment_distance(p1, q1, p2, q2) < _CONTACT * (r1 + r2):
                out.append(f"the {a} passes through the {b}")
    return out


def skeleton_problems(skel: Skeleton) -> list[str]:
    return joint_problems(skel) + collision_problems(skel)


__all__ = ["collision_problems", "joint_problems", "problems", "skeleton_problems"]
