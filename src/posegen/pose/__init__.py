"""Poses: the one JSON shape every pose is stored and exchanged in, and the geometry that puts a
pose, a fetched map or a subject photo onto an output canvas without distorting it."""

from posegen.pose.geometry import Placement, fit_subject, letterbox, place, placement
from posegen.pose.schema import (
    BODY_POINTS,
    FACE_POINTS,
    FRAMINGS,
    HAND_POINTS,
    Framing,
    Person,
    Pose,
    infer_framing,
    parse_pose,
    pose_json,
)

__all__ = [
    "BODY_POINTS",
    "FACE_POINTS",
    "FRAMINGS",
    "HAND_POINTS",
    "Framing",
    "Person",
    "Placement",
    "Pose",
    "fit_subject",
    "infer_framing",
    "letterbox",
    "parse_pose",
    "place",
    "placement",
    "pose_json",
]
